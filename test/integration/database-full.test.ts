/**
 * A full disk under the issuance ledger, on a real SQLite file: `PRAGMA max_page_count` caps the file at its
 * current size, so SQLite itself reports SQLITE_FULL the moment a write needs a new page — the same error a
 * full file system gives it. A reservation then fails with the retryable UNAVAILABLE and leaves nothing
 * behind (no row, no audit event, the token use kept), the readiness probe says not writable, and both
 * recover once there is room again, on the same connection.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PreparedIssuance } from "../../src/ca/ports.js";
import { UnavailableError } from "../../src/common/errors.js";
import { SqliteAuditEventRepository } from "../../src/store/audit-event-repository.js";
import { SqliteCertificateStore } from "../../src/store/certificate-store.js";
import type { SqliteDatabase } from "../../src/store/database.js";
import { SqliteEnrollmentTokenRepository } from "../../src/store/policy-repositories.js";
import { insertToken, openScratchStore, preparedIssuance, type ScratchStore } from "../support/scratch-store.js";

const NOW = new Date(Date.UTC(2026, 10, 22, 12));

describe("the issuance ledger on a full disk", () => {
  let scratch: ScratchStore;
  let db: SqliteDatabase;
  let tokenHash: Buffer;
  let store: SqliteCertificateStore;

  const count = (table: string): number => Number(db.prepare(`SELECT count(*) FROM ${table}`).pluck().get());
  const usesLeft = (): number => Number(db.prepare("SELECT uses_left FROM enrollment_tokens WHERE token_hash = ?").pluck().get(tokenHash));

  /** A reservation whose TBS spans many pages, so that storing it needs room the file does not have. */
  const reservation = (): PreparedIssuance =>
    preparedIssuance(NOW, { tbsDer: randomBytes(64 * 1024), consumeTokenHash: tokenHash, requester: "token:full" });

  beforeAll(() => {
    scratch = openScratchStore("anchorage-full-", NOW);
    db = scratch.db;
    tokenHash = insertToken(new SqliteEnrollmentTokenRepository(db), NOW, 2).hash;
    store = new SqliteCertificateStore(db, new SqliteAuditEventRepository(db));
  });

  afterAll(() => scratch.close());

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
