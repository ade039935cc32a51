import type { CertificateFilter, CertificateOrigin, CertificateProfile, CertificateRecord, Page } from "../ca/model.js";
import type {
  AbandonedIssuance,
  CertificateQuery,
  CompletedIssuance,
  IssuanceLedger,
  JwtUse,
  PreparedIssuance,
  ReservationResult,
} from "../ca/ports.js";
import type { SqliteAuditEventRepository } from "./audit-event-repository.js";
import type { SqliteDatabase } from "./database.js";
import { GroupCommitter } from "./group-commit.js";
import { keysetPage } from "./keyset-page.js";

export interface CertificateRow {
  issued_seq: number;
  serial: string;
  authority_id: string;
  spiffe_id: string;
  dns_names: string;
  not_before: number;
  not_after: number;
  key_type: string;
  requester: string;
  der: Buffer;
  fingerprint_sha256: string;
  issued_at: number;
  revoked_at: number | null;
  revocation_reason: string | null;
  origin: string | null;
  profile: CertificateProfile;
}

export const certificateFromRow = (row: CertificateRow): CertificateRecord => ({
  serial: row.serial,
  authorityId: row.authority_id,
  spiffeId: row.spiffe_id,
  dnsNames: JSON.parse(row.dns_names) as string[],
  notBefore: new Date(row.not_before),
  notAfter: new Date(row.not_after),
  keyType: row.key_type,
  requester: row.requester,
  der: row.der,
  fingerprintSha256: row.fingerprint_sha256,
  issuedAt: new Date(row.issued_at),
  revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
  revocationReason: row.revocation_reason,
  origin: row.origin === null ? null : (JSON.parse(row.origin) as CertificateOrigin),
  profile: row.profile,
});

const CURSOR_TAG = "c";

/** The IS NOT NULL is what lets SQLite answer from the partial index on issued_seq instead of scanning the table. */
const LAST_ISSUED_SEQ = "SELECT max(issued_seq) FROM certificates WHERE issued_seq IS NOT NULL";

/** A WHERE clause (without the keyword) and its parameters. */
interface Condition {
  readonly sql: string;
  readonly parameters: readonly unknown[];
}

function filterConditions(filter: CertificateFilter, now: Date): Condition[] {
  const conditions: Condition[] = [{ sql: "issued_seq IS NOT NULL", parameters: [] }];
  const add = (sql: string, ...parameters: unknown[]): void => {
    conditions.push({ sql, parameters });
  };
  if (filter.serial !== undefined) add("serial = ?", filter.serial);
  if (filter.spiffeId !== undefined) add("spiffe_id = ?", filter.spiffeId);
  // Range instead of LIKE: uses the index and treats % and _ in the prefix literally.
  if (filter.spiffeIdPrefix !== undefined) {
    add("spiffe_id >= ? AND spiffe_id < ?", filter.spiffeIdPrefix, `${filter.spiffeIdPrefix}\u{10FFFF}`);
  }
  if (filter.dnsName !== undefined) {
    add("issued_seq IN (SELECT issued_seq FROM certificate_dns_names WHERE name = ?)", filter.dnsName);
  }
  if (filter.authorityId !== undefined) add("authority_id = ?", filter.authorityId);
  if (filter.requester !== undefined) add("requester = ?", filter.requester);
  if (filter.status === "REVOKED") add("revoked_at IS NOT NULL");
  if (filter.status === "VALID") add("revoked_at IS NULL AND not_after > ?", now.getTime());
  if (filter.status === "EXPIRED") add("revoked_at IS NULL AND not_after <= ?", now.getTime());
  // issued_at is non-decreasing along issued_seq, so "issued at or after t" is "issued_seq at or after the
  // first row issued at or after t": one index probe, then the same range scan every page uses.
  const firstSeqIssuedFrom = "coalesce((SELECT issued_seq FROM certificates WHERE issued_at >= ? ORDER BY issued_at, issued_seq LIMIT 1), 9007199254740991)";
  if (filter.issuedAfter !== undefined) add(`issued_seq >= ${firstSeqIssuedFrom}`, filter.issuedAfter.getTime());
  if (filter.issuedBefore !== undefined) add(`issued_seq < ${firstSeqIssuedFrom}`, filter.issuedBefore.getTime());
  if (filter.expiresAfter !== undefined) add("not_after >= ?", filter.expiresAfter.getTime());
  if (filter.expiresBefore !== undefined) add("not_after < ?", filter.expiresBefore.getTime());
  return conditions;
}

export class SqliteCertificateStore implements IssuanceLedger, CertificateQuery {
  private readonly committer: GroupCommitter;
  private readonly statements;

  constructor(
    private readonly db: SqliteDatabase,
    private readonly audit: SqliteAuditEventRepository,
  ) {
    this.committer = new GroupCommitter(db);
    this.statements = {
      consumeToken: db.prepare(
        "UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE token_hash = ? AND uses_left > 0 AND expires_at > ?",
      ),
      // A token voided or expired while its certificate was being signed stays void: the refund is no way back.
      refundToken: db.prepare(
        "UPDATE enrollment_tokens SET uses_left = uses_left + 1 WHERE token_hash = ? AND revoked_at IS NULL AND expires_at > ?",
      ),
      jwtUsed: db.prepare("SELECT 1 FROM jwt_uses WHERE issuer = ? AND jti = ? AND expires_at >= ?").pluck(),
      useJwt: db.prepare("INSERT INTO jwt_uses (issuer, jti, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"),
      refundJwt: db.prepare("DELETE FROM jwt_uses WHERE issuer = ? AND jti = ?"),
      forgetExpiredJwts: db.prepare("DELETE FROM jwt_uses WHERE expires_at < ?"),
      reserve: db.prepare(
        `INSERT INTO certificates (serial, authority_id, state, spiffe_id, dns_names, not_before, not_after, key_type, requester, tbs_der, prepared_at, predecessor_serial, origin)
         VALUES (?, ?, 'prepared', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      successor: db.prepare("SELECT serial FROM certificates WHERE predecessor_serial = ? AND state <> 'failed'").pluck(),
      revokedAt: db.prepare("SELECT revoked_at FROM certificates WHERE serial = ?").pluck(),
      tokenRevokedAt: db.prepare("SELECT revoked_at FROM enrollment_tokens WHERE id = ?").pluck(),
      registrationSpiffeId: db.prepare("SELECT spiffe_id FROM registrations WHERE id = ?").pluck(),
      complete: db.prepare(
        `UPDATE certificates SET state = 'issued', der = ?, fingerprint_sha256 = ?,
           issued_at = max(?, coalesce((SELECT issued_at FROM certificates WHERE issued_seq = (${LAST_ISSUED_SEQ})), 0)),
           issued_seq = coalesce((${LAST_ISSUED_SEQ}), 0) + 1
         WHERE serial = ? AND state = 'prepared'`,
      ),
      indexDnsNames: db.prepare(
        `INSERT INTO certificate_dns_names (name, issued_seq)
         SELECT json_each.value, certificates.issued_seq FROM certificates, json_each(certificates.dns_names)
         WHERE certificates.serial = ?`,
      ),
      setProfile: db.prepare("UPDATE certificates SET profile = ? WHERE serial = ?"),
      fail: db.prepare("UPDATE certificates SET state = 'failed' WHERE serial = ? AND state = 'prepared'"),
      get: db.prepare("SELECT * FROM certificates WHERE serial = ? AND state = 'issued'"),
      freePages: db.prepare("SELECT freelist_count * page_size FROM pragma_freelist_count(), pragma_page_size()").pluck(),
      claimSpace: db.prepare("INSERT INTO storage_probe (payload) VALUES (zeroblob(?))"),
      releaseSpace: db.prepare("DELETE FROM storage_probe"),
    };
  }

  /**
   * Resolves when a write would go through now: it takes the write lock the way issuance does (bounded wait,
   * without blocking the event loop) and, after the disk refused a write, also claims more space than the
   * file has free inside it, so that the answer is about new pages. Rejects with UnavailableError otherwise.
   */
  probeWritable(): Promise<void> {
    return this.committer.submit(() => {
      if (!this.committer.storageFailing) return;
      // Capped: a file with that much free inside mostly fails on WAL growth, which any commit here exercises.
      const free = Number(this.statements.freePages.get());
      this.statements.claimSpace.run(Math.min(free + 65_536, 1_048_576));
      this.statements.releaseSpace.run();
    });
  }

  /**
   * The part of an origin's standing that lives in this database, read inside the reservation: a token revoked
   * or a registration deleted or re-pointed after authentication stops the renewal here. (A JWT issuer removed
   * from the configuration is the authorizer's to see.)
   */
  private originStands(origin: CertificateOrigin, spiffeId: string): boolean {
    if (origin.kind === "token") {
      const revokedAt = this.statements.tokenRevokedAt.get(origin.tokenId) as number | null | undefined;
      if (revokedAt !== null) return false;
    }
    if (origin.kind !== "system" && origin.registrationId !== null) {
      if (this.statements.registrationSpiffeId.get(origin.registrationId) !== spiffeId) return false;
    }
    return true;
  }

  prepare(items: readonly PreparedIssuance[], now: Date): Promise<ReservationResult[]> {
    return this.committer.submit(() => {
      if (items.some((item) => item.consumeJwt)) this.statements.forgetExpiredJwts.run(now.getTime());
      return items.map((item): ReservationResult => {
        if (item.predecessorSerial !== undefined) {
          // Authentication saw the predecessor unrevoked, but a revocation may have landed since; this
          // transaction is what decides, and the KEY_COMPROMISE cascade revokes any successor reserved before it.
          if (this.statements.revokedAt.get(item.predecessorSerial) != null) return { ok: false, reason: "PREDECESSOR_REVOKED" };
          if (item.origin && !this.originStands(item.origin, item.spiffeId)) return { ok: false, reason: "ORIGIN_WITHDRAWN" };
          const successor = this.statements.successor.get(item.predecessorSerial) as string | undefined;
          if (successor !== undefined) return { ok: false, reason: "SUPERSEDED", successorSerial: successor };
        }
        if (item.consumeJwt) {
          const { issuer, tokenId, expiresAt } = item.consumeJwt;
          if (this.statements.useJwt.run(issuer, tokenId, expiresAt.getTime()).changes === 0) return { ok: false, reason: "JWT_REPLAYED" };
        }
        if (item.consumeTokenHash) {
          const consumed = this.statements.consumeToken.run(item.consumeTokenHash, now.getTime());
          if (consumed.changes === 0) return { ok: false, reason: "TOKEN_EXHAUSTED" };
        }
        this.statements.reserve.run(
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
        );
        if (item.profile !== undefined && item.profile !== "workload") this.statements.setProfile.run(item.profile, item.serial);
        this.audit.appendNow(item.audit, now);
        return { ok: true };
      });
    });
  }

  async jwtAlreadyUsed(use: JwtUse, now: Date): Promise<boolean> {
    return this.statements.jwtUsed.get(use.issuer, use.tokenId, now.getTime()) !== undefined;
  }

  complete(items: readonly CompletedIssuance[], now: Date): Promise<void> {
    return this.committer.submit(() => {
      for (const item of items) {
        const updated = this.statements.complete.run(item.der, item.fingerprintSha256, now.getTime(), item.serial);
        if (updated.changes !== 1) throw new Error(`certificate ${item.serial} is not reserved`);
        this.statements.indexDnsNames.run(item.serial);
        this.audit.appendNow(item.audit, now);
      }
    });
  }

  abandon(items: readonly AbandonedIssuance[], now: Date): Promise<void> {
    return this.committer.submit(() => {
      for (const item of items) {
        this.statements.fail.run(item.serial);
        if (item.refundTokenHash) this.statements.refundToken.run(item.refundTokenHash, now.getTime());
        if (item.refundJwt) this.statements.refundJwt.run(item.refundJwt.issuer, item.refundJwt.tokenId);
        this.audit.appendNow(item.audit, now);
      }
    });
  }

  async get(serial: string): Promise<CertificateRecord | undefined> {
    const row = this.statements.get.get(serial) as CertificateRow | undefined;
    return row && certificateFromRow(row);
  }

  async list(filter: CertificateFilter, first: number, after: string | undefined, now: Date): Promise<Page<CertificateRecord>> {
    return this.listNow(filter, first, after, now);
  }

  private listNow(filter: CertificateFilter, first: number, after: string | undefined, now: Date): Page<CertificateRecord> {
    const conditions = filterConditions(filter, now);
    return keysetPage({
      db: this.db,
      table: "certificates",
      orderColumn: "issued_seq",
      cursorTag: CURSOR_TAG,
      where: conditions.map((condition) => condition.sql).join(" AND "),
      parameters: conditions.flatMap((condition) => condition.parameters),
      first,
      after,
      position: (row: CertificateRow) => row.issued_seq,
      item: certificateFromRow,
    });
  }

  /**
   * Every issued certificate matching `filter`, in commit order, fetched `chunkSize` rows at a time: an
   * export of millions of rows holds one chunk in memory and no read transaction between chunks.
   */
  async *iterate(filter: CertificateFilter, now: Date, chunkSize = 1000): AsyncGenerator<CertificateRecord> {
    let after: string | undefined;
    for (;;) {
      const page = this.listNow(filter, chunkSize, after, now);
      yield* page.items;
      if (!page.hasNextPage) return;
      after = page.cursors.at(-1);
    }
  }
}
