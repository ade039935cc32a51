import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PreparedIssuance } from "../../src/ca/ports.js";
import { SqliteAuditEventRepository } from "../../src/store/audit-event-repository.js";
import { SqliteCertificateStore } from "../../src/store/certificate-store.js";
import { DEFAULT_BUSY_TIMEOUT_MS, openDatabase, type SqliteDatabase } from "../../src/store/database.js";
import { GroupCommitter } from "../../src/store/group-commit.js";
import { MIGRATIONS } from "../../src/store/migrations.js";
import { SqliteOcspRepository } from "../../src/store/ocsp-repository.js";
import { SqliteRevocationRepository } from "../../src/store/revocation-repository.js";
import { SqliteEnrollmentTokenRepository } from "../../src/store/policy-repositories.js";
import { RESERVATION_AUDIT as audit, insertToken, openScratchStore, preparedIssuance, type ScratchStore } from "../support/scratch-store.js";

const NOW = new Date(Date.UTC(2026, 10, 22, 12));

let scratch: ScratchStore;
let dir: string;
let db: SqliteDatabase;
let store: SqliteCertificateStore;
let tokens: SqliteEnrollmentTokenRepository;

// A larger TBS and a DNS name than the scratch default, so that stored rows carry both.
const prepared = (overrides: Partial<PreparedIssuance> = {}): PreparedIssuance =>
  preparedIssuance(NOW, { dnsNames: ["web.svc"], tbsDer: randomBytes(300), ...overrides });
const addToken = (uses: number, expiresAt?: Date): Buffer => insertToken(tokens, NOW, uses, expiresAt).hash;

const count = (sql: string, ...args: unknown[]): number => Number(db.prepare(sql).pluck().get(...args));

beforeAll(async () => {
  scratch = openScratchStore("anchorage-store-", NOW);
  dir = scratch.dir;
  db = scratch.db;
  store = new SqliteCertificateStore(db, new SqliteAuditEventRepository(db));
  tokens = new SqliteEnrollmentTokenRepository(db);
});

afterAll(() => scratch.close());

describe("SqliteCertificateStore on a real SQLite file", () => {
  it("opens in WAL mode with full durability and the schema migrated", async () => {
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(db.pragma("synchronous", { simple: true })).toBe(2);
    expect(count("SELECT max(version) FROM schema_migrations")).toBe(Math.max(...MIGRATIONS.map((migration) => migration.version)));
  });

  it("reserves, completes and then serves a certificate, with an audit event per step", async () => {
    const item = prepared();
    const before = count("SELECT count(*) FROM audit_events");
    expect(await store.prepare([item], NOW)).toEqual([{ ok: true }]);
    expect(await store.get(item.serial)).toBeUndefined(); // reserved is not issued
    await store.complete([{ serial: item.serial, der: Buffer.from("cert"), fingerprintSha256: "ab", audit: { ...audit, type: "issuance.signed" } }], NOW);
    const record = await store.get(item.serial);
    expect(record?.der.toString()).toBe("cert");
    expect(record?.dnsNames).toEqual(["web.svc"]);
    expect(count("SELECT count(*) FROM audit_events")).toBe(before + 2);
  });

  it("consumes a token's uses atomically and refuses the reservation once they are gone", async () => {
    const hash = addToken(2);
    const results = await Promise.all([1, 2, 3].map(() => store.prepare([prepared({ consumeTokenHash: hash })], NOW)));
    expect(results.flat().filter((result) => result.ok)).toHaveLength(2);
    expect(results.flat().filter((result) => !result.ok)).toEqual([{ ok: false, reason: "TOKEN_EXHAUSTED" }]);
    expect(count("SELECT uses_left FROM enrollment_tokens WHERE token_hash = ?", hash)).toBe(0);
  });

  it("refuses an expired token without writing a row", async () => {
    const hash = addToken(5, new Date(NOW.getTime() - 1));
    const rows = count("SELECT count(*) FROM certificates");
    expect(await store.prepare([prepared({ consumeTokenHash: hash })], NOW)).toEqual([{ ok: false, reason: "TOKEN_EXHAUSTED" }]);
    expect(count("SELECT count(*) FROM certificates")).toBe(rows);
  });

  it("abandons a reservation: state failed, token use given back, audited", async () => {
    const hash = addToken(1);
    const item = prepared({ consumeTokenHash: hash });
    await store.prepare([item], NOW);
    expect(count("SELECT uses_left FROM enrollment_tokens WHERE token_hash = ?", hash)).toBe(0);
    await store.abandon([{ serial: item.serial, refundTokenHash: hash, audit: { ...audit, type: "issuance.failed", outcome: "failure" } }], NOW);
    expect(db.prepare("SELECT state FROM certificates WHERE serial = ?").pluck().get(item.serial)).toBe("failed");
    expect(count("SELECT uses_left FROM enrollment_tokens WHERE token_hash = ?", hash)).toBe(1);
  });

  it("isolates a failing submission in a group commit: the others are committed, its writes are not", async () => {
    const good = prepared();
    const duplicate = prepared({ serial: good.serial });
    const other = prepared();
    const outcomes = await Promise.allSettled([store.prepare([good], NOW), store.prepare([duplicate], NOW), store.prepare([other], NOW)]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(count("SELECT count(*) FROM certificates WHERE serial IN (?, ?)", good.serial, other.serial)).toBe(2);
  });

  it("rolls back a whole submission when it fails halfway (token use not lost)", async () => {
    const hash = addToken(1);
    const existing = prepared();
    await store.prepare([existing], NOW);
    // The token update succeeds, then the insert hits the duplicate serial: both must be undone.
    await expect(store.prepare([prepared({ serial: existing.serial, consumeTokenHash: hash })], NOW)).rejects.toThrow();
    expect(count("SELECT uses_left FROM enrollment_tokens WHERE token_hash = ?", hash)).toBe(1);
  });

  it("refuses to complete a serial that was never reserved", async () => {
    await expect(
      store.complete([{ serial: "ff".repeat(16), der: Buffer.from("x"), fingerprintSha256: "00", audit }], NOW),
    ).rejects.toThrow(/not reserved/);
  });

  it("keeps audit events append-only in the database itself", async () => {
    expect(() => db.prepare("UPDATE audit_events SET actor = 'x'").run()).toThrow(/append-only/);
    expect(() => db.prepare("DELETE FROM audit_events").run()).toThrow(/append-only/);
  });

  it("pages issued certificates in commit order without repeats, and refuses a forged cursor", async () => {
    for (let index = 0; index < 5; index++) {
      const item = prepared({ spiffeId: "spiffe://anchorage.test/paged" });
      await store.prepare([item], NOW);
      await store.complete([{ serial: item.serial, der: Buffer.from("c"), fingerprintSha256: "00", audit }], NOW);
    }
    const filter = { spiffeId: "spiffe://anchorage.test/paged" };
    const first = await store.list(filter, 2, undefined, NOW);
    const second = await store.list(filter, 2, first.cursors.at(-1), NOW);
    const third = await store.list(filter, 2, second.cursors.at(-1), NOW);
    const serials = [...first.items, ...second.items, ...third.items].map((item) => item.serial);
    expect(new Set(serials).size).toBe(5);
    expect(first.countTotal()).toBe(5);
    expect([first.hasNextPage, second.hasNextPage, third.hasNextPage]).toEqual([true, true, false]);
    await expect(store.list(filter, 2, "bm90LWEtY3Vyc29y", NOW)).rejects.toThrow(/cursor/);
  });

  it("does not skip a certificate reserved before a page was read and signed after it", async () => {
    const spiffeId = "spiffe://anchorage.test/late";
    const early = prepared({ spiffeId });
    const late = prepared({ spiffeId });
    await store.prepare([early], NOW);
    await store.prepare([late], NOW);
    await store.complete([{ serial: late.serial, der: Buffer.from("c"), fingerprintSha256: "00", audit }], NOW);
    const first = await store.list({ spiffeId }, 10, undefined, NOW);
    expect(first.items.map((item) => item.serial)).toEqual([late.serial]);
    await store.complete([{ serial: early.serial, der: Buffer.from("c"), fingerprintSha256: "00", audit }], NOW);
    const next = await store.list({ spiffeId }, 10, first.cursors.at(-1), NOW);
    expect(next.items.map((item) => item.serial)).toEqual([early.serial]);
  });

  it("filters by DNS name, serial and time ranges through the indexed columns", async () => {
    const spiffeId = "spiffe://anchorage.test/filters";
    const later = new Date(NOW.getTime() + 3_600_000);
    const a = prepared({ spiffeId, dnsNames: ["a.filters.svc", "shared.filters.svc"] });
    const b = prepared({ spiffeId, dnsNames: ["b.filters.svc", "shared.filters.svc"], notAfter: new Date(later.getTime() + 7_200_000) });
    await store.prepare([a, b], NOW);
    await store.complete([{ serial: a.serial, der: Buffer.from("a"), fingerprintSha256: "00", audit }], NOW);
    await store.complete([{ serial: b.serial, der: Buffer.from("b"), fingerprintSha256: "00", audit }], later);
    const serials = async (filter: Parameters<typeof store.list>[0]) => (await store.list(filter, 10, undefined, NOW)).items.map((item) => item.serial);
    expect(await serials({ dnsName: "shared.filters.svc" })).toEqual([a.serial, b.serial]);
    expect(await serials({ dnsName: "b.filters.svc" })).toEqual([b.serial]);
    expect(await serials({ dnsName: "filters.svc" })).toEqual([]);
    expect(await serials({ serial: a.serial })).toEqual([a.serial]);
    expect(await serials({ spiffeId, issuedAfter: later })).toEqual([b.serial]);
    expect(await serials({ spiffeId, issuedBefore: later })).toEqual([a.serial]);
    expect(await serials({ spiffeId, expiresAfter: later })).toEqual([a.serial, b.serial]);
    expect(await serials({ spiffeId, expiresAfter: new Date(later.getTime() + 1) })).toEqual([b.serial]);
    expect(await serials({ spiffeId, expiresBefore: later })).toEqual([]);
    expect((await store.list({ dnsName: "shared.filters.svc" }, 1, undefined, NOW)).countTotal()).toBe(2);
    expect(count("SELECT count(*) FROM certificate_dns_names WHERE name = 'shared.filters.svc'")).toBe(2);
  });

  it("keeps the transparency log's leaves append-only in the database itself", async () => {
    db.prepare("INSERT INTO log_leaves (leaf_index, kind, ref, leaf_hash) VALUES (999999, 'audit', 999999, x'00')").run();
    expect(() => db.prepare("UPDATE log_leaves SET ref = 0").run()).toThrow(/append-only/);
    expect(() => db.prepare("DELETE FROM log_leaves").run()).toThrow(/append-only/);
  });
});

describe("GroupCommitter", () => {
  it("commits work submitted in the same turn together and resolves each with its own result", async () => {
    const committer = new GroupCommitter(db);
    const results = await Promise.all([1, 2, 3].map((value) => committer.submit(() => value * 2)));
    expect(results).toEqual([2, 4, 6]);
  });

  it("waits for another process's write lock without blocking the event loop, then commits with full durability restored", async () => {
    db.exec("CREATE TABLE IF NOT EXISTS group_commit_probe (value INTEGER)");
    const other = openDatabase(join(dir, "anchorage.db"));
    try {
      const committer = new GroupCommitter(db);
      other.exec("BEGIN IMMEDIATE");
      let settled = false;
      const first = committer.submit(() => db.prepare("INSERT INTO group_commit_probe (value) VALUES (1)").run().changes);
      void first.then(() => (settled = true));
      // SQLite's own busy handler would sleep here with the event loop blocked, and this timer could not fire.
      await new Promise((resolve) => setTimeout(resolve, 50));
      const second = committer.submit(() => db.prepare("INSERT INTO group_commit_probe (value) VALUES (2)").run().changes);
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(settled).toBe(false);
      other.exec("COMMIT");
      expect(await Promise.all([first, second])).toEqual([1, 1]);
      expect(other.prepare("SELECT value FROM group_commit_probe ORDER BY value").pluck().all()).toEqual([1, 2]);
      expect(db.pragma("synchronous", { simple: true })).toBe(2);
      expect(db.pragma("busy_timeout", { simple: true })).toBe(DEFAULT_BUSY_TIMEOUT_MS);
    } finally {
      if (other.inTransaction) other.exec("ROLLBACK");
      other.close();
    }
  });
});

describe("SqliteOcspRepository.externalChangeCounter", () => {
  it("changes after another connection commits, not after this connection's own writes", async () => {
    const other = openDatabase(join(dir, "anchorage.db"));
    try {
      const mine = new SqliteOcspRepository(db);
      const theirs = new SqliteOcspRepository(other);
      const response = {
        authorityId: "ca",
        serial: "0a",
        hashAlgorithm: "sha1" as const,
        der: Buffer.from("r1"),
        thisUpdate: NOW,
        nextUpdate: new Date(NOW.getTime() + 60_000),
      };
      const start = mine.externalChangeCounter();
      expect(await mine.saveResponse(response, "unknown")).toBe(true);
      expect(mine.externalChangeCounter()).toBe(start);
      await theirs.saveResponse({ ...response, der: Buffer.from("r2"), thisUpdate: new Date(NOW.getTime() + 1000) }, "unknown");
      expect(mine.externalChangeCounter()).not.toBe(start);
      expect((await mine.getResponse("ca", "0a", "sha1"))?.der.toString()).toBe("r2");
    } finally {
      other.close();
    }
  });
});

describe("SqliteOcspRepository.claimSignerCreation", () => {
  it("gives a responder certificate's creation to one process at a time, and takes back a claim gone stale", async () => {
    const otherDb = openDatabase(join(dir, "anchorage.db"));
    try {
      const other = new SqliteOcspRepository(otherDb);
      const mine = new SqliteOcspRepository(db);
      const staleBefore = (at: Date) => new Date(at.getTime() - 60_000);
      expect(await mine.claimSignerCreation("ca-claim", NOW, staleBefore(NOW))).toBe(true);
      expect(await other.claimSignerCreation("ca-claim", NOW, staleBefore(NOW))).toBe(false);
      expect(await other.claimSignerCreation("another-ca", NOW, staleBefore(NOW))).toBe(true);
      const later = new Date(NOW.getTime() + 61_000);
      expect(await other.claimSignerCreation("ca-claim", later, staleBefore(later))).toBe(true);
      expect(await mine.claimSignerCreation("ca-claim", later, staleBefore(later))).toBe(false);
    } finally {
      otherDb.close();
    }
  });
});

describe("SqliteOcspRepository.saveResponse", () => {
  it("refuses a response signed for a status that a revocation has since changed", async () => {
    const item = prepared();
    await store.prepare([item], NOW);
    await store.complete([{ serial: item.serial, der: Buffer.from("c"), fingerprintSha256: "00", audit }], NOW);
    const ocsp = new SqliteOcspRepository(db);
    const response = {
      authorityId: "ca",
      serial: item.serial,
      hashAlgorithm: "sha1" as const,
      der: Buffer.from("good"),
      thisUpdate: NOW,
      nextUpdate: new Date(NOW.getTime() + 60_000),
    };
    expect((await ocsp.status("ca", item.serial)).kind).toBe("good");
    new SqliteRevocationRepository(db, new SqliteAuditEventRepository(db)).revoke(item.serial, "KEY_COMPROMISE", NOW, {
      type: "certificate.revoked",
      actor: "apikey:admin",
      outcome: "success",
    });
    // Signed as "good" before the revocation landed: it must not be stored (same second, even).
    expect(await ocsp.saveResponse(response, "good")).toBe(false);
    expect(await ocsp.getResponse("ca", item.serial, "sha1")).toBeUndefined();
    expect(await ocsp.saveResponse({ ...response, der: Buffer.from("revoked") }, "revoked")).toBe(true);
    expect(await ocsp.saveResponses([{ response, signedStatus: "good" }])).toEqual([]);
    expect((await ocsp.getResponse("ca", item.serial, "sha1"))?.der.toString()).toBe("revoked");
  });
});

