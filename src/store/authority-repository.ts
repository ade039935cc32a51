import type { AuthorityRecord, AuthorityStatus } from "../ca/model.js";
import type { AuthorityRepository, TrustBundleConsumer, TrustBundleConsumerRepository } from "../ca/ports.js";
import type { AuditEvent } from "../audit/audit-log.js";
import { SqliteAuditEventRepository } from "./audit-event-repository.js";
import { inTransaction, type SqliteDatabase } from "./database.js";
import { authorityFromRow as fromRow, consumerFromRow, type AuthorityRow, type ConsumerRow } from "./rows.js";

export class SqliteAuthorityRepository implements AuthorityRepository {
  private readonly statements;

  private readonly audit: SqliteAuditEventRepository;

  constructor(private readonly db: SqliteDatabase) {
    this.audit = new SqliteAuditEventRepository(db);
    this.statements = {
      get: db.prepare("SELECT * FROM authorities WHERE id = ?"),
      list: db.prepare("SELECT * FROM authorities ORDER BY created_at, id"),
    };
  }

  async insert(authority: AuthorityRecord, audit?: AuditEvent): Promise<void> {
    inTransaction(this.db, () => {
      this.insertNow(authority);
      if (audit) this.audit.appendNow(audit, authority.createdAt);
    });
  }

  async importHierarchy(root: AuthorityRecord, intermediate: AuthorityRecord): Promise<void> {
    inTransaction(this.db, () => {
      if (!this.statements.get.get(root.id)) this.insertNow(root);
      this.db.prepare("UPDATE authorities SET status = 'published' WHERE kind = 'intermediate' AND status = 'active'").run();
      this.insertNow(intermediate);
    });
  }

  private insertNow(authority: AuthorityRecord): void {
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

  async get(id: string): Promise<AuthorityRecord | undefined> {
    const row = this.statements.get.get(id) as AuthorityRow | undefined;
    return row && fromRow(row);
  }

  async list(): Promise<AuthorityRecord[]> {
    const rows = this.statements.list.all() as AuthorityRow[];
    return rows.map(fromRow);
  }

  async setStatus(id: string, status: AuthorityStatus): Promise<void> {
    this.db.prepare("UPDATE authorities SET status = ? WHERE id = ?").run(status, id);
  }

  async activate(id: string): Promise<void> {
    inTransaction(this.db, () => {
      this.db.prepare("UPDATE authorities SET status = 'published' WHERE kind = 'intermediate' AND status = 'active' AND id <> ?").run(id);
      this.db.prepare("UPDATE authorities SET status = 'active' WHERE id = ?").run(id);
    });
  }

  async bundleSequence(): Promise<number> {
    return Number(this.db.prepare("SELECT coalesce(max(sequence), 0) FROM trust_bundle_versions").pluck().get());
  }

  async firstBundleSequenceContaining(id: string): Promise<number | undefined> {
    const sequence = this.db
      .prepare("SELECT min(sequence) FROM trust_bundle_versions, json_each(trust_bundle_versions.authority_ids) WHERE json_each.value = ?")
      .pluck()
      .get(id) as number | null;
    return sequence ?? undefined;
  }

  async lastLeafExpiry(id: string): Promise<Date | undefined> {
    const notAfter = this.db
      .prepare("SELECT max(not_after) FROM certificates WHERE authority_id = ? AND state <> 'failed' AND profile = 'workload'")
      .pluck()
      .get(id) as number | null;
    return notAfter === null ? undefined : new Date(notAfter);
  }
}

export class SqliteTrustBundleConsumerRepository implements TrustBundleConsumerRepository {
  constructor(private readonly db: SqliteDatabase) {}

  async register(consumer: { consumerId: string; spiffeId: string | null; registeredBy: string }, now: Date): Promise<TrustBundleConsumer> {
    return inTransaction(this.db, () => {
      this.db
        .prepare(
          `INSERT INTO trust_bundle_consumers (consumer_id, spiffe_id, acknowledged_sequence, first_seen_at, registered_by, registered_at)
           VALUES (?, ?, 0, ?, ?, ?)
           ON CONFLICT (consumer_id) DO UPDATE SET spiffe_id = excluded.spiffe_id, registered_by = excluded.registered_by, registered_at = excluded.registered_at`,
        )
        .run(consumer.consumerId, consumer.spiffeId, now.getTime(), consumer.registeredBy, now.getTime());
      return this.getNow(consumer.consumerId) as TrustBundleConsumer;
    });
  }

  async unregister(consumerId: string): Promise<boolean> {
    return this.db.prepare("DELETE FROM trust_bundle_consumers WHERE consumer_id = ?").run(consumerId).changes > 0;
  }

  async acknowledge(consumerId: string, sequence: number, now: Date): Promise<TrustBundleConsumer | undefined> {
    return inTransaction(this.db, () => {
      this.db
        .prepare("UPDATE trust_bundle_consumers SET acknowledged_sequence = ?, acknowledged_at = ? WHERE consumer_id = ? AND acknowledged_sequence < ?")
        .run(sequence, now.getTime(), consumerId, sequence);
      return this.getNow(consumerId);
    });
  }

  async get(consumerId: string): Promise<TrustBundleConsumer | undefined> {
    return this.getNow(consumerId);
  }

  private getNow(consumerId: string): TrustBundleConsumer | undefined {
    const row = this.db.prepare("SELECT * FROM trust_bundle_consumers WHERE consumer_id = ?").get(consumerId) as ConsumerRow | undefined;
    return row && consumerFromRow(row);
  }

  async list(): Promise<TrustBundleConsumer[]> {
    return (this.db.prepare("SELECT * FROM trust_bundle_consumers ORDER BY consumer_id").all() as ConsumerRow[]).map(consumerFromRow);
  }

  async count(): Promise<number> {
    return Number(this.db.prepare("SELECT count(*) FROM trust_bundle_consumers").pluck().get());
  }
}
