import type { AuditEvent } from "../audit/audit-log.js";
import type { RevocationOutcome, RevocationRepository, RevokedEntry, RevokedSuccessor } from "../revocation/ports.js";
import type { SqliteAuditEventRepository } from "./audit-event-repository.js";
import { inTransaction, type SqliteDatabase } from "./database.js";

const REVOKED_ENTRIES_CHUNK = 2_000;

export class SqliteRevocationRepository implements RevocationRepository {
  private readonly statements;

  constructor(
    private readonly db: SqliteDatabase,
    private readonly audit: SqliteAuditEventRepository,
  ) {
    this.statements = {
      find: db.prepare("SELECT authority_id, revoked_at FROM certificates WHERE serial = ? AND state = 'issued'"),
      revoke: db.prepare(
        "UPDATE certificates SET revoked_at = ?, revocation_reason = ? WHERE serial = ? AND state = 'issued' AND revoked_at IS NULL",
      ),
      // Lineage links of failed attempts are not followed: a failed row has no successor of its own.
      unrevokedSuccessors: db.prepare(
        `WITH RECURSIVE lineage(serial) AS (
           SELECT serial FROM certificates WHERE predecessor_serial = ? AND state <> 'failed'
           UNION
           SELECT certificates.serial FROM certificates JOIN lineage ON certificates.predecessor_serial = lineage.serial
           WHERE certificates.state <> 'failed'
         )
         SELECT certificates.serial, certificates.authority_id AS authorityId FROM certificates JOIN lineage USING (serial)
         WHERE certificates.revoked_at IS NULL AND certificates.not_after > ?`,
      ),
      // A successor still being signed is revoked as well, so that it is born revoked.
      revokeSuccessor: db.prepare(
        "UPDATE certificates SET revoked_at = ?, revocation_reason = ? WHERE serial = ? AND state <> 'failed' AND revoked_at IS NULL",
      ),
      // Answered from the partial index certificates_crl_entries, which holds exactly these rows.
      revoked: db.prepare(
        `SELECT serial, revoked_at, revocation_reason, not_after FROM certificates
         WHERE authority_id = ? AND revoked_at IS NOT NULL AND crl_listed_after_expiry_at IS NULL AND (revoked_at, serial) > (?, ?)
         ORDER BY revoked_at, serial LIMIT ?`,
      ),
      listedAfterExpiry: db.prepare(
        `UPDATE certificates SET crl_listed_after_expiry_at = ?
         WHERE serial = ? AND authority_id = ? AND revoked_at IS NOT NULL AND not_after < ? AND crl_listed_after_expiry_at IS NULL`,
      ),
      reserve: db
        .prepare(
          `INSERT INTO crl_counters (authority_id, last_number) VALUES (?, 1)
           ON CONFLICT (authority_id) DO UPDATE SET last_number = last_number + 1 RETURNING last_number`,
        )
        .safeIntegers(true),
    };
  }

  async revoke(
    serial: string,
    reason: string,
    revokedAt: Date,
    audit: AuditEvent,
    successorAudit?: (serial: string) => AuditEvent,
  ): Promise<RevocationOutcome> {
    return inTransaction(this.db, () => {
      const row = this.statements.find.get(serial) as { authority_id: string; revoked_at: number | null } | undefined;
      if (!row) return { kind: "not-found" } as const;
      const alreadyRevoked = row.revoked_at !== null;
      if (!alreadyRevoked) {
        this.statements.revoke.run(revokedAt.getTime(), reason, serial);
        this.audit.appendNow(audit, revokedAt);
      }
      const successors = successorAudit ? (this.statements.unrevokedSuccessors.all(serial, revokedAt.getTime()) as RevokedSuccessor[]) : [];
      for (const successor of successors) {
        this.statements.revokeSuccessor.run(revokedAt.getTime(), reason, successor.serial);
        this.audit.appendNow((successorAudit as (serial: string) => AuditEvent)(successor.serial), revokedAt);
      }
      return { kind: alreadyRevoked ? "already-revoked" : "revoked", authorityId: row.authority_id, successors } as const;
    });
  }

  /**
   * Read in keyset chunks rather than through one open cursor: the consumer awaits between entries, and the
   * connection must stay free for other statements meanwhile.
   */
  async *revokedEntries(authorityId: string): AsyncIterable<RevokedEntry> {
    let after: { revokedAt: number; serial: string } = { revokedAt: -1, serial: "" };
    for (;;) {
      const rows = this.statements.revoked.all(authorityId, after.revokedAt, after.serial, REVOKED_ENTRIES_CHUNK) as {
        serial: string;
        revoked_at: number;
        revocation_reason: string;
        not_after: number;
      }[];
      for (const row of rows) {
        yield { serial: row.serial, revokedAt: new Date(row.revoked_at), reason: row.revocation_reason, notAfter: new Date(row.not_after) };
      }
      const last = rows.at(-1);
      if (!last || rows.length < REVOKED_ENTRIES_CHUNK) return;
      after = { revokedAt: last.revoked_at, serial: last.serial };
    }
  }

  async recordListedAfterExpiry(authorityId: string, serials: readonly string[], thisUpdate: Date): Promise<void> {
    if (serials.length === 0) return;
    inTransaction(this.db, () => {
      for (const serial of serials) this.statements.listedAfterExpiry.run(thisUpdate.getTime(), serial, authorityId, thisUpdate.getTime());
    });
  }

  async reserveCrlNumber(authorityId: string): Promise<bigint> {
    return this.statements.reserve.pluck().get(authorityId) as bigint;
  }
}
