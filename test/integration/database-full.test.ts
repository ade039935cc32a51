/**
 * A full disk under the issuance ledger, on a real SQLite file: `PRAGMA max_page_count` caps the file at its
 * current size, so SQLite itself reports SQLITE_FULL the moment a write needs a new page — the same error a
 * full file system gives it. A reservation then fails with the retryable UNAVAILABLE and leaves nothing
 * behind (no row, no audit event, the token use kept), the readiness probe says not writable, and both
 * recover once there is room again, on the same connection.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PreparedIssuance } from "../../src/ca/ports.js";
import { UnavailableError } from "../../src/common/errors.js";
import { SqliteAuditEventRepository } from "../../src/store/audit-event-repository.js";
import { SqliteAuthorityRepository } from "../../src/store/authority-repository.js";
import { SqliteCertificateStore } from "../../src/store/certificate-store.js";
import { openDatabase, type SqliteDatabase } from "../../src/store/database.js";

const NOW = new Date(Date.UTC(2026, 10, 22, 12));
const HOUR = 3_600_000;
const TOKEN_HASH = randomBytes(32);

describe("the issuance ledger on a full disk", () => {
  let dir: string;
  let db: SqliteDatabase;
  let store: SqliteCertificateStore;

  const count = (table: string): number => Number(db.prepare(`SELECT count(*) FROM ${table}`).pluck().get());
  const usesLeft = (): number => Number(db.prepare("SELECT uses_left FROM enrollment_tokens WHERE token_hash = ?").pluck().get(TOKEN_HASH));

  /** A reservation whose TBS spans many pages, so that storing it needs room the file does not have. */
  const reservation = (): PreparedIssuance => ({
    serial: randomBytes(16).toString("hex"),
    authorityId: "intermediate",
    spiffeId: "spiffe://anchorage.test/full",
    dnsNames: [],
    notBefore: NOW,
    notAfter: new Date(NOW.getTime() + HOUR),
    keyType: "P-256",
    requester: "token:full",
    tbsDer: randomBytes(64 * 1024),
    consumeTokenHash: TOKEN_HASH,
    audit: { type: "issuance.prepared", actor: "token:full", outcome: "success" },
  });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "anchorage-full-"));
    db = openDatabase(join(dir, "anchorage.db"));
    new SqliteAuthorityRepository(db).insert({
      id: "intermediate",
      kind: "intermediate",
      status: "active",
      subject: "CN=intermediate",
      certificateDer: Buffer.from([0x30, 0x00]),
      keyLabel: "intermediate",
      parentId: null,
      notBefore: new Date(NOW.getTime() - 24 * HOUR),
      notAfter: new Date(NOW.getTime() + 365 * 24 * HOUR),
      createdAt: NOW,
    });
    db.prepare(
      `INSERT INTO enrollment_tokens (id, token_hash, spiffe_id, dns_names, max_ttl_seconds, expires_at, uses_left, created_by, created_at)
       VALUES ('tok_full', ?, 'spiffe://anchorage.test/full', '[]', 3600, ?, 2, 'apikey:test', ?)`,
    ).run(TOKEN_HASH, NOW.getTime() + HOUR, NOW.getTime());
    store = new SqliteCertificateStore(db, new SqliteAuditEventRepository(db));
  });

  afterAll(() => {
    db?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("refuses a reservation with the retryable UNAVAILABLE and leaves nothing behind", async () => {
    const rows = count("certificates");
    const events = count("audit_events");
    db.pragma(`max_page_count = ${Number(db.pragma("page_count", { simple: true }))}`);

    const refused = await store.prepare([reservation()], NOW).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(UnavailableError);
    expect((refused as UnavailableError).code).toBe("UNAVAILABLE");
    expect((refused as UnavailableError).message).toMatch(/retry/);
    expect(count("certificates")).toBe(rows);
    expect(count("audit_events")).toBe(events);
    expect(usesLeft()).toBe(2);
  });

  it("reports the database not writable while the disk stays full", async () => {
    await expect(store.probeWritable()).rejects.toBeInstanceOf(UnavailableError);
    await expect(store.probeWritable()).rejects.toBeInstanceOf(UnavailableError);
  });

  it("recovers on the same connection once there is room again", async () => {
    db.pragma("max_page_count = 1073741823");
    await expect(store.probeWritable()).resolves.toBeUndefined();
    const results = await store.prepare([reservation()], NOW);
    expect(results).toEqual([{ ok: true }]);
    expect(usesLeft()).toBe(1);
  });
});
