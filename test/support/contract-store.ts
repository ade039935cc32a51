/**
 * Plain SQL on either storage engine for the store contract suite: rows that another repository would write
 * (issued certificates, for the log and for authority expiry), statements the repositories never run (an
 * UPDATE of an append-only table), and a second handle on the same store, as a second node would have.
 */
import { createHash, randomBytes } from "node:crypto";
import type { CertificateOrigin, CertificateProfile } from "../../src/ca/model.js";
import { openDatabase, type SqliteDatabase } from "../../src/store/database.js";
import { PostgresDatabase } from "../../src/store/postgres/database.js";
import type { StoreEngine } from "./store-engines.js";

/** The handle of a store on either engine. */
export type EngineHandle = SqliteDatabase | PostgresDatabase;

/** Runs `sql`, written with `?` placeholders, and returns its rows (none for a statement without RETURNING). */
export async function runSql(db: EngineHandle, sql: string, parameters: readonly unknown[] = []): Promise<Record<string, unknown>[]> {
  if (db instanceof PostgresDatabase) {
    let position = 0;
    const { rows } = await db.query(
      sql.replace(/\?/g, () => `$${++position}`),
      parameters,
    );
    return rows;
  }
  const statement = db.prepare(sql);
  if (statement.reader) return statement.all(...parameters) as Record<string, unknown>[];
  statement.run(...parameters);
  return [];
}

/** A second, independent handle on the engine's store (its own connections), closed by the caller. */
export async function openSecondHandle(engine: StoreEngine): Promise<EngineHandle> {
  return engine.kind === "postgres" ? PostgresDatabase.open(engine.url) : openDatabase(engine.db.name);
}

export async function closeHandle(db: EngineHandle): Promise<void> {
  if (db instanceof PostgresDatabase) await db.close();
  else if (db.open) db.close();
}

export interface IssuedCertificateRow {
  readonly serial: string;
  readonly authorityId: string;
  readonly issuedSeq: number;
  readonly spiffeId: string;
  readonly dnsNames: readonly string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly issuedAt: Date;
  readonly der: Buffer;
  readonly state?: "issued" | "failed" | "prepared";
  readonly profile?: CertificateProfile;
  readonly origin?: CertificateOrigin;
}

const HOUR_MS = 3_600_000;

/** An issued one-hour workload certificate row with random DER, overridable field by field. */
export function issuedCertificate(issuedSeq: number, authorityId: string, now: Date, overrides: Partial<IssuedCertificateRow> = {}): IssuedCertificateRow {
  return {
    serial: randomBytes(16).toString("hex"),
    authorityId,
    issuedSeq,
    spiffeId: `spiffe://anchorage.test/ns/default/sa/app-${issuedSeq}`,
    dnsNames: [`app-${issuedSeq}.default.svc`],
    notBefore: now,
    notAfter: new Date(now.getTime() + HOUR_MS),
    issuedAt: now,
    der: randomBytes(200),
    ...overrides,
  };
}

/** Inserts a certificate row as the ledger leaves an issued one (the ledger itself is not under test here). */
export async function insertCertificate(db: EngineHandle, row: IssuedCertificateRow): Promise<void> {
  const state = row.state ?? "issued";
  const issued = state === "issued";
  await runSql(
    db,
    `INSERT INTO certificates (serial, authority_id, state, spiffe_id, dns_names, not_before, not_after, key_type, requester, tbs_der, der,
                               fingerprint_sha256, prepared_at, issued_at, issued_seq, origin, profile)
     VALUES (?, ?, ?, ?, ?, ?, ?, 'P-256', 'token:t', ?, ?, ?, ?, ?, ?, ?, ?)`,
    [
      row.serial,
      row.authorityId,
      state,
      row.spiffeId,
      JSON.stringify(row.dnsNames),
      row.notBefore.getTime(),
      row.notAfter.getTime(),
      randomBytes(50),
      issued ? row.der : null,
      issued ? createHash("sha256").update(row.der).digest("hex") : null,
      row.issuedAt.getTime(),
      issued ? row.issuedAt.getTime() : null,
      issued ? row.issuedSeq : null,
      row.origin ? JSON.stringify(row.origin) : null,
      row.profile ?? "workload",
    ],
  );
}
