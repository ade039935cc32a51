/**
 * How long a revoked certificate stays on its CRL once it has expired (RFC 5280 §3.3: an entry is removed
 * only after it has appeared on one regularly scheduled CRL issued beyond the certificate's validity period),
 * with a clock the test moves: the CRL publisher over a real SQLite file, CRLs signed by a real intermediate
 * key (in memory) and read back by openssl.
 *
 * The tests run in order on one timeline: two one-hour certificates are revoked, both expire, and the test
 * follows them through the scheduled and the out-of-cycle CRLs that come after.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthorityService, authorityRecordOf } from "../../src/ca/authority-service.js";
import { createIntermediateCsr, createRootCertificate, signIntermediate } from "../../src/ca/ceremony.js";
import { authorityUrls, Issuer } from "../../src/ca/issuer.js";
import type { AuthorityRecord } from "../../src/ca/model.js";
import { FixedClock } from "../../src/common/clock.js";
import { silentLogger } from "../../src/common/logger.js";
import { certificateToPem } from "../../src/common/pem.js";
import { CrlPublisher } from "../../src/revocation/crl-publisher.js";
import { SoftwareKeyStore } from "../../src/signer/software-key-store.js";
import { SqliteAuditEventRepository } from "../../src/store/audit-event-repository.js";
import { SqliteAuthorityRepository } from "../../src/store/authority-repository.js";
import { SqliteCertificateStore } from "../../src/store/certificate-store.js";
import { SqliteCrlRepository } from "../../src/store/crl-repository.js";
import { openDatabase, type SqliteDatabase } from "../../src/store/database.js";
import { SqliteRevocationRepository } from "../../src/store/revocation-repository.js";
import { openssl, requireTools } from "../support/service.js";

const missing = requireTools(["openssl"]);

const T0 = new Date(Date.UTC(2026, 10, 22, 12));
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** CRLs valid one hour: the publisher refreshes them once 20 minutes have passed. */
const CRL_VALIDITY_SECONDS = 3600;

describe.skipIf(missing !== undefined)(`revoked certificates on CRLs after they expire${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let dir: string;
  let db: SqliteDatabase;
  let intermediate: AuthorityRecord;
  let crls: SqliteCrlRepository;
  let revocations: SqliteRevocationRepository;
  let publisher: CrlPublisher;
  let issuer: Issuer;
  let certificates: SqliteCertificateStore;
  const clock = new FixedClock(T0);
  /** Revoked at T0 + 10 min, expires at T0 + 1 h. */
  let early: string;
  /** Revoked at T0 + 1 h 30 min, after it expired at T0 + 1 h (revocation of an expired certificate is allowed). */
  let late: string;

  async function issued(notAfter: Date): Promise<string> {
    const serial = `7${randomBytes(16).toString("hex").slice(1)}`;
    const event = { type: "issuance.prepared" as const, actor: "token:t", outcome: "success" as const };
    await certificates.prepare(
      [{ serial, authorityId: intermediate.id, spiffeId: "spiffe://anchorage.test/crl", dnsNames: [], notBefore: T0, notAfter, keyType: "P-256", requester: "token:t", tbsDer: Buffer.from("tbs"), audit: event }],
      T0,
    );
    await certificates.complete([{ serial, der: Buffer.from("der"), fingerprintSha256: "00", audit: event }], T0);
    return serial;
  }

  async function revoke(serial: string): Promise<void> {
    const outcome = await revocations.revoke(serial, "keyCompromise", clock.now(), { type: "certificate.revoked", actor: "apikey:test", outcome: "success", subject: serial });
    expect(outcome.kind).toBe("revoked");
  }

  /** The serials on the stored CRL as openssl reads them (lower-case hex), after openssl checked its signature. */
  async function listedSerials(): Promise<{ serials: string[]; thisUpdate: Date }> {
    const crl = await crls.get(intermediate.id);
    if (!crl) throw new Error("no CRL stored");
    const crlPath = join(dir, `crl-${crl.crlNumber}.der`);
    const issuerPath = join(dir, "intermediate.pem");
    writeFileSync(crlPath, crl.der);
    writeFileSync(issuerPath, certificateToPem(intermediate.certificateDer));
    const checked = openssl(["crl", "-inform", "DER", "-in", crlPath, "-CAfile", issuerPath, "-noout", "-text"]);
    expect(checked.status, checked.stderr).toBe(0);
    expect(checked.stderr).toMatch(/verify OK/);
    const serials = [...checked.stdout.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((match) => (match[1] as string).toLowerCase());
    return { serials, thisUpdate: crl.thisUpdate };
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "anchorage-crl-expiry-"));
    db = openDatabase(join(dir, "anchorage.db"));
    const keys = new SoftwareKeyStore();
    const rootSigner = await keys.generateKey("root", { type: "ec", curve: "P-256" });
    const intermediateSigner = await keys.generateKey("intermediate", { type: "ec", curve: "P-256" });
    const rootDer = await createRootCertificate({ signer: rootSigner, subject: { commonName: "CRL Test Root CA" }, notBefore: new Date(T0.getTime() - HOUR) });
    const intermediateDer = await signIntermediate({
      rootSigner,
      rootCertificateDer: rootDer,
      csrDer: await createIntermediateCsr({ signer: intermediateSigner, subject: { commonName: "CRL Test Intermediate CA" } }),
      notBefore: new Date(T0.getTime() - HOUR),
      validityDays: 365,
      trustDomain: "anchorage.test",
    });
    const root = authorityRecordOf(rootDer, { kind: "root", status: "active", keyLabel: null, parentId: null, createdAt: T0 });
    intermediate = authorityRecordOf(intermediateDer, { kind: "intermediate", status: "active", keyLabel: "intermediate", parentId: root.id, createdAt: T0 });
    const authorities = new AuthorityService(new SqliteAuthorityRepository(db), "anchorage.test");
    await authorities.register(root);
    await authorities.register(intermediate);

    const audit = new SqliteAuditEventRepository(db);
    certificates = new SqliteCertificateStore(db, audit);
    revocations = new SqliteRevocationRepository(db, audit);
    crls = new SqliteCrlRepository(db);
    issuer = new Issuer(intermediate, intermediateSigner, [intermediateDer], authorityUrls("http://127.0.0.1:8080", intermediate.id));
    publisher = new CrlPublisher({
      repository: revocations,
      crls,
      issuers: () => [issuer],
      clock,
      logger: silentLogger,
      settings: { validitySeconds: CRL_VALIDITY_SECONDS },
    });
    early = await issued(new Date(T0.getTime() + HOUR));
    late = await issued(new Date(T0.getTime() + HOUR));
  }, 60_000);

  afterAll(async () => {
    db?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it("lists a revoked certificate while it is valid", async () => {
    clock.set(new Date(T0.getTime() + 10 * MINUTE));
    await revoke(early);
    await publisher.rebuild(intermediate.id);
    expect((await listedSerials()).serials).toEqual([early]);
  });

  it("keeps it on the first scheduled CRL issued after it expired", async () => {
    clock.set(new Date(T0.getTime() + HOUR + MINUTE));
    await publisher.refreshStale();
    const crl = await listedSerials();
    expect(crl.thisUpdate.getTime()).toBe(T0.getTime() + HOUR + MINUTE);
    expect(crl.serials).toEqual([early]);
  });

  it("drops it from any CRL after that one, while a certificate revoked after its expiry is listed out of cycle", async () => {
    clock.set(new Date(T0.getTime() + HOUR + 30 * MINUTE));
    await revoke(late);
    await publisher.rebuild(intermediate.id);
    expect((await listedSerials()).serials).toEqual([late]);
  });

  it("does not count the out-of-cycle CRL: the next scheduled one still lists the late entry, the one after does not", async () => {
    clock.set(new Date(T0.getTime() + HOUR + 55 * MINUTE));
    await publisher.refreshStale();
    expect((await listedSerials()).serials).toEqual([late]);

    clock.set(new Date(T0.getTime() + 2 * HOUR + 20 * MINUTE));
    await publisher.refreshStale();
    expect((await listedSerials()).serials).toEqual([]);
  });

  it("does not bring dropped entries back after a restart (the state is in the database)", async () => {
    const restarted = new CrlPublisher({
      repository: new SqliteRevocationRepository(db, new SqliteAuditEventRepository(db)),
      crls: new SqliteCrlRepository(db),
      issuers: () => [issuer],
      clock,
      logger: silentLogger,
      settings: { validitySeconds: CRL_VALIDITY_SECONDS },
    });
    clock.set(new Date(T0.getTime() + 2 * HOUR + 30 * MINUTE));
    await restarted.rebuild(intermediate.id);
    expect((await listedSerials()).serials).toEqual([]);
  });
});
