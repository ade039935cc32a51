import type { CertificateFilter, CertificateOrigin, CertificateProfile, CertificateRecord, Page } from "../../ca/model.js";
import type {
  AbandonedIssuance,
  CertificateQuery,
  CompletedIssuance,
  IssuanceLedger,
  JwtUse,
  PreparedIssuance,
  ReservationResult,
} from "../../ca/ports.js";
import { UnavailableError } from "../../common/errors.js";
import { ADVISORY_LOCKS } from "./advisory-locks.js";
import type { PendingAuditEvent } from "./audit-event-repository.js";
import { TransactionBatcher } from "./transaction-batcher.js";
import type { PostgresDatabase, PostgresTransaction } from "./database.js";
import { type Condition, postgresKeysetPage } from "./keyset-page.js";

/** A certificates row as pg returns it: BIGINT columns as strings, dns_names (JSONB) parsed. */
export interface PostgresCertificateRow {
  [column: string]: unknown;
  issued_seq: string;
  serial: string;
  authority_id: string;
  spiffe_id: string;
  dns_names: string[];
  not_before: string;
  not_after: string;
  key_type: string;
  requester: string;
  der: Buffer;
  fingerprint_sha256: string;
  issued_at: string;
  revoked_at: string | null;
  revocation_reason: string | null;
  origin: string | null;
  profile: CertificateProfile;
}

export const certificateFromPostgresRow = (row: PostgresCertificateRow): CertificateRecord => ({
  serial: row.serial,
  authorityId: row.authority_id,
  spiffeId: row.spiffe_id,
  dnsNames: row.dns_names,
  notBefore: new Date(Number(row.not_before)),
  notAfter: new Date(Number(row.not_after)),
  keyType: row.key_type,
  requester: row.requester,
  der: row.der,
  fingerprintSha256: row.fingerprint_sha256,
  issuedAt: new Date(Number(row.issued_at)),
  revokedAt: row.revoked_at === null ? null : new Date(Number(row.revoked_at)),
  revocationReason: row.revocation_reason,
  origin: row.origin === null ? null : (JSON.parse(row.origin) as CertificateOrigin),
  profile: row.profile,
});

/** The same cursor tag as the SQLite store: a cursor means the same position on either engine. */
const CURSOR_TAG = "c";

/**
 * History pages by issued_seq and a page must never miss a row committed after it was read, so the numbers
 * must follow commit order; a sequence does not (a transaction may take 7 and commit after one that took 8).
 * Each completion takes the `issuedSequence` advisory lock, reads the greatest number committed and writes the
 * next, and releases the lock by committing: the next holder then sees that number.
 */
const ISSUED_SEQ_LOCK_KEY = ADVISORY_LOCKS.issuedSequence;

/** Completions first in a shared transaction: they take the issued_seq lock, which must come before row locks. */
const RANK = { complete: 0, prepare: 1, abandon: 2 } as const;

const LAST_ISSUED_SEQ = "SELECT max(issued_seq) FROM certificates WHERE issued_seq IS NOT NULL";

function filterConditions(filter: CertificateFilter, now: Date): Condition[] {
  const conditions: Condition[] = [{ sql: "issued_seq IS NOT NULL", parameters: [] }];
  const add = (sql: string, ...parameters: unknown[]): void => {
    conditions.push({ sql, parameters });
  };
  if (filter.serial !== undefined) add("serial = ?", filter.serial);
  if (filter.spiffeId !== undefined) add("spiffe_id = ?", filter.spiffeId);
  // Range instead of LIKE: uses the index and treats % and _ in the prefix literally. The range is exact where
  // text compares by code point, as in SQLite and in a database created with the C collation; starts_with
  // keeps other collations from adding rows (a COLLATE "C" here would keep the index out of use).
  if (filter.spiffeIdPrefix !== undefined) {
    add("spiffe_id >= ? AND spiffe_id < ? AND starts_with(spiffe_id, ?)", filter.spiffeIdPrefix, `${filter.spiffeIdPrefix}\u{10FFFF}`, filter.spiffeIdPrefix);
  }
  if (filter.dnsName !== undefined) {
    add("issued_seq IN (SELECT issued_seq FROM certificate_dns_names WHERE name = ?)", filter.dnsName);
  }
  if (filter.authorityId !== undefined) add("authority_id = ?", filter.authorityId);
  if (filter.requester !== undefined) add("requester = ?", filter.requester);
  if (filter.status === "REVOKED") add("revoked_at IS NOT NULL");
  if (filter.status === "VALID") add("revoked_at IS NULL AND not_after > ?", now.getTime());
  if (filter.status === "EXPIRED") add("revoked_at IS NULL AND not_after <= ?", now.getTime());
  // issued_at is non-decreasing along issued_seq (completions raise it to the last one's), so "issued at or
  // after t" is "issued_seq at or after the first row issued at or after t".
  const firstSeqIssuedFrom =
    "coalesce((SELECT issued_seq FROM certificates WHERE issued_at >= ? ORDER BY issued_at, issued_seq LIMIT 1), 9007199254740991)";
  if (filter.issuedAfter !== undefined) add(`issued_seq >= ${firstSeqIssuedFrom}`, filter.issuedAfter.getTime());
  if (filter.issuedBefore !== undefined) add(`issued_seq < ${firstSeqIssuedFrom}`, filter.issuedBefore.getTime());
  if (filter.expiresAfter !== undefined) add("not_after >= ?", filter.expiresAfter.getTime());
  if (filter.expiresBefore !== undefined) add("not_after < ?", filter.expiresBefore.getTime());
  return conditions;
}

/**
 * The certificate ledger on PostgreSQL, shared by every node: the counterpart of `SqliteCertificateStore`.
 * Where SQLite's single writer makes each reservation's checks and writes indivisible, here row locks and
 * conditional writes do, as each method says.
 */
export class PostgresCertificateStore implements IssuanceLedger, CertificateQuery {
  private readonly batcher: TransactionBatcher;

  constructor(private readonly db: PostgresDatabase) {
    this.batcher = new TransactionBatcher(db);
  }

  /**
   * Resolves when a write would go through now: a transaction that writes (and removes) a row, so that a
   * server that is unreachable, read-only (a standby after a failover) or out of disk answers no. Rejects
   * with UnavailableError otherwise.
   */
  async probeWritable(): Promise<void> {
    try {
      await this.db.transaction(async (transaction) => {
        await transaction.query("INSERT INTO storage_probe (payload) VALUES ('\\x00'::bytea)");
        await transaction.query("DELETE FROM storage_probe");
      });
    } catch (error) {
      if (error instanceof UnavailableError) throw error;
      throw new UnavailableError("the database does not accept writes now; retry shortly", { cause: error });
    }
  }

  /**
   * Whether the origin still stands, read inside the reservation. FOR SHARE: a token revocation or a
   * registration change committing concurrently waits for this reservation, or this one sees it.
   */
  private async originStands(transaction: PostgresTransaction, origin: CertificateOrigin, spiffeId: string): Promise<boolean> {
    if (origin.kind === "token") {
      const { rows } = await transaction.query<{ revoked_at: string | null }>(
        "SELECT revoked_at FROM enrollment_tokens WHERE id = $1 FOR SHARE",
        [origin.tokenId],
      );
      if (rows.length === 0 || rows[0]?.revoked_at !== null) return false;
    }
    if (origin.kind !== "system" && origin.registrationId !== null) {
      const { rows } = await transaction.query<{ spiffe_id: string }>("SELECT spiffe_id FROM registrations WHERE id = $1 FOR SHARE", [
        origin.registrationId,
      ]);
      if (rows[0]?.spiffe_id !== spiffeId) return false;
    }
    return true;
  }

  private async reserveOne(transaction: PostgresTransaction, item: PreparedIssuance, now: Date): Promise<ReservationResult> {
    if (item.predecessorSerial !== undefined) {
      // Locking the predecessor row makes renewals of one certificate take turns across nodes: the second
      // sees the first's successor once it committed (each READ COMMITTED statement reads afresh) and is
      // SUPERSEDED; a revocation (an UPDATE of this row) either commits first and is seen here, or waits and
      // its KEY_COMPROMISE cascade finds the successor reserved here.
      const { rows } = await transaction.query<{ revoked_at: string | null }>(
        "SELECT revoked_at FROM certificates WHERE serial = $1 FOR UPDATE",
        [item.predecessorSerial],
      );
      if (rows[0] !== undefined && rows[0].revoked_at !== null) return { ok: false, reason: "PREDECESSOR_REVOKED" };
      if (item.origin && !(await this.originStands(transaction, item.origin, item.spiffeId))) return { ok: false, reason: "ORIGIN_WITHDRAWN" };
      const successor = await transaction.query<{ serial: string }>(
        "SELECT serial FROM certificates WHERE predecessor_serial = $1 AND state <> 'failed'",
        [item.predecessorSerial],
      );
      const successorSerial = successor.rows[0]?.serial;
      if (successorSerial !== undefined) return { ok: false, reason: "SUPERSEDED", successorSerial };
    }
    if (item.consumeJwt) {
      // The primary key decides: of two nodes inserting one jti, the second waits for the first and inserts nothing.
      const { issuer, tokenId, expiresAt } = item.consumeJwt;
      const used = await transaction.query("INSERT INTO jwt_uses (issuer, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", [
        issuer,
        tokenId,
        expiresAt.getTime(),
      ]);
      if (used.rowCount === 0) return { ok: false, reason: "JWT_REPLAYED" };
    }
    if (item.consumeTokenHash) {
      // A conditional UPDATE: concurrent ones queue on the row lock and re-check uses_left against the row
      // as the previous one committed it, so uses never go below zero (the CHECK would refuse it anyway).
      const consumed = await transaction.query(
        "UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE token_hash = $1 AND uses_left > 0 AND expires_at > $2",
        [item.consumeTokenHash, now.getTime()],
      );
      if (consumed.rowCount === 0) return { ok: false, reason: "TOKEN_EXHAUSTED" };
    }
    // The primary key keeps serials unique and the partial unique index certificates_successor keeps one live
    // successor per certificate, whatever the application does.
    await transaction.query(
      `INSERT INTO certificates (serial, authority_id, state, spiffe_id, dns_names, not_before, not_after, key_type, requester, tbs_der,
         prepared_at, predecessor_serial, origin, profile)
       VALUES ($1, $2, 'prepared', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
      [
        item.serial,
        item.authorityId,
        item.spiffeId,
        JSON.stringify(item.dnsNames),
        item.notBefore.getTime(),
        item.notAfter.getTime(),
        item.keyType,
        item.requester,
        item.tbsDer,
        now.getTime(),
        item.predecessorSerial ?? null,
        item.origin ? JSON.stringify(item.origin) : null,
        item.profile ?? "workload",
      ],
    );
    return { ok: true };
  }

  prepare(items: readonly PreparedIssuance[], now: Date): Promise<ReservationResult[]> {
    return this.batcher.submit(RANK.prepare, async (transaction) => {
      if (items.some((item) => item.consumeJwt)) await transaction.query("DELETE FROM jwt_uses WHERE expires_at < $1", [now.getTime()]);
      const results: ReservationResult[] = [];
      const audit: PendingAuditEvent[] = [];
      for (const item of items) {
        const result = await this.reserveOne(transaction, item, now);
        results.push(result);
        if (result.ok) audit.push({ event: item.audit, occurredAt: now });
      }
      return { value: results, audit };
    });
  }

  async jwtAlreadyUsed(use: JwtUse, now: Date): Promise<boolean> {
    const { rowCount } = await this.db.query("SELECT 1 FROM jwt_uses WHERE issuer = $1 AND jti = $2 AND expires_at >= $3", [
      use.issuer,
      use.tokenId,
      now.getTime(),
    ]);
    return (rowCount ?? 0) > 0;
  }

  complete(items: readonly CompletedIssuance[], now: Date): Promise<void> {
    return this.batcher.submit(RANK.complete, async (transaction) => {
      if (items.length === 0) return { value: undefined, audit: [] };
      // Held until commit: see ISSUED_SEQ_LOCK_KEY. Taken before the audit lock, as every transaction taking both does.
      await transaction.query("SELECT pg_advisory_xact_lock($1)", [ISSUED_SEQ_LOCK_KEY.toString()]);
      // One statement for the batch: the items take the numbers after the last one committed, in their order,
      // and issued_at never goes below the last certificate's, so that it stays non-decreasing along issued_seq.
      const { rows } = await transaction.query<{ serial: string }>(
        `WITH last AS (
           SELECT coalesce(max(issued_seq), 0) AS issued_seq,
                  coalesce((SELECT issued_at FROM certificates WHERE issued_seq = (${LAST_ISSUED_SEQ})), 0) AS issued_at
           FROM certificates WHERE issued_seq IS NOT NULL
         ), completed AS (
           SELECT * FROM unnest($1::TEXT[], $2::BYTEA[], $3::TEXT[]) WITH ORDINALITY AS completed (serial, der, fingerprint_sha256, position)
         )
         UPDATE certificates SET state = 'issued', der = completed.der, fingerprint_sha256 = completed.fingerprint_sha256,
           issued_at = greatest($4::BIGINT, last.issued_at), issued_seq = last.issued_seq + completed.position
         FROM completed, last
         WHERE certificates.serial = completed.serial AND certificates.state = 'prepared'
         RETURNING certificates.serial`,
        [items.map((item) => item.serial), items.map((item) => item.der), items.map((item) => item.fingerprintSha256), now.getTime()],
      );
      if (rows.length !== items.length) {
        const completed = new Set(rows.map((row) => row.serial));
        const missing = items.find((item) => !completed.has(item.serial)) ?? items.at(-1);
        throw new Error(`certificate ${missing?.serial} is not reserved`);
      }
      await transaction.query(
        `INSERT INTO certificate_dns_names (name, issued_seq)
         SELECT names.name, certificates.issued_seq FROM certificates, jsonb_array_elements_text(certificates.dns_names) AS names (name)
         WHERE certificates.serial = ANY($1)`,
        [items.map((item) => item.serial)],
      );
      return { value: undefined, audit: items.map((item) => ({ event: item.audit, occurredAt: now })) };
    });
  }

  abandon(items: readonly AbandonedIssuance[], now: Date): Promise<void> {
    return this.batcher.submit(RANK.abandon, async (transaction) => {
      for (const item of items) {
        await transaction.query("UPDATE certificates SET state = 'failed' WHERE serial = $1 AND state = 'prepared'", [item.serial]);
        // A token voided or expired while its certificate was being signed stays void: the refund is no way back.
        if (item.refundTokenHash) {
          await transaction.query(
            "UPDATE enrollment_tokens SET uses_left = uses_left + 1 WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
            [item.refundTokenHash, now.getTime()],
          );
        }
        if (item.refundJwt) {
          await transaction.query("DELETE FROM jwt_uses WHERE issuer = $1 AND jti = $2", [item.refundJwt.issuer, item.refundJwt.tokenId]);
        }
      }
      return { value: undefined, audit: items.map((item) => ({ event: item.audit, occurredAt: now })) };
    });
  }

  async get(serial: string): Promise<CertificateRecord | undefined> {
    const { rows } = await this.db.query<PostgresCertificateRow>("SELECT * FROM certificates WHERE serial = $1 AND state = 'issued'", [serial]);
    return rows[0] && certificateFromPostgresRow(rows[0]);
  }

  list(filter: CertificateFilter, first: number, after: string | undefined, now: Date): Promise<Page<CertificateRecord>> {
    return postgresKeysetPage({
      db: this.db,
      table: "certificates",
      orderColumn: "issued_seq",
      cursorTag: CURSOR_TAG,
      conditions: filterConditions(filter, now),
      first,
      after,
      item: certificateFromPostgresRow,
    });
  }

  /**
   * Every issued certificate matching `filter`, in commit order, fetched `chunkSize` rows at a time: an
   * export of millions of rows holds one chunk in memory and no transaction between chunks.
   */
  async *iterate(filter: CertificateFilter, now: Date, chunkSize = 1000): AsyncGenerator<CertificateRecord> {
    let after: string | undefined;
    for (;;) {
      const page = await this.list(filter, chunkSize, after, now);
      yield* page.items;
      if (!page.hasNextPage) return;
      after = page.cursors.at(-1);
    }
  }
}
