import type { CertificateFilter, CertificateRecord, Page } from "../ca/model.js";
import type {
  AbandonedIssuance,
  CertificateQuery,
  CompletedIssuance,
  IssuanceLedger,
  PreparedIssuance,
  ReservationResult,
} from "../ca/ports.js";
import { BadUserInputError } from "../common/errors.js";
import type { SqliteAuditEventRepository } from "./audit-event-repository.js";
import type { SqliteDatabase } from "./database.js";
import { GroupCommitter } from "./group-commit.js";

interface CertificateRow {
  rowid: number;
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
}

const fromRow = (row: CertificateRow): CertificateRecord => ({
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
});

/** Cursors are opaque to clients: the row's insertion order, so pages neither skip nor repeat while rows are added. */
const encodeCursor = (rowid: number): string => Buffer.from(`c:${rowid}`).toString("base64url");

export function decodeCertificateCursor(cursor: string): number | undefined {
  const match = /^c:(\d{1,15})$/.exec(Buffer.from(cursor, "base64url").toString("utf8"));
  return match ? Number(match[1]) : undefined;
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
      refundToken: db.prepare("UPDATE enrollment_tokens SET uses_left = uses_left + 1 WHERE token_hash = ?"),
      reserve: db.prepare(
        `INSERT INTO certificates (serial, authority_id, state, spiffe_id, dns_names, not_before, not_after, key_type, requester, tbs_der, prepared_at)
         VALUES (?, ?, 'prepared', ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      complete: db.prepare(
        "UPDATE certificates SET state = 'issued', der = ?, fingerprint_sha256 = ?, issued_at = ? WHERE serial = ? AND state = 'prepared'",
      ),
      fail: db.prepare("UPDATE certificates SET state = 'failed' WHERE serial = ? AND state = 'prepared'"),
      get: db.prepare("SELECT rowid, * FROM certificates WHERE serial = ? AND state = 'issued'"),
    };
  }

  prepare(items: readonly PreparedIssuance[], now: Date): Promise<ReservationResult[]> {
    return this.committer.submit(() =>
      items.map((item): ReservationResult => {
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
        );
        this.audit.append(item.audit, now);
        return { ok: true };
      }),
    );
  }

  complete(items: readonly CompletedIssuance[], now: Date): Promise<void> {
    return this.committer.submit(() => {
      for (const item of items) {
        const updated = this.statements.complete.run(item.der, item.fingerprintSha256, now.getTime(), item.serial);
        if (updated.changes !== 1) throw new Error(`certificate ${item.serial} is not reserved`);
        this.audit.append(item.audit, now);
      }
    });
  }

  abandon(items: readonly AbandonedIssuance[], now: Date): Promise<void> {
    return this.committer.submit(() => {
      for (const item of items) {
        this.statements.fail.run(item.serial);
        if (item.refundTokenHash) this.statements.refundToken.run(item.refundTokenHash);
        this.audit.append(item.audit, now);
      }
    });
  }

  get(serial: string): CertificateRecord | undefined {
    const row = this.statements.get.get(serial) as CertificateRow | undefined;
    return row && fromRow(row);
  }

  list(filter: CertificateFilter, first: number, after: string | undefined, now: Date): Page<CertificateRecord> {
    const conditions = ["state = 'issued'"];
    const parameters: unknown[] = [];
    if (filter.spiffeId !== undefined) {
      conditions.push("spiffe_id = ?");
      parameters.push(filter.spiffeId);
    }
    if (filter.spiffeIdPrefix !== undefined) {
      // Range instead of LIKE: uses the index and treats % and _ in the prefix literally.
      conditions.push("spiffe_id >= ? AND spiffe_id < ?");
      parameters.push(filter.spiffeIdPrefix, `${filter.spiffeIdPrefix}\u{10FFFF}`);
    }
    if (filter.dnsName !== undefined) {
      conditions.push("EXISTS (SELECT 1 FROM json_each(dns_names) WHERE value = ?)");
      parameters.push(filter.dnsName);
    }
    if (filter.authorityId !== undefined) {
      conditions.push("authority_id = ?");
      parameters.push(filter.authorityId);
    }
    if (filter.requester !== undefined) {
      conditions.push("requester = ?");
      parameters.push(filter.requester);
    }
    if (filter.status === "REVOKED") conditions.push("revoked_at IS NOT NULL");
    if (filter.status === "VALID" || filter.status === "EXPIRED") {
      conditions.push(`revoked_at IS NULL AND not_after ${filter.status === "VALID" ? ">" : "<="} ?`);
      parameters.push(now.getTime());
    }
    const where = conditions.join(" AND ");
    const totalCount = Number(
      this.db.prepare(`SELECT count(*) FROM certificates WHERE ${where}`).pluck().get(...parameters),
    );
    const afterRowid = after === undefined ? 0 : decodeCertificateCursor(after);
    if (afterRowid === undefined) throw new BadUserInputError("the cursor is not one this service returned");
    const rows = this.db
      .prepare(`SELECT rowid, * FROM certificates WHERE ${where} AND rowid > ? ORDER BY rowid LIMIT ?`)
      .all(...parameters, afterRowid, first + 1) as CertificateRow[];
    const page = rows.slice(0, first);
    return {
      items: page.map(fromRow),
      cursors: page.map((row) => encodeCursor(row.rowid)),
      totalCount,
      hasNextPage: rows.length > first,
    };
  }
}

