import type { AuditEvent } from "../../audit/audit-log.js";
import type { RevocationOutcome, RevocationRepository, RevokedEntry, RevokedSuccessor } from "../../revocation/ports.js";
import { appendAuditEvents, type PendingAuditEvent } from "./audit-event-repository.js";
import type { PostgresDatabase, PostgresTransaction } from "./database.js";

/** Rows of a CRL read per round trip: a CRL of a million entries never sits in memory as rows at once. */
const REVOKED_ENTRIES_CHUNK = 1000;

// Lineage links of failed attempts are not followed: a failed row has no successor of its own.
const UNREVOKED_SUCCESSORS = `
  WITH RECURSIVE lineage(serial) AS (
    SELECT serial FROM certificates WHERE predecessor_serial = $1 AND state <> 'failed'
    UNION
    SELECT certificates.serial FROM certificates JOIN lineage ON certificates.predecessor_serial = lineage.serial
    WHERE certificates.state <> 'failed'
  )
  SELECT certificates.serial, certificates.authority_id FROM certificates JOIN lineage USING (serial)
  WHERE certificates.revoked_at IS NULL AND certificates.not_after > $2`;

/** Revocations and CRL numbering on PostgreSQL: the counterpart of `SqliteRevocationRepository`. */
export class PostgresRevocationRepository implements RevocationRepository {
  constructor(private readonly db: PostgresDatabase) {}

  revoke(serial: string, reason: string, revokedAt: Date, audit: AuditEvent, successorAudit?: (serial: string) => AuditEvent): Promise<RevocationOutcome> {
    return this.db.transaction(async (transaction): Promise<RevocationOutcome> => {
      // FOR UPDATE: two nodes revoking one certificate take turns, so exactly one reports "revoked" (and
      // audits it) and the other sees the first time and reason and reports "already-revoked".
      const { rows } = await transaction.query<{ authority_id: string; revoked_at: string | null }>(
        "SELECT authority_id, revoked_at FROM certificates WHERE serial = $1 AND state = 'issued' FOR UPDATE",
        [serial],
      );
      const row = rows[0];
      if (!row) return { kind: "not-found" };
      const alreadyRevoked = row.revoked_at !== null;
      const audits: PendingAuditEvent[] = [];
      if (!alreadyRevoked) {
        await transaction.query("UPDATE certificates SET revoked_at = $1, revocation_reason = $2 WHERE serial = $3", [
          revokedAt.getTime(),
          reason,
          serial,
        ]);
        audits.push({ event: audit, occurredAt: revokedAt });
      }
      const successors = successorAudit ? await this.revokeSuccessors(transaction, serial, reason, revokedAt) : [];
      for (const successor of successors) audits.push({ event: (successorAudit as (serial: string) => AuditEvent)(successor.serial), occurredAt: revokedAt });
      await appendAuditEvents(transaction, audits);
      return { kind: alreadyRevoked ? "already-revoked" : "revoked", authorityId: row.authority_id, successors };
    });
  }

  /**
   * Revokes every unrevoked, unexpired later certificate of the lineage. A renewal of a successor may commit
   * on another node while this runs (it locks that successor, which the UPDATE here then waits for), after
   * the statement that found the lineage read it: so the lineage is read again after each round of updates,
   * until a read finds nothing left. A successor revoked here cannot be renewed afterwards (its renewal sees
   * the revocation under the same row lock), so the rounds end.
   */
  private async revokeSuccessors(transaction: PostgresTransaction, serial: string, reason: string, revokedAt: Date): Promise<RevokedSuccessor[]> {
    const revoked: RevokedSuccessor[] = [];
    for (;;) {
      const { rows } = await transaction.query<{ serial: string; authority_id: string }>(UNREVOKED_SUCCESSORS, [serial, revokedAt.getTime()]);
      if (rows.length === 0) return revoked;
      // A successor still being signed is revoked as well, so that it is born revoked.
      const updated = await transaction.query<{ serial: string; authority_id: string }>(
        `UPDATE certificates SET revoked_at = $1, revocation_reason = $2
         WHERE serial = ANY($3) AND state <> 'failed' AND revoked_at IS NULL RETURNING serial, authority_id`,
        [revokedAt.getTime(), reason, rows.map((successor) => successor.serial)],
      );
      // Those another transaction revoked meanwhile are theirs to report; ending on none updated cannot loop.
      if (updated.rows.length === 0) return revoked;
      const order = new Map(rows.map((successor, index) => [successor.serial, index]));
      const inLineageOrder = [...updated.rows].sort((a, b) => (order.get(a.serial) as number) - (order.get(b.serial) as number));
      revoked.push(...inLineageOrder.map((successor) => ({ serial: successor.serial, authorityId: successor.authority_id })));
    }
  }

  /**
   * Read in chunks by keyset on (revoked_at, serial), the order of the partial index certificates_crl_entries:
   * each chunk is its own statement, so no transaction stays open while the CRL is being built.
   */
  async *revokedEntries(authorityId: string): AsyncGenerator<RevokedEntry> {
    let after: { revokedAt: string; serial: string } | undefined;
    for (;;) {
      const { rows } = await this.db.query<{ serial: string; revoked_at: string; revocation_reason: string; not_after: string }>(
        `SELECT serial, revoked_at, revocation_reason, not_after FROM certificates
         WHERE authority_id = $1 AND revoked_at IS NOT NULL AND crl_listed_after_expiry_at IS NULL
           AND ($2::BIGINT IS NULL OR (revoked_at, serial) > ($2::BIGINT, $3::TEXT))
         ORDER BY revoked_at, serial LIMIT $4`,
        [authorityId, after?.revokedAt ?? null, after?.serial ?? null, REVOKED_ENTRIES_CHUNK],
      );
      for (const row of rows) {
        yield { serial: row.serial, revokedAt: new Date(Number(row.revoked_at)), reason: row.revocation_reason, notAfter: new Date(Number(row.not_after)) };
      }
      const last = rows.at(-1);
      if (rows.length < REVOKED_ENTRIES_CHUNK || last === undefined) return;
      after = { revokedAt: last.revoked_at, serial: last.serial };
    }
  }

  async recordListedAfterExpiry(authorityId: string, serials: readonly string[], thisUpdate: Date): Promise<void> {
    if (serials.length === 0) return;
    // One statement: one transaction for the batch. The IS NULL keeps the first such CRL when two nodes record.
    await this.db.query(
      `UPDATE certificates SET crl_listed_after_expiry_at = $1
       WHERE serial = ANY($2) AND authority_id = $3 AND revoked_at IS NOT NULL AND not_after < $1 AND crl_listed_after_expiry_at IS NULL`,
      [thisUpdate.getTime(), [...serials], authorityId],
    );
  }

  async reserveCrlNumber(authorityId: string): Promise<bigint> {
    // The upsert takes the counter row's lock: nodes reserving at once take turns, each adding one to the
    // number the previous one committed, so numbers strictly increase (and the first two inserts race into
    // ON CONFLICT, never into two rows).
    const { rows } = await this.db.query<{ last_number: string }>(
      `INSERT INTO crl_counters (authority_id, last_number) VALUES ($1, 1)
       ON CONFLICT (authority_id) DO UPDATE SET last_number = crl_counters.last_number + 1 RETURNING last_number`,
      [authorityId],
    );
    return BigInt((rows[0] as { last_number: string }).last_number);
  }
}
