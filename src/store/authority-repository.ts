import type { AuthorityKind, AuthorityRecord, AuthorityStatus } from "../ca/model.js";
import type { AuthorityRepository, TrustBundleConsumer, TrustBundleConsumerRepository } from "../ca/ports.js";
import { inTransaction, type SqliteDatabase } from "./database.js";

interface AuthorityRow {
  id: string;
  kind: AuthorityKind;
  status: AuthorityStatus;
  subject: string;
  certificate_der: Buffer;
  key_label: string | null;
  parent_id: string | null;
  not_before: number;
  not_after: number;
  created_at: number;
}

const fromRow = (row: AuthorityRow): AuthorityRecord => ({
  id: row.id,
  kind: row.kind,
  status: row.status,
  subject: row.subject,
  certificateDer: row.certificate_der,
  keyLabel: row.key_label,
  parentId: row.parent_id,
  notBefore: new Date(row.not_before),
  notAfter: new Date(row.not_after),
  createdAt: new Date(row.created_at),
});

export class SqliteAuthorityRepository implements AuthorityRepository {
  private readonly statements;

  constructor(private readonly db: SqliteDatabase) {
    this.statements = {
      get: db.prepare("SELECT * FROM authorities WHERE id = ?"),
      list: db.prepare("SELECT * FROM authorities ORDER BY created_at, id"),
    };
  }

  insert(authority: AuthorityRecord): void {
    this.db
      .prepare(
        `INSERT INTO authorities (id, kind, status, subject, certificate_der, key_label, parent_id, not_before, not_after, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        authority.id,
        authority.kind,
        authority.status,
        authority.subject,
        authority.certificateDer,
        authority.keyLabel,
        authority.parentId,
        authority.notBefore.getTime(),
        authority.notAfter.getTime(),
        authority.createdAt.getTime(),
      );
  }

  get(id: string): AuthorityRecord | undefined {
    const row = this.statements.get.get(id) as AuthorityRow | undefined;
    return row && fromRow(row);
  }

  list(): AuthorityRecord[] {
    const rows = this.statements.list.all() as AuthorityRow[];
    return rows.map(fromRow);
  }

  setStatus(id: string, status: AuthorityStatus): void {
    this.db.prepare("UPDATE authorities SET status = ? WHERE id = ?").run(status, id);
  }

  activate(id: string): void {
    inTransaction(this.db, () => {
      this.db.prepare("UPDATE authorities SET status = 'published' WHERE kind = 'intermediate' AND status = 'active' AND id <> ?").run(id);
      this.db.prepare("UPDATE authorities SET status = 'active' WHERE id = ?").run(id);
    });
  }

  bundleSequence(): number {
    return Number(this.db.prepare("SELECT coalesce(max(sequence), 0) FROM trust_bundle_versions").pluck().get());
  }

  firstBundleSequenceContaining(id: string): number | undefined {
    const sequence = this.db
      .prepare("SELECT min(sequence) FROM trust_bundle_versions, json_each(trust_bundle_versions.authority_ids) WHERE json_each.value = ?")
      .pluck()
      .get(id) as number | null;
    return sequence ?? undefined;
  }

  lastLeafExpiry(id: string): Date | undefined {
    const notAfter = this.db
      .prepare("SELECT max(not_after) FROM certificates WHERE authority_id = ? AND state <> 'failed' AND profile = 'workload'")
      .pluck()
      .get(id) as number | null;
    return notAfter === null ? undefined : new Date(notAfter);
  }
}

interface ConsumerRow {
  consumer_id: string;
  acknowledged_sequence: number;
  acknowledged_at: number;
  first_seen_at: number;
}

const consumerFromRow = (row: ConsumerRow): TrustBundleConsumer => ({
  consumerId: row.consumer_id,
  acknowledgedSequence: row.acknowledged_sequence,
  acknowledgedAt: new Date(row.acknowledged_at),
  firstSeenAt: new Date(row.first_seen_at),
});

export class SqliteTrustBundleConsumerRepository implements TrustBundleConsumerRepository {
  constructor(private readonly db: SqliteDatabase) {}

  acknowledge(consumerId: string, sequence: number, now: Date): TrustBundleConsumer {
    return inTransaction(this.db, () => {
      this.db
        .prepare(
          `INSERT INTO trust_bundle_consumers (consumer_id, acknowledged_sequence, acknowledged_at, first_seen_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (consumer_id) DO UPDATE SET acknowledged_sequence = excluded.acknowledged_sequence, acknowledged_at = excluded.acknowledged_at
           WHERE excluded.acknowledged_sequence > trust_bundle_consumers.acknowledged_sequence`,
        )
        .run(consumerId, sequence, now.getTime(), now.getTime());
      return consumerFromRow(this.db.prepare("SELECT * FROM trust_bundle_consumers WHERE consumer_id = ?").get(consumerId) as ConsumerRow);
    });
  }

  get(consumerId: string): TrustBundleConsumer | undefined {
    const row = this.db.prepare("SELECT * FROM trust_bundle_consumers WHERE consumer_id = ?").get(consumerId) as ConsumerRow | undefined;
    return row && consumerFromRow(row);
  }

  list(): TrustBundleConsumer[] {
    return (this.db.prepare("SELECT * FROM trust_bundle_consumers ORDER BY consumer_id").all() as ConsumerRow[]).map(consumerFromRow);
  }

  count(): number {
    return Number(this.db.prepare("SELECT count(*) FROM trust_bundle_consumers").pluck().get());
  }
}
