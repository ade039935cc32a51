/**
 * The transparency log repository, the same tests on every storage engine: sequencing appends issued
 * certificates (in issue order) and then audit events as leaves exactly once, in bounded rounds, also when
 * two nodes sequence at once; the stored subtree hashes give roots and proofs that verify against the leaf
 * data rebuilt from the rows; the first checkpoint of a size stands. And both engines build byte-identical
 * leaves, hashes and roots from the same rows.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditEvent } from "../../src/audit/audit-log.js";
import { consistencyProof, inclusionProof, leafHash, rootFromLeafHashes, treeRoot, verifyConsistency, verifyInclusion, type SubtreeHashes } from "../../src/audit/merkle.js";
import { withStoredHashes, type StoredCheckpoint } from "../../src/audit/transparency-log.js";
import { SqliteAuditEventRepository } from "../../src/store/audit-event-repository.js";
import { SqliteAuthorityRepository } from "../../src/store/authority-repository.js";
import { PostgresAuditEventRepository } from "../../src/store/postgres/audit-event-repository.js";
import { PostgresAuthorityRepository } from "../../src/store/postgres/authority-repository.js";
import { PostgresDatabase } from "../../src/store/postgres/database.js";
import { PostgresTransparencyLogRepository } from "../../src/store/postgres/transparency-log-repository.js";
import { SqliteTransparencyLogRepository } from "../../src/store/transparency-log-repository.js";
import { closeHandle, insertCertificate, issuedCertificate, openSecondHandle, runSql, type EngineHandle, type IssuedCertificateRow } from "../support/contract-store.js";
import { placeholderAuthority, SCRATCH_AUTHORITY_ID } from "../support/scratch-store.js";
import { STORE_ENGINES, type StoreEngine, type StoreEngineFactory } from "../support/store-engines.js";

const NOW = new Date("2026-03-01T12:00:00.000Z");
const later = (seconds: number): Date => new Date(NOW.getTime() + seconds * 1000);

type Log = SqliteTransparencyLogRepository | PostgresTransparencyLogRepository;
type AuditEvents = SqliteAuditEventRepository | PostgresAuditEventRepository;

function repositoriesOf(db: EngineHandle): { log: Log; audit: AuditEvents } {
  return db instanceof PostgresDatabase
    ? { log: new PostgresTransparencyLogRepository(db), audit: new PostgresAuditEventRepository(db) }
    : { log: new SqliteTransparencyLogRepository(db), audit: new SqliteAuditEventRepository(db) };
}

/** Runs a Merkle computation on the log's stored hashes, fetched as the transparency log fetches them. */
function withHashes<T>(log: Log, compute: (hashes: SubtreeHashes) => T): Promise<T> {
  return withStoredHashes(log, compute);
}

async function allEntries(log: Log, start: number, end: number): Promise<{ leafIndex: number; entry: Buffer | undefined }[]> {
  const entries: { leafIndex: number; entry: Buffer | undefined }[] = [];
  for await (const entry of log.entries(start, end)) entries.push(entry);
  return entries;
}

/** Sequences in rounds of `limit` until a round comes back short, as the log's timer does. */
async function sequenceAll(log: Log, limit: number): Promise<number> {
  let appended = 0;
  for (;;) {
    const round = await log.sequence(limit);
    appended += round.appended;
    if (round.appended < limit) return appended;
  }
}

async function openWithAuthorities(factory: StoreEngineFactory): Promise<StoreEngine> {
  const engine = await factory.open();
  const authorities = engine.db instanceof PostgresDatabase ? new PostgresAuthorityRepository(engine.db) : new SqliteAuthorityRepository(engine.db);
  await authorities.insert(placeholderAuthority("root", "root", "active", NOW));
  await authorities.insert(placeholderAuthority(SCRATCH_AUTHORITY_ID, "intermediate", "active", NOW));
  return engine;
}

/** Certificates whose leaves exercise every optional part of a log entry. */
function variedCertificates(firstSeq: number): IssuedCertificateRow[] {
  return [
    issuedCertificate(firstSeq, SCRATCH_AUTHORITY_ID, NOW, { dnsNames: ["web.default.svc", "wéb.example.test", "a.example.test"] }),
    issuedCertificate(firstSeq + 1, SCRATCH_AUTHORITY_ID, later(1), {
      dnsNames: [],
      origin: { kind: "jwt", issuer: "https://issuer.example.test", subject: "system:serviceaccount:default:api", registrationId: "r-1", maxTtlSeconds: 3600 },
    }),
    issuedCertificate(firstSeq + 2, SCRATCH_AUTHORITY_ID, later(2), { spiffeId: "", dnsNames: [], profile: "ocsp-responder" }),
  ];
}

const VARIED_EVENTS: readonly AuditEvent[] = [
  { type: "token.created", actor: "apikey:admin", outcome: "success", subject: "token-1", details: { uses: 3, note: "ünïcödé \"quoted\" \u2028" } },
  { type: "authentication.failed", actor: "anonymous", outcome: "failure", code: "UNAUTHENTICATED", remoteAddress: "2001:db8::1" },
];

for (const factory of STORE_ENGINES) {
  describe.skipIf(!factory.available)(`transparency log repository on ${factory.kind}`, () => {
    let engine: StoreEngine;
    let other: EngineHandle;
    let log: Log;
    let audit: AuditEvents;
    let otherLog: Log;
    const certificates = variedCertificates(1);

    /** The tree's leaf hashes recomputed from the leaf data the log serves, and the root they make. */
    const recomputedRoot = async (size: number): Promise<Buffer> =>
      rootFromLeafHashes((await allEntries(log, 0, size)).map(({ entry }) => leafHash(entry as Buffer)));

    beforeAll(async () => {
      engine = await openWithAuthorities(factory);
      other = await openSecondHandle(engine);
      ({ log, audit } = repositoriesOf(engine.db));
      otherLog = repositoriesOf(other).log;
    });

    afterAll(async () => {
      if (other) await closeHandle(other);
      await engine?.close();
    });

    it("starts empty", async () => {
      expect(await log.treeSize()).toBe(0);
      expect(await log.sequence(10)).toEqual({ appended: 0, treeSize: 0 });
      expect(await log.latestCheckpoint()).toBeUndefined();
      expect(await log.entry(0)).toBeUndefined();
    });

    it("appends issued certificates in issue order, then audit events in sequence order, each once", async () => {
      // Inserted out of issue order: the log follows issued_seq, not insertion.
      for (const certificate of [...certificates].reverse()) await insertCertificate(engine.db, certificate);
      await insertCertificate(engine.db, issuedCertificate(0, SCRATCH_AUTHORITY_ID, NOW, { state: "prepared" }));
      for (const [i, event] of VARIED_EVENTS.entries()) await audit.append(event, later(10 + i));

      expect(await log.sequence(100)).toEqual({ appended: 5, treeSize: 5 });
      expect(await log.sequence(100)).toEqual({ appended: 0, treeSize: 5 });
      expect(await log.treeSize()).toBe(5);

      const entries = (await allEntries(log, 0, 5)).map(({ entry }) => JSON.parse((entry as Buffer).toString("utf8")) as Record<string, unknown>);
      expect(entries.map((entry) => [entry.kind, entry.kind === "certificate" ? entry.seq : entry.sequence])).toEqual([
        ["certificate", 1],
        ["certificate", 2],
        ["certificate", 3],
        ["audit", 1],
        ["audit", 2],
      ]);
      expect(entries[0]).toMatchObject({ serial: certificates[0]?.serial, dnsNames: ["web.default.svc", "wéb.example.test", "a.example.test"], issuedAt: NOW.toISOString() });
      expect(entries[1]?.origin).toEqual(certificates[1]?.origin);
      expect(entries[2]?.profile).toBe("ocsp-responder");
      expect(entries[3]?.details).toBe(JSON.stringify(VARIED_EVENTS[0]?.details));
      for (const [index, certificate] of certificates.entries()) expect(await log.leafIndexOfCertificate(certificate.serial)).toBe(index);
      expect(await log.leafIndexOfCertificate("00ff")).toBeUndefined();
      expect(await log.entry(3)).toEqual((await allEntries(log, 3, 4))[0]?.entry);
    });

    it("appends at most the round's limit, certificates first, and carries on where the last round stopped", async () => {
      await insertCertificate(engine.db, issuedCertificate(4, SCRATCH_AUTHORITY_ID, later(20)));
      await audit.append({ type: "token.revoked", actor: "apikey:admin", outcome: "success", subject: "token-1" }, later(21));
      await insertCertificate(engine.db, issuedCertificate(5, SCRATCH_AUTHORITY_ID, later(22)));
      expect(await log.sequence(2)).toEqual({ appended: 2, treeSize: 7 });
      expect(await log.sequence(2)).toEqual({ appended: 1, treeSize: 8 });
      const kinds = (await allEntries(log, 5, 8)).map(({ entry }) => (JSON.parse((entry as Buffer).toString("utf8")) as { kind: string }).kind);
      expect(kinds).toEqual(["certificate", "certificate", "audit"]);
    });

    it("stores the subtree hashes of the leaves: the root and every proof agree with the leaf data served", async () => {
      const size = await log.treeSize();
      const root = await withHashes(log, (hashes) => treeRoot(hashes, size));
      expect(root).toEqual(await recomputedRoot(size));
      const entries = await allEntries(log, 0, size);
      for (const { leafIndex, entry } of entries) {
        const proof = await withHashes(log, (hashes) => inclusionProof(hashes, leafIndex, size));
        expect(verifyInclusion(leafHash(entry as Buffer), leafIndex, size, proof, root)).toBe(true);
      }
      for (let oldSize = 1; oldSize < size; oldSize++) {
        const oldRoot = await withHashes(log, (hashes) => treeRoot(hashes, oldSize));
        const proof = await withHashes(log, (hashes) => consistencyProof(hashes, oldSize, size));
        expect(verifyConsistency(oldSize, size, oldRoot, root, proof)).toBe(true);
      }
    });

    it("serves no leaf data past the tree, and undefined for a leaf whose row is gone", async () => {
      const size = await log.treeSize();
      expect(await allEntries(log, size, size + 10)).toEqual([]);
      expect(await log.entry(size)).toBeUndefined();
      // A certificate row removed behind the log's back (the log itself refuses such edits to its leaves).
      const serial = certificates[2]?.serial as string;
      await runSql(engine.db, "UPDATE certificates SET issued_seq = NULL WHERE serial = ?", [serial]);
      expect(await log.entry(2)).toBeUndefined();
      expect((await allEntries(log, 2, 3))[0]).toEqual({ leafIndex: 2, entry: undefined });
      await runSql(engine.db, "UPDATE certificates SET issued_seq = 3 WHERE serial = ?", [serial]);
      expect(await log.entry(2)).toBeDefined();
    });

    it("keeps the first checkpoint of a size, and finds the latest and any by size", async () => {
      const first: StoredCheckpoint = { treeSize: 5, rootHash: Buffer.alloc(32, 1), note: "checkpoint five\n", createdAt: later(30) };
      await log.saveCheckpoint(first);
      await otherLog.saveCheckpoint({ ...first, note: "another node signed five too\n", createdAt: later(31) });
      const eight: StoredCheckpoint = { treeSize: 8, rootHash: Buffer.alloc(32, 2), note: "checkpoint eight\n", createdAt: later(32) };
      await log.saveCheckpoint(eight);
      expect(await log.checkpointAt(5)).toEqual(first);
      expect(await log.latestCheckpoint()).toEqual(eight);
      expect(await otherLog.latestCheckpoint()).toEqual(eight);
      expect(await log.checkpointAt(6)).toBeUndefined();
    });

    it("appends every row exactly once when two nodes sequence at the same time", async () => {
      const before = await log.treeSize();
      for (let seq = 6; seq < 46; seq++) await insertCertificate(engine.db, issuedCertificate(seq, SCRATCH_AUTHORITY_ID, later(seq)));
      for (let i = 0; i < 40; i++) await audit.append({ type: "token.created", actor: "apikey:admin", outcome: "success", subject: `t-${i}` }, later(100 + i));

      const appended = await Promise.all([sequenceAll(log, 7), sequenceAll(otherLog, 7)]);
      expect(appended[0] + appended[1]).toBe(80);
      expect(await log.treeSize()).toBe(before + 80);
      const leaves = await runSql(engine.db, "SELECT kind, ref FROM log_leaves ORDER BY leaf_index");
      const keys = leaves.map((leaf) => `${String(leaf.kind)}:${Number(leaf.ref)}`);
      expect(new Set(keys).size).toBe(keys.length);
      const certificateRefs = leaves.filter((leaf) => leaf.kind === "certificate").map((leaf) => Number(leaf.ref));
      expect(certificateRefs).toEqual(Array.from({ length: 45 }, (_, i) => i + 1));
      const auditRefs = leaves.filter((leaf) => leaf.kind === "audit").map((leaf) => Number(leaf.ref));
      expect(auditRefs).toEqual(Array.from({ length: 43 }, (_, i) => i + 1));
      // Hashes written by either node combine into the tree the leaf data makes.
      const size = before + 80;
      expect(await withHashes(otherLog, (hashes) => treeRoot(hashes, size))).toEqual(await recomputedRoot(size));
    });
  });
}

const postgres = STORE_ENGINES.find((factory) => factory.kind === "postgres") as StoreEngineFactory;
const sqlite = STORE_ENGINES.find((factory) => factory.kind === "sqlite") as StoreEngineFactory;

describe.skipIf(!postgres.available)("transparency log leaves on SQLite and PostgreSQL", () => {
  const engines: StoreEngine[] = [];

  beforeAll(async () => {
    engines.push(await openWithAuthorities(sqlite), await openWithAuthorities(postgres));
  });

  afterAll(async () => {
    for (const engine of engines) await engine.close();
  });

  it("are byte-identical for the same rows, and so are the stored hashes and roots", async () => {
    const certificates = variedCertificates(1);
    const logs: Log[] = [];
    for (const engine of engines) {
      const { log, audit } = repositoriesOf(engine.db);
      for (const certificate of certificates) await insertCertificate(engine.db, certificate);
      for (const [i, event] of VARIED_EVENTS.entries()) await audit.append(event, later(10 + i));
      expect(await log.sequence(100)).toEqual({ appended: 5, treeSize: 5 });
      logs.push(log);
    }
    const [onSqlite, onPostgres] = logs as [Log, Log];
    expect(await allEntries(onPostgres, 0, 5)).toEqual(await allEntries(onSqlite, 0, 5));
    for (let index = 0; index < 5; index++) expect(await onPostgres.entry(index)).toEqual(await onSqlite.entry(index));
    for (let size = 1; size <= 5; size++) {
      expect(await withHashes(onPostgres, (hashes) => treeRoot(hashes, size))).toEqual(await withHashes(onSqlite, (hashes) => treeRoot(hashes, size)));
    }
    const storedHashes = async (engine: StoreEngine): Promise<string[]> => [
      ...(await runSql(engine.db, "SELECT leaf_index, leaf_hash FROM log_leaves ORDER BY leaf_index")).map((row) => `0/${Number(row.leaf_index)}/${(row.leaf_hash as Buffer).toString("hex")}`),
      ...(await runSql(engine.db, "SELECT level, node_index, hash FROM log_nodes ORDER BY level, node_index")).map(
        (row) => `${Number(row.level)}/${Number(row.node_index)}/${(row.hash as Buffer).toString("hex")}`,
      ),
    ];
    expect(await storedHashes(engines[1] as StoreEngine)).toEqual(await storedHashes(engines[0] as StoreEngine));
  });
});
