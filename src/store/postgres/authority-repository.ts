import type { AuthorityRecord, AuthorityStatus } from "../../ca/model.js";
import type { AuthorityRepository, TrustBundleConsumer, TrustBundleConsumerRepository } from "../../ca/ports.js";
import { ADVISORY_LOCKS } from "./advisory-locks.js";
import type { AuditEvent } from "../../audit/audit-log.js";
import { appendAuditEvent } from "./audit-event-repository.js";
import type { PostgresDatabase, PostgresTransaction } from "./database.js";
import { authorityFromRow as fromRow, consumerFromRow, type AuthorityRow, type ConsumerRow } from "../rows.js";

// Ids are ordered COLLATE "C" (byte order, as SQLite orders them) whatever the database's default collation.

export class PostgresAuthorityRepository implements AuthorityRepository {
  constructor(private readonly db: PostgresDatabase) {}

  async insert(authority: AuthorityRecord, audit?: AuditEvent): Promise<void> {
    await this.db.transaction(async (transaction) => {
      await insertAuthority(transaction, authority);
      if (audit) await appendAuditEvent(transaction, audit, authority.createdAt);
    });
  }

  async importHierarchy(root: AuthorityRecord, intermediate: AuthorityRecord): Promise<void> {
    await this.db.transaction(async (transaction) => {
      // Takes turns with activations, for the same reason they take turns with each other.
      await transaction.query("SELECT pg_advisory_xact_lock($1)", [ADVISORY_LOCKS.activation.toString()]);
      const known = await transaction.query("SELECT 1 FROM authorities WHERE id = $1", [root.id]);
      if (known.rowCount === 0) await insertAuthority(transaction, root);
      await transaction.query("UPDATE authorities SET status = 'published' WHERE kind = 'intermediate' AND status = 'active'");
      await insertAuthority(transaction, intermediate);
    });
  }

  async get(id: string): Promise<AuthorityRecord | undefined> {
    const { rows } = await this.db.query<AuthorityRow>("SELECT * FROM authorities WHERE id = $1", [id]);
    return rows[0] && fromRow(rows[0]);
  }
  async list(): Promise<AuthorityRecord[]> {
    const { rows } = await this.db.query<AuthorityRow>("SELECT * FROM authorities ORDER BY created_at, id COLLATE \"C\"");
    return rows.map(fromRow);
  }

  async setStatus(id: string, status: AuthorityStatus): Promise<void> {
    await this.db.query("UPDATE authorities SET status = $1 WHERE id = $2", [status, id]);
  }

  async activate(id: string): Promise<void> {
    await this.db.transaction(async (transaction) => {
      // Two nodes activating at once would each demote the active intermediate their snapshot shows and then
      // collide on authorities_one_active_intermediate. The advisory lock makes them take turns; the second
      // one's statements run after the first commits (READ COMMITTED takes a snapshot per statement), so it
      // demotes the intermediate the first just activated, as activations in a row would on SQLite. The
      // unique index stays the backstop against any writer that bypasses this method.
      await transaction.query("SELECT pg_advisory_xact_lock($1)", [ADVISORY_LOCKS.activation.toString()]);
      await transaction.query("UPDATE authorities SET status = 'published' WHERE kind = 'intermediate' AND status = 'active' AND id <> $1", [id]);
      await transaction.query("UPDATE authorities SET status = 'active' WHERE id = $1", [id]);
    });
  }

  async bundleSequence(): Promise<number> {
    const { rows } = await this.db.query<{ sequence: string }>("SELECT coalesce(max(sequence), 0) AS sequence FROM trust_bundle_versions");
    return Number(rows[0]?.sequence ?? 0);
  }

  async firstBundleSequenceContaining(id: string): Promise<number | undefined> {
    const { rows } = await this.db.query<{ sequence: string | null }>(
      "SELECT min(sequence) AS sequence FROM trust_bundle_versions WHERE authority_ids @> jsonb_build_array($1::text)",
      [id],
    );
    const sequence = rows[0]?.sequence;
    return sequence === null || sequence === undefined ? undefined : Number(sequence);
  }

  async lastLeafExpiry(id: string): Promise<Date | undefined> {
    const { rows } = await this.db.query<{ not_after: string | null }>(
      "SELECT max(not_after) AS not_after FROM certificates WHERE authority_id = $1 AND state <> 'failed' AND profile = 'workload'",
      [id],
    );
    const notAfter = rows[0]?.not_after;
    return notAfter === null || notAfter === undefined ? undefined : new Date(Number(notAfter));
  }
}

export class PostgresTrustBundleConsumerRepository implements TrustBundleConsumerRepository {
  constructor(private readonly db: PostgresDatabase) {}

  async register(consumer: { consumerId: string; spiffeId: string | null; registeredBy: string }, now: Date): Promise<TrustBundleConsumer> {
    // One statement: concurrent registrations of one consumer resolve on the primary key, the last one binding it.
    const { rows } = await this.db.query<ConsumerRow>(
      `INSERT INTO trust_bundle_consumers (consumer_id, spiffe_id, acknowledged_sequence, first_seen_at, registered_by, registered_at)
       VALUES ($1, $2, 0, $3, $4, $3)
       ON CONFLICT (consumer_id) DO UPDATE SET spiffe_id = excluded.spiffe_id, registered_by = excluded.registered_by, registered_at = excluded.registered_at
       RETURNING *`,
      [consumer.consumerId, consumer.spiffeId, now.getTime(), consumer.registeredBy],
    );
    return consumerFromRow(rows[0] as ConsumerRow);
  }

  async unregister(consumerId: string): Promise<boolean> {
    const result = await this.db.query("DELETE FROM trust_bundle_consumers WHERE consumer_id = $1", [consumerId]);
    return (result.rowCount ?? 0) > 0;
  }

  async acknowledge(consumerId: string, sequence: number, now: Date): Promise<TrustBundleConsumer | undefined> {
    // One conditional UPDATE: a concurrent acknowledgement holds the row lock, and PostgreSQL re-evaluates the
    // greatest() and the CASE against the row it committed, so a late, lower acknowledgement never lowers
    // the stored sequence (nor moves acknowledged_at) whichever node commits first.
    const { rows } = await this.db.query<ConsumerRow>(
      `UPDATE trust_bundle_consumers
          SET acknowledged_sequence = greatest(acknowledged_sequence, $2),
              acknowledged_at = CASE WHEN acknowledged_sequence < $2 THEN $3 ELSE acknowledged_at END
        WHERE consumer_id = $1
        RETURNING *`,
      [consumerId, sequence, now.getTime()],
    );
    return rows[0] && consumerFromRow(rows[0]);
  }

  async get(consumerId: string): Promise<TrustBundleConsumer | undefined> {
    const { rows } = await this.db.query<ConsumerRow>("SELECT * FROM trust_bundle_consumers WHERE consumer_id = $1", [consumerId]);
    return rows[0] && consumerFromRow(rows[0]);
  }

  async list(): Promise<TrustBundleConsumer[]> {
    const { rows } = await this.db.query<ConsumerRow>("SELECT * FROM trust_bundle_consumers ORDER BY consumer_id COLLATE \"C\"");
    return rows.map(consumerFromRow);
  }

  async count(): Promise<number> {
    const { rows } = await this.db.query<{ count: string }>("SELECT count(*) AS count FROM trust_bundle_consumers");
    return Number(rows[0]?.count ?? 0);
  }
}

/** One authority row, inside the caller's transaction. */
async function insertAuthority(transaction: PostgresTransaction, authority: AuthorityRecord): Promise<void> {
  await transaction.query(
    `INSERT INTO authorities (id, kind, status, subject, certificate_der, key_label, parent_id, not_before, not_after, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
    [
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
    ],
  );
}
