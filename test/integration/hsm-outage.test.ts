import "reflect-metadata";
/**
 * Issuance while the HSM is gone, in process, with everything real: SoftHSM2 through pkcs11js (a root on its
 * own token, the intermediate key on the online token), a SQLite file in a temporary folder, the issuance
 * service wired the way src/main.ts wires it. The online token is broken so that recovery keeps failing
 * (module finalised, SOFTHSM2_CONF pointing at a missing file); issuance must fail closed with
 * HSM_UNAVAILABLE and leave the books straight (reserved row marked failed, no DER, token use given back, an
 * issuance.failed audit event), then work again once the token is back.
 *
 * The tests run in order: the outage starts in the second and ends in the fourth.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditLog } from "../../src/audit/audit-log.js";
import { AuthorityService, authorityRecordOf } from "../../src/ca/authority-service.js";
import { createIntermediateCsr, createRootCertificate, signIntermediate } from "../../src/ca/ceremony.js";
import { IssuanceService, type IssuedCertificate } from "../../src/ca/issuance-service.js";
import { authorityUrls, Issuer } from "../../src/ca/issuer.js";
import type { AuthorityRecord } from "../../src/ca/model.js";
import { systemClock } from "../../src/common/clock.js";
import { AnchorageError, HsmUnavailableError } from "../../src/common/errors.js";
import { silentLogger } from "../../src/common/logger.js";
import { certificateToPem } from "../../src/common/pem.js";
import { DEFAULT_TOKEN_SETTINGS, EnrollmentTokenService } from "../../src/policy/enrollment-tokens.js";
import type { Principal } from "../../src/policy/principal.js";
import { Pkcs11KeyStore } from "../../src/signer/pkcs11/pkcs11-key-store.js";
import { SqliteAuditEventRepository } from "../../src/store/audit-event-repository.js";
import { SqliteAuthorityRepository } from "../../src/store/authority-repository.js";
import { SqliteCertificateStore } from "../../src/store/certificate-store.js";
import { openDatabase, type SqliteDatabase } from "../../src/store/database.js";
import { SqliteEnrollmentTokenRepository } from "../../src/store/policy-repositories.js";
import { makeCsr, requireTools, openssl } from "../support/service.js";
import { createSoftHsm, type SoftHsm } from "../support/softhsm.js";

// SoftHSM2 and openssl (which makes the CSRs and verifies the leaves): in CI a missing tool fails, never skips.
const missing = requireTools(["softhsm2-util", "openssl"]);

const ONLINE = "anchorage-online";
const ONLINE_PIN = "online-pin-3141";
const ROOT = "anchorage-root";
const ROOT_PIN = "root-pin-2718";
const INTERMEDIATE_KEY = "outage-intermediate";
const TRUST_DOMAIN = "outage.test";
const spiffe = (path: string): string => `spiffe://${TRUST_DOMAIN}/${path}`;

const ADMIN: Principal = { kind: "apiKey", id: "key_outage_admin", name: "outage test admin", role: "ADMIN" };

/** How long the service may take to sign again once the token is back (the back-off is capped at 5 s). */
const RECOVERY_WITHIN_MS = 10_000;

interface CertificateRow {
  serial: string;
  state: string;
  der: Buffer | null;
  fingerprint_sha256: string | null;
  issued_at: number | null;
  requester: string;
}

describe.skipIf(missing !== undefined)(`issuance during an HSM outage${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let hsm: SoftHsm;
  let dir: string;
  let db: SqliteDatabase;
  let keyStore: Pkcs11KeyStore;
  let tokens: EnrollmentTokenService;
  let issuance: IssuanceService;
  let root: AuthorityRecord;
  let intermediate: AuthorityRecord;
  let workingConf: string;

  const rows = (spiffeId: string): CertificateRow[] =>
    db
      .prepare("SELECT serial, state, der, fingerprint_sha256, issued_at, requester FROM certificates WHERE spiffe_id = ? ORDER BY rowid")
      .all(spiffeId) as CertificateRow[];
  const usesLeft = (tokenId: string): number =>
    Number(db.prepare("SELECT uses_left FROM enrollment_tokens WHERE id = ?").pluck().get(tokenId));
  const auditEvents = (type: string, subject: string): { code: string | null; actor: string; outcome: string }[] =>
    db.prepare("SELECT code, actor, outcome FROM audit_events WHERE type = ? AND subject = ?").all(type, subject) as {
      code: string | null;
      actor: string;
      outcome: string;
    }[];

  async function createToken(spiffeId: string, uses: number): Promise<{ id: string; token: string }> {
    const created = await tokens.create(ADMIN, { spiffeId, uses });
    return { id: created.record.id, token: created.token };
  }

  /** The issued leaf checked by openssl against the root, through the intermediate. */
  function expectVerifiesWithOpenssl(issued: IssuedCertificate): void {
    const rootPath = join(dir, "root.pem");
    const chainPath = join(dir, "chain.pem");
    const leafPath = join(dir, `leaf-${issued.serial}.pem`);
    writeFileSync(rootPath, certificateToPem(root.certificateDer));
    writeFileSync(chainPath, issued.chainDer.map(certificateToPem).join(""));
    writeFileSync(leafPath, certificateToPem(issued.certificateDer));
    const result = openssl(["verify", "-x509_strict", "-CAfile", rootPath, "-untrusted", chainPath, leafPath]);
    expect(result.status, `${result.stdout}${result.stderr}`).toBe(0);
  }

  beforeAll(async () => {
    hsm = await createSoftHsm([
      { label: ONLINE, pin: ONLINE_PIN },
      { label: ROOT, pin: ROOT_PIN },
    ]);
    workingConf = hsm.confPath;
    dir = mkdtempSync(join(tmpdir(), "anchorage-outage-"));
    db = openDatabase(join(dir, "anchorage.db"));

    // The online store is opened first, so it owns the module's initialisation; the root store is a guest
    // that is closed as soon as the ceremony is over (the service never holds the root token open).
    keyStore = await Pkcs11KeyStore.open({ modulePath: hsm.modulePath, tokenLabel: ONLINE, pin: ONLINE_PIN });
    const rootStore = await Pkcs11KeyStore.open({ modulePath: hsm.modulePath, tokenLabel: ROOT, pin: ROOT_PIN, sessionPoolSize: 1 });
    const now = new Date();
    let rootDer: Buffer;
    let intermediateDer: Buffer;
    const signer = await keyStore.generateKey(INTERMEDIATE_KEY, { type: "ec", curve: "P-256" });
    try {
      const rootSigner = await rootStore.generateKey("outage-root", { type: "ec", curve: "P-384" });
      rootDer = await createRootCertificate({
        signer: rootSigner,
        subject: { commonName: "Outage Test Root CA", organization: "Anchorage" },
        notBefore: new Date(now.getTime() - 3_600_000),
      });
      const csrDer = await createIntermediateCsr({ signer, subject: { commonName: "Outage Test Intermediate CA", organization: "Anchorage" } });
      intermediateDer = await signIntermediate({
        rootSigner,
        rootCertificateDer: rootDer,
        csrDer,
        notBefore: new Date(now.getTime() - 3_600_000),
        validityDays: 365,
        trustDomain: TRUST_DOMAIN,
      });
    } finally {
      await rootStore.close();
    }

    // Wired as src/main.ts wires it.
    const auditRepository = new SqliteAuditEventRepository(db);
    const audit = new AuditLog(auditRepository, systemClock, silentLogger);
    const authorities = new AuthorityService(new SqliteAuthorityRepository(db), TRUST_DOMAIN);
    root = authorityRecordOf(rootDer, { kind: "root", status: "active", keyLabel: null, parentId: null, createdAt: now });
    intermediate = authorityRecordOf(intermediateDer, {
      kind: "intermediate",
      status: "active",
      keyLabel: INTERMEDIATE_KEY,
      parentId: root.id,
      createdAt: now,
    });
    await authorities.register(root);
    await authorities.register(intermediate);
    const active = (await authorities.list()).find((authority) => authority.kind === "intermediate" && authority.status === "active");
    expect(active?.id).toBe(intermediate.id);

    const settings = { trustDomain: TRUST_DOMAIN, defaultTtlSeconds: 3600, maxTtlSeconds: 86_400, backdateSeconds: 300, maxBatchSize: 64 };
    tokens = new EnrollmentTokenService(new SqliteEnrollmentTokenRepository(db), audit, systemClock, {
      trustDomain: TRUST_DOMAIN,
      maxTtlSeconds: settings.maxTtlSeconds,
      ...DEFAULT_TOKEN_SETTINGS,
    });
    const issuer = new Issuer(
      active as AuthorityRecord,
      await keyStore.openKey(INTERMEDIATE_KEY),
      [(active as AuthorityRecord).certificateDer],
      authorityUrls("http://127.0.0.1:8080", intermediate.id),
    );
    issuance = new IssuanceService({
      authorizer: tokens,
      ledger: new SqliteCertificateStore(db, auditRepository),
      activeIssuer: () => issuer,
      audit,
      clock: systemClock,
      logger: silentLogger,
      settings,
    });
  }, 60_000);

  afterAll(async () => {
    // If a test failed half-way through the outage, give SoftHSM its configuration back before closing.
    if (workingConf !== undefined) process.env.SOFTHSM2_CONF = workingConf;
    await keyStore?.close();
    db?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    await hsm?.cleanup();
  });

  it("issues normally while the HSM is up", async () => {
    const spiffeId = spiffe("ns/before/sa/app");
    const token = await createToken(spiffeId, 1);
    const issued = await issuance.issue({ csr: makeCsr({ spiffeId }).csrPem, token: token.token });
    expect(issued.spiffeId).toBe(spiffeId);
    expect(issued.issuerId).toBe(intermediate.id);
    expectVerifiesWithOpenssl(issued);

    const [row, ...others] = rows(spiffeId);
    expect(others).toHaveLength(0);
    expect(row?.state).toBe("issued");
    expect(row?.der?.equals(issued.certificateDer)).toBe(true);
    expect(usesLeft(token.id)).toBe(0);
    expect(auditEvents("issuance.signed", issued.serial)).toHaveLength(1);
    expect(await keyStore.isHealthy()).toBe(true);
  });

  it("fails closed with HSM_UNAVAILABLE while the token stays gone, and leaves the books straight", async () => {
    const spiffeId = spiffe("ns/outage/sa/single");
    const token = await createToken(spiffeId, 3);
    const { csrPem } = makeCsr({ spiffeId });

    // SoftHSM reads SOFTHSM2_CONF at each C_Initialize: with the file missing, every reconnect fails.
    process.env.SOFTHSM2_CONF = join(hsm.dir, "does-not-exist.conf");
    keyStore.simulateFaultForTests("finalize");

    const error = await issuance.issue({ csr: csrPem, token: token.token }).then(
      (issued) => issued,
      (reason: unknown) => reason,
    );
    expect(error, "issuance must fail while the HSM is gone").toBeInstanceOf(AnchorageError);
    expect((error as AnchorageError).code).toBe("HSM_UNAVAILABLE");
    expect(error).toBeInstanceOf(HsmUnavailableError);
    // Nothing about the module, the token or its PIN in what a client would see.
    expect((error as Error).message).not.toContain(ONLINE_PIN);

    // The reservation was made (serial and TBS recorded before signing), then marked failed with no DER.
    const recorded = rows(spiffeId);
    expect(recorded).toHaveLength(1);
    const [row] = recorded as [CertificateRow];
    expect(row.state).toBe("failed");
    expect(row.der).toBeNull();
    expect(row.fingerprint_sha256).toBeNull();
    expect(row.issued_at).toBeNull();
    expect(row.requester).toBe(`token:${token.id}`);
    // Nothing the issued-certificate queries can see.
    expect(db.prepare("SELECT count(*) FROM certificates WHERE spiffe_id = ? AND state = 'issued'").pluck().get(spiffeId)).toBe(0);

    // The request the CA could not serve did not cost the token a use.
    expect(usesLeft(token.id)).toBe(3);

    // Audited: prepared, then failed with the code; never signed.
    expect(auditEvents("issuance.prepared", row.serial)).toHaveLength(1);
    const failed = auditEvents("issuance.failed", row.serial);
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ code: "HSM_UNAVAILABLE", outcome: "failure", actor: `token:${token.id}` });
    expect(auditEvents("issuance.signed", row.serial)).toHaveLength(0);

    // Still down: a second try fails fast the same way, and the store reports itself unhealthy.
    const again = await issuance.issue({ csr: csrPem, token: token.token }).catch((reason: unknown) => reason);
    expect((again as AnchorageError).code).toBe("HSM_UNAVAILABLE");
    expect(usesLeft(token.id)).toBe(3);
    expect(rows(spiffeId).map((r) => r.state)).toEqual(["failed", "failed"]);
    expect(await keyStore.isHealthy()).toBe(false);
  });

  it("fails every item of a batch with HSM_UNAVAILABLE during the outage and stores none as issued", async () => {
    const spiffeId = spiffe("ns/outage/sa/batch");
    const token = await createToken(spiffeId, 4);
    const issuedBefore = Number(db.prepare("SELECT count(*) FROM certificates WHERE state = 'issued'").pluck().get());

    const outcomes = await issuance.issueBatch(Array.from({ length: 4 }, () => ({ csr: makeCsr({ spiffeId }).csrPem, token: token.token })));
    expect(outcomes).toHaveLength(4);
    for (const outcome of outcomes) {
      expect(outcome, "no certificate may come back while the HSM is gone").toBeInstanceOf(AnchorageError);
      expect((outcome as AnchorageError).code).toBe("HSM_UNAVAILABLE");
    }

    const recorded = rows(spiffeId);
    expect(recorded).toHaveLength(4);
    for (const row of recorded) {
      expect(row.state).toBe("failed");
      expect(row.der).toBeNull();
      const failed = auditEvents("issuance.failed", row.serial);
      expect(failed).toHaveLength(1);
      expect(failed[0]?.code).toBe("HSM_UNAVAILABLE");
    }
    expect(new Set(recorded.map((row) => row.serial)).size).toBe(4);
    expect(Number(db.prepare("SELECT count(*) FROM certificates WHERE state = 'issued'").pluck().get())).toBe(issuedBefore);
    expect(usesLeft(token.id)).toBe(4);
    expect(await keyStore.isHealthy()).toBe(false);
  });

  it("issues again, within a bounded time, once the token is back", async () => {
    const spiffeId = spiffe("ns/after/sa/app");
    // One use: every failed attempt while recovery catches up must give it back, or the success below cannot happen.
    const token = await createToken(spiffeId, 1);
    const { csrPem } = makeCsr({ spiffeId });

    process.env.SOFTHSM2_CONF = workingConf;
    const restoredAt = Date.now();
    let issued: IssuedCertificate | undefined;
    let lastError: unknown;
    let failedAttempts = 0;
    while (issued === undefined && Date.now() - restoredAt < RECOVERY_WITHIN_MS) {
      try {
        issued = await issuance.issue({ csr: csrPem, token: token.token });
      } catch (error) {
        lastError = error;
        expect((error as AnchorageError).code, String(error)).toBe("HSM_UNAVAILABLE");
        failedAttempts++;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    expect(issued, `issuance still fails ${RECOVERY_WITHIN_MS} ms after the token came back: ${String(lastError)}`).toBeDefined();
    expectVerifiesWithOpenssl(issued as IssuedCertificate);
    expect(await keyStore.isHealthy()).toBe(true);

    const recorded = rows(spiffeId);
    expect(recorded).toHaveLength(failedAttempts + 1);
    expect(recorded.filter((row) => row.state === "issued").map((row) => row.serial)).toEqual([issued?.serial]);
    expect(recorded.filter((row) => row.state === "failed")).toHaveLength(failedAttempts);
    expect(usesLeft(token.id)).toBe(0);

    // And the issuer keeps working afterwards: a batch goes through in full.
    const batchId = spiffe("ns/after/sa/batch");
    const batchToken = await createToken(batchId, 3);
    const outcomes = await issuance.issueBatch(Array.from({ length: 3 }, () => ({ csr: makeCsr({ spiffeId: batchId }).csrPem, token: batchToken.token })));
    for (const outcome of outcomes) expect(outcome).not.toBeInstanceOf(AnchorageError);
    expect(rows(batchId).map((row) => row.state)).toEqual(["issued", "issued", "issued"]);
    expect(usesLeft(batchToken.id)).toBe(0);
  });
});
