/**
 * Automatic retirement of superseded intermediates, on a real SQLite file with a clock the test moves: an
 * intermediate leaves the trust bundle by itself only once every certificate it signed has expired and every
 * registered consumer has the bundle with its successor; one that never issued (waiting to be activated) stays.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditLog } from "../../src/audit/audit-log.js";
import { AuthorityService } from "../../src/ca/authority-service.js";
import { AuthorityWatcher } from "../../src/ca/authority-watcher.js";
import { CertificateOwnership } from "../../src/ca/certificate-ownership.js";
import { IssuerRegistry } from "../../src/ca/issuer-registry.js";
import type { AuthorityRecord } from "../../src/ca/model.js";
import { RotationService } from "../../src/ca/rotation-service.js";
import { FixedClock } from "../../src/common/clock.js";
import { silentLogger } from "../../src/common/logger.js";
import { SoftwareKeyStore } from "../../src/signer/software-key-store.js";
import { SqliteAuditEventRepository } from "../../src/store/audit-event-repository.js";
import { SqliteAuthorityRepository, SqliteTrustBundleConsumerRepository } from "../../src/store/authority-repository.js";
import { SqliteCertificateStore } from "../../src/store/certificate-store.js";
import { openDatabase, type SqliteDatabase } from "../../src/store/database.js";
import { MIGRATIONS } from "../../src/store/migrations.js";
import { placeholderAuthority } from "../support/scratch-store.js";

const T0 = new Date(Date.UTC(2026, 10, 22, 12));
const HOUR = 3_600_000;

describe("automatic retirement of superseded intermediates", () => {
  let dir: string;
  let db: SqliteDatabase;
  const clock = new FixedClock(T0);
  let authorities: SqliteAuthorityRepository;
  let consumers: SqliteTrustBundleConsumerRepository;
  let rotation: RotationService;

  const authority = (id: string, kind: AuthorityRecord["kind"], status: AuthorityRecord["status"]) => placeholderAuthority(id, kind, status, T0);

  async function issued(authorityId: string, notAfter: Date): Promise<void> {
    const audit = new SqliteAuditEventRepository(db);
    const store = new SqliteCertificateStore(db, audit);
    const serial = randomBytes(16).toString("hex");
    const event = { type: "issuance.prepared" as const, actor: "token:t", outcome: "success" as const };
    await store.prepare(
      [{ serial, authorityId, spiffeId: "spiffe://anchorage.test/x", dnsNames: [], notBefore: T0, notAfter, keyType: "P-256", requester: "token:t", tbsDer: Buffer.from("tbs"), audit: event }],
      T0,
    );
    await store.complete([{ serial, der: Buffer.from("der"), fingerprintSha256: "00", audit: event }], T0);
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "anchorage-retirement-"));
    db = openDatabase(join(dir, "anchorage.db"));
    authorities = new SqliteAuthorityRepository(db);
    consumers = new SqliteTrustBundleConsumerRepository(db);
    await authorities.insert(authority("root", "root", "active"));
    await authorities.insert(authority("old", "intermediate", "active"));
    await issued("old", new Date(T0.getTime() + HOUR));
    await issued("old", new Date(T0.getTime() + 2 * HOUR));
    await authorities.insert(authority("new", "intermediate", "published"));
    await authorities.activate("new");
    await authorities.insert(authority("next", "intermediate", "published"));
    const watcher = await AuthorityWatcher.open({ repository: authorities, logger: silentLogger, intervalMs: 60_000 });
    rotation = new RotationService({
      repository: authorities,
      consumers,
      authorities: new AuthorityService(authorities, "anchorage.test"),
      issuers: new IssuerRegistry({ keyStore: new SoftwareKeyStore(), publicBaseUrl: "http://127.0.0.1", logger: silentLogger }),
      watcher,
      audit: new AuditLog(new SqliteAuditEventRepository(db), clock, silentLogger),
      clock,
      logger: silentLogger,
      maxConsumers: 10,
      trustDomain: "anchorage.test",
      ownership: new CertificateOwnership({ certificates: new SqliteCertificateStore(db, new SqliteAuditEventRepository(db)), authorities }),
    });
  });

  afterAll(async () => {
    db?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const status = async (id: string) => (await authorities.get(id))?.status;

  it("keeps the old intermediate while a certificate it signed is valid", async () => {
    clock.set(new Date(T0.getTime() + 90 * 60_000));
    expect(await rotation.retireExpired()).toEqual([]);
    expect(await status("old")).toBe("published");
  });

  it("keeps it while a known consumer lacks the bundle with its successor, then retires it as system", async () => {
    const required = await authorities.firstBundleSequenceContaining("new") as number;
    await consumers.register({ consumerId: "mesh-a", spiffeId: null, registeredBy: "apikey:test" }, clock.now());
    clock.set(new Date(T0.getTime() + 3 * HOUR));
    // Registered and nothing acknowledged yet: it may still trust only the old intermediate.
    expect(await rotation.retireExpired()).toEqual([]);
    await consumers.acknowledge("mesh-a", required - 1, clock.now());
    expect(await rotation.retireExpired()).toEqual([]);
    expect(await status("old")).toBe("published");

    await consumers.acknowledge("mesh-a", required, clock.now());
    const before = await authorities.bundleSequence();
    expect(await rotation.retireExpired()).toEqual(["old"]);
    expect(await status("old")).toBe("retired");
    expect(await authorities.bundleSequence()).toBe(before + 1);
    const event = db.prepare("SELECT actor, details FROM audit_events WHERE type = 'authority.retired' AND subject = 'old'").get() as { actor: string; details: string };
    expect(event.actor).toBe("system");
    expect(JSON.parse(event.details)).toMatchObject({ forced: false, lastCertificateExpired: new Date(T0.getTime() + 2 * HOUR).toISOString() });
  });

  it("leaves alone the active intermediate and one that never issued", async () => {
    clock.set(new Date(T0.getTime() + 1000 * HOUR));
    expect(await rotation.retireExpired()).toEqual([]);
    expect(await status("new")).toBe("active");
    expect(await status("next")).toBe("published");
  });
});

describe("trust bundle consumers recorded before consumers were registered", () => {
  it("are kept by the migration with their version (so retirements still wait for them), and acknowledge again once an admin registers them", async () => {
    const dir = mkdtempSync(join(tmpdir(), "anchorage-legacy-consumers-"));
    try {
      const path = join(dir, "anchorage.db");
      const before = new Database(path);
      before.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)");
      for (const migration of MIGRATIONS.filter((candidate) => candidate.version <= 8)) {
        before.exec(migration.sql);
        before.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)").run(migration.version, T0.toISOString());
      }
      // What an acknowledgement wrote before: a consumer nobody registered.
      before.prepare("INSERT INTO trust_bundle_consumers (consumer_id, acknowledged_sequence, acknowledged_at, first_seen_at) VALUES ('fake-consumer-1', 3, ?, ?)").run(T0.getTime(), T0.getTime());
      before.close();

      const db = openDatabase(path);
      try {
        const consumers = new SqliteTrustBundleConsumerRepository(db);
        expect(await consumers.list()).toEqual([
          { consumerId: "fake-consumer-1", spiffeId: null, acknowledgedSequence: 3, acknowledgedAt: T0, firstSeenAt: T0, registeredAt: null, registeredBy: null },
        ]);
        const registered = await consumers.register({ consumerId: "fake-consumer-1", spiffeId: "spiffe://anchorage.test/mesh", registeredBy: "apikey:admin" }, new Date(T0.getTime() + HOUR));
        expect(registered).toMatchObject({ spiffeId: "spiffe://anchorage.test/mesh", acknowledgedSequence: 3, registeredAt: new Date(T0.getTime() + HOUR) });
        expect((await consumers.acknowledge("fake-consumer-1", 4, new Date(T0.getTime() + 2 * HOUR)))?.acknowledgedSequence).toBe(4);
        expect(await consumers.acknowledge("nobody", 4, T0)).toBeUndefined();
        expect(await consumers.count()).toBe(1);
      } finally {
        db.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
