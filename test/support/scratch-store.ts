/**
 * Store-level tests on a real SQLite file: a migrated database in a scratch folder with a placeholder root
 * and intermediate for certificate rows to reference, and the reservations and tokens those tests vary.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AuditEvent } from "../../src/audit/audit-log.js";
import type { AuthorityRecord } from "../../src/ca/model.js";
import type { PreparedIssuance } from "../../src/ca/ports.js";
import { SqliteAuthorityRepository } from "../../src/store/authority-repository.js";
import { openDatabase, type SqliteDatabase } from "../../src/store/database.js";
import type { SqliteEnrollmentTokenRepository } from "../../src/store/policy-repositories.js";

/** The placeholder intermediate every scratch certificate row names. */
export const SCRATCH_AUTHORITY_ID = "ca";

const HOUR_MS = 3_600_000;

/**
 * An authority row for store-level tests, valid from a day before `now` for a year, with a placeholder
 * certificate: intermediates name the root `root` as their parent and carry a key label equal to their id.
 */
export function placeholderAuthority(id: string, kind: AuthorityRecord["kind"], status: AuthorityRecord["status"], now: Date): AuthorityRecord {
  return {
    id,
    kind,
    status,
    subject: `CN=${id}`,
    certificateDer: Buffer.from([0x30, 0x00]),
    keyLabel: kind === "root" ? null : id,
    parentId: kind === "root" ? null : "root",
    notBefore: new Date(now.getTime() - 24 * HOUR_MS),
    notAfter: new Date(now.getTime() + 365 * 24 * HOUR_MS),
    createdAt: now,
  };
}

export interface ScratchStore {
  readonly dir: string;
  readonly db: SqliteDatabase;
  /** Closes the database and removes the folder. */
  close(): void;
}

export function openScratchStore(prefix: string, now: Date): ScratchStore {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const db = openDatabase(join(dir, "anchorage.db"));
  const authorities = new SqliteAuthorityRepository(db);
  authorities.insert(placeholderAuthority("root", "root", "active", now));
  authorities.insert(placeholderAuthority(SCRATCH_AUTHORITY_ID, "intermediate", "active", now));
  return {
    dir,
    db,
    close: () => {
      if (db.open) db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const RESERVATION_AUDIT: AuditEvent = { type: "issuance.prepared", actor: "token:t", outcome: "success" };

/** A one-hour workload certificate under the placeholder intermediate, with a fresh serial. */
export function preparedIssuance(now: Date, overrides: Partial<PreparedIssuance> = {}): PreparedIssuance {
  return {
    serial: randomBytes(16).toString("hex"),
    authorityId: SCRATCH_AUTHORITY_ID,
    spiffeId: "spiffe://anchorage.test/web",
    dnsNames: [],
    notBefore: now,
    notAfter: new Date(now.getTime() + HOUR_MS),
    keyType: "P-256",
    requester: "token:t",
    tbsDer: randomBytes(100),
    audit: RESERVATION_AUDIT,
    ...overrides,
  };
}

/** An enrollment token for the scratch identity with `uses` uses, valid for a minute unless told otherwise. */
export function insertToken(
  tokens: SqliteEnrollmentTokenRepository,
  now: Date,
  uses: number,
  expiresAt = new Date(now.getTime() + 60_000),
): { id: string; hash: Buffer } {
  const hash = randomBytes(32);
  const id = `tok_${hash.toString("hex", 0, 6)}`;
  tokens.insert({
    id,
    tokenHash: hash,
    spiffeId: "spiffe://anchorage.test/web",
    dnsNames: [],
    maxTtlSeconds: 3600,
    expiresAt,
    usesLeft: uses,
    createdBy: "apikey:admin",
    createdAt: now,
  });
  return { id, hash };
}
