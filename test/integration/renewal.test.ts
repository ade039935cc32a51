/**
 * Renewal and self-revocation over mutual TLS against the real service: the workload's current certificate
 * (issued by the service) is its TLS client certificate. Successes are checked with `openssl verify`; each
 * refusal with its code and no new certificate row.
 *
 * One service for the file (restarted once with a grace window); tests run in order.
 */
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { refusal, ok, type Issued } from "../support/graphql.js";
import { makeCsr, makeKey, openssl, requireTools, scratchDir, startService, type GqlResponse, type RunningService } from "../support/service.js";

const missing = requireTools(["softhsm2-util", "openssl"]);

const FIELDS = "serial certificatePem chainPem notBefore notAfter spiffeId dnsNames";
const CREATE_TOKEN = `mutation ($input: CreateEnrollmentTokenInput!) { createEnrollmentToken(input: $input) { token } }`;
const ISSUE = `mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { ${FIELDS} } }`;
const RENEW = `mutation ($input: RenewCertificateInput!) { renewCertificate(input: $input) { ${FIELDS} } }`;
const REVOKE = `mutation ($serial: String!) { revokeCertificate(input: { serial: $serial, reason: KEY_COMPROMISE }) { serial status revocationReason } }`;

/** A workload: its key and its current certificate. */
interface Workload {
  keyPem: string;
  certificate: Issued;
}

describe.skipIf(missing !== undefined)(`renewal over mutual TLS${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let service: RunningService;
  let dataDir: string;
  const scratch = scratchDir("anchorage-renewal-");
  const identity = { spiffeId: "spiffe://anchorage.test/ns/shop/sa/cart", dnsNames: ["cart.shop.svc"] };
  /** Issued in beforeAll with the shortest lifetime, so that it has expired by the end of the file. */
  let shortLived: Workload;
  let startedAt: number;

  /** `openssl req` for an existing key. */
  function csrFor(keyPem: string, spiffeId = identity.spiffeId, dnsNames = identity.dnsNames): string {
    const keyFile = scratch.file(`key-${Math.random().toString(16).slice(2)}.pem`, keyPem);
    const sans = [`URI:${spiffeId}`, ...dnsNames.map((name) => `DNS:${name}`)].join(",");
    return execFileSync("openssl", ["req", "-new", "-key", keyFile, "-subj", "/", "-addext", `subjectAltName=${sans}`], { encoding: "utf8" });
  }

  async function enroll(ttlSeconds?: number): Promise<Workload> {
    const token = ok(await service.gql(CREATE_TOKEN, { input: identity }, { bearer: service.adminKey })).createEnrollmentToken.token;
    const { csrPem, keyPem } = makeCsr(identity);
    const certificate = ok(await service.gql(ISSUE, { input: { csr: csrPem, token, ...(ttlSeconds ? { ttlSeconds } : {}) } })).issueCertificate;
    return { keyPem, certificate };
  }

  /** Renews with the workload's certificate as the TLS client certificate and a CSR for `newKeyPem`. */
  function renew(current: Workload, newKeyPem: string, csr = csrFor(newKeyPem)): Promise<GqlResponse> {
    return service.gql(RENEW, { input: { csr } }, { cert: current.certificate.certificatePem + current.certificate.chainPem, key: current.keyPem });
  }

  function verifies(certificate: Issued): boolean {
    const root = scratch.file("root.pem", service.rootPem);
    const chain = scratch.file("chain.pem", certificate.chainPem);
    const leaf = scratch.file("leaf.pem", certificate.certificatePem);
    return openssl(["verify", "-CAfile", root, "-untrusted", chain, "-purpose", "sslclient", leaf]).status === 0;
  }

  beforeAll(async () => {
    service = await startService();
    dataDir = service.dataDir;
    startedAt = Date.now();
    shortLived = await enroll(60);
  });

  afterAll(async () => {
    await service?.cleanup();
    // A service restarted on the first one's folder does not own it: remove it here.
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    scratch.remove();
  });

  let first: Workload;
  let second: Workload;

  it("renews with a new key: same identity, fresh lifetime, predecessor recorded, verifiable by openssl", async () => {
    first = await enroll(600);
    const keyPem = makeKey("P-256");
    const renewed = ok(await renew(first, keyPem)).renewCertificate as Issued;
    second = { keyPem, certificate: renewed };
    expect(renewed.serial).not.toBe(first.certificate.serial);
    expect(renewed.spiffeId).toBe(identity.spiffeId);
    expect(renewed.dnsNames).toEqual(identity.dnsNames);
    expect(new Date(renewed.notAfter).getTime()).toBeGreaterThan(new Date(first.certificate.notAfter).getTime());
    expect(verifies(renewed)).toBe(true);
    expect(service.sqlValue("SELECT predecessor_serial FROM certificates WHERE serial = ?", renewed.serial)).toBe(first.certificate.serial);
    expect(service.sqlValue("SELECT requester FROM certificates WHERE serial = ?", renewed.serial)).toBe(`certificate:${first.certificate.serial}`);
  });

  it("refuses without a client certificate, with a foreign one, with the same key, or with another identity, storing nothing", async () => {
    const rows = service.countCertificateRows();
    const keyPem = makeKey("P-256");

    const bare = refusal(await service.gql(RENEW, { input: { csr: csrFor(keyPem) } }));
    expect(bare).toMatchObject({ code: "UNAUTHENTICATED", message: expect.stringMatching(/client certificate/) });

    const foreignKeyPem = makeKey("P-256");
    const foreignKey = scratch.file("foreign.key", foreignKeyPem);
    const foreignPem = execFileSync(
      "openssl",
      ["req", "-x509", "-new", "-key", foreignKey, "-subj", "/CN=foreign", "-days", "1", "-addext", `subjectAltName=URI:${identity.spiffeId},DNS:${identity.dnsNames[0]}`],
      { encoding: "utf8" },
    );
    const foreign = refusal(await renew({ keyPem: foreignKeyPem, certificate: { ...second.certificate, certificatePem: foreignPem, chainPem: "" } }, keyPem));
    expect(foreign).toMatchObject({ code: "UNAUTHENTICATED", message: "the client certificate was not issued by this CA" });

    const sameKey = refusal(await renew(second, second.keyPem));
    expect(sameKey).toMatchObject({ code: "POLICY_VIOLATION", message: expect.stringMatching(/new key/) });

    const otherName = refusal(await renew(second, keyPem, csrFor(keyPem, "spiffe://anchorage.test/ns/shop/sa/admin")));
    expect(otherName).toMatchObject({ code: "POLICY_VIOLATION", message: expect.stringMatching(/keeps the identity/) });
    const extraDns = refusal(await renew(second, keyPem, csrFor(keyPem, identity.spiffeId, [...identity.dnsNames, "extra.shop.svc"])));
    expect(extraDns.code).toBe("POLICY_VIOLATION");
    const droppedDns = refusal(await renew(second, keyPem, csrFor(keyPem, identity.spiffeId, [])));
    expect(droppedDns.code).toBe("POLICY_VIOLATION");

    expect(service.countCertificateRows()).toBe(rows);
  });

  it("lets only the newest certificate of a lineage renew: an older one cannot fork it, nor can parallel attempts", async () => {
    const rows = service.countCertificateRows();
    const stolen = refusal(await renew(first, makeKey("P-256")));
    expect(stolen).toMatchObject({ code: "POLICY_VIOLATION", message: expect.stringMatching(/already renewed .*newest/) });
    expect(service.countCertificateRows()).toBe(rows);

    const attempts = await Promise.all(Array.from({ length: 6 }, () => renew(second, makeKey("P-256"))));
    const successes = attempts.filter((answer) => !answer.body.errors);
    expect(successes).toHaveLength(1);
    for (const answer of attempts.filter((candidate) => candidate.body.errors)) expect(refusal(answer).code).toBe("POLICY_VIOLATION");
    expect(service.countCertificateRows()).toBe(rows + 1);
    expect(Number(service.sqlValue("SELECT count(*) FROM certificates WHERE predecessor_serial = ?", second.certificate.serial))).toBe(1);
  });

  it("lets a workload read and revoke its own certificate over mutual TLS, and only its own; a revoked one cannot renew", async () => {
    const victim = await enroll();
    const bystander = await enroll();
    const asVictim = { cert: victim.certificate.certificatePem + victim.certificate.chainPem, key: victim.keyPem };
    const READ = `query ($serial: String!) { certificate(serial: $serial) { serial status spiffeId } }`;
    expect(ok(await service.gql(READ, { serial: victim.certificate.serial }, asVictim)).certificate).toEqual({
      serial: victim.certificate.serial,
      status: "VALID",
      spiffeId: identity.spiffeId,
    });
    expect(refusal(await service.gql(READ, { serial: bystander.certificate.serial }, asVictim)).code).toBe("FORBIDDEN");
    expect(refusal(await service.gql(REVOKE, { serial: bystander.certificate.serial }, asVictim)).code).toBe("FORBIDDEN");
    expect(refusal(await service.gql(REVOKE, { serial: bystander.certificate.serial })).code).toBe("UNAUTHENTICATED");
    const revoked = ok(await service.gql(REVOKE, { serial: victim.certificate.serial }, asVictim)).revokeCertificate;
    expect(revoked).toEqual({ serial: victim.certificate.serial, status: "REVOKED", revocationReason: "KEY_COMPROMISE" });
    expect(service.sqlValue("SELECT actor FROM audit_events WHERE type = 'certificate.revoked' AND subject = ?", victim.certificate.serial)).toBe(
      `certificate:${victim.certificate.serial}`,
    );
    const rows = service.countCertificateRows();
    const answer = refusal(await renew(victim, makeKey("P-256")));
    expect(answer).toMatchObject({ code: "UNAUTHENTICATED", message: expect.stringMatching(/revoked/) });
    expect(service.countCertificateRows()).toBe(rows);
    expect(service.sqlValue("SELECT revoked_at FROM certificates WHERE serial = ?", bystander.certificate.serial)).toBeNull();
  });

  describe("the lineage stays within its origin credential", () => {
    const CREATE_TOKEN_WITH_ID = `mutation ($input: CreateEnrollmentTokenInput!) { createEnrollmentToken(input: $input) { id token } }`;
    const REVOKE_TOKEN = `mutation ($id: ID!) { revokeEnrollmentToken(id: $id) { id usesLeft } }`;
    const CREATE_REGISTRATION = `mutation ($input: RegistrationInput!) { createRegistration(input: $input) { id } }`;
    const DELETE_REGISTRATION = `mutation ($id: ID!) { deleteRegistration(id: $id) { id } }`;
    const ADMIN_REVOKE = `mutation ($serial: String!, $reason: RevocationReason!) { revokeCertificate(input: { serial: $serial, reason: $reason }) { serial status } }`;
    const READ = `query ($serial: String!) { certificate(serial: $serial) { status revocationReason } }`;
    const admin = (query: string, variables: Record<string, unknown>) => service.gql(query, variables, { bearer: service.adminKey });
    const lifetimeOf = (certificate: Issued): number => (new Date(certificate.notAfter).getTime() - Date.now()) / 1000;

    async function enrollWith(tokenInput: Record<string, unknown>, ttlSeconds?: number): Promise<Workload & { tokenId: string }> {
      const created = ok(await admin(CREATE_TOKEN_WITH_ID, { input: { ...identity, ...tokenInput } })).createEnrollmentToken;
      const { csrPem, keyPem } = makeCsr(identity);
      const certificate = ok(await service.gql(ISSUE, { input: { csr: csrPem, token: created.token, ...(ttlSeconds ? { ttlSeconds } : {}) } })).issueCertificate;
      return { keyPem, certificate, tokenId: created.id };
    }

    async function renewTo(current: Workload, ttlSeconds?: number): Promise<{ answer: GqlResponse; keyPem: string }> {
      const keyPem = makeKey("P-256");
      const input = { csr: csrFor(keyPem), ...(ttlSeconds ? { ttlSeconds } : {}) };
      const answer = await service.gql(RENEW, { input }, { cert: current.certificate.certificatePem + current.certificate.chainPem, key: current.keyPem });
      return { answer, keyPem };
    }

    it("never renews past the lifetime cap of the token the lineage started with", async () => {
      const capped = await enrollWith({ maxTtlSeconds: 120 }, 120);
      const rows = service.countCertificateRows();
      const tooLong = refusal((await renewTo(capped, 86400)).answer);
      expect(tooLong).toMatchObject({ code: "POLICY_VIOLATION", message: expect.stringMatching(/exceeds the maximum of 120/) });
      expect(service.countCertificateRows()).toBe(rows);

      const byDefault = await renewTo(capped);
      const renewed = ok(byDefault.answer).renewCertificate as Issued;
      expect(lifetimeOf(renewed)).toBeLessThanOrEqual(120);
      const next = { keyPem: byDefault.keyPem, certificate: renewed };
      // The cap is inherited along the lineage, not only checked on the first renewal.
      expect(refusal((await renewTo(next, 121)).answer).code).toBe("POLICY_VIOLATION");
      const withinCap = ok((await renewTo(next, 120)).answer).renewCertificate as Issued;
      expect(lifetimeOf(withinCap)).toBeLessThanOrEqual(120);
      expect(verifies(withinCap)).toBe(true);
    });

    it("refuses renewal with FORBIDDEN once the origin token was revoked, but not once it was merely used up", async () => {
      const usedUp = await enrollWith({ uses: 1 });
      ok((await renewTo(usedUp)).answer);

      const voided = await enrollWith({ uses: 2 });
      ok(await admin(REVOKE_TOKEN, { id: voided.tokenId }));
      const rows = service.countCertificateRows();
      const answer = refusal((await renewTo(voided)).answer);
      expect(answer).toMatchObject({ code: "FORBIDDEN", message: expect.stringMatching(new RegExp(`enrollment token ${voided.tokenId} .*revoked`)) });
      expect(service.countCertificateRows()).toBe(rows);
      expect(service.sqlValue("SELECT code FROM audit_events WHERE type = 'issuance.refused' ORDER BY rowid DESC LIMIT 1")).toBe("FORBIDDEN");
    });

    it("refuses renewal with FORBIDDEN once the registration the lineage came from was deleted", async () => {
      const registration = ok(await admin(CREATE_REGISTRATION, { input: { ...identity, maxTtlSeconds: 3600 } })).createRegistration;
      const workload = await enrollWith({ registrationId: registration.id });
      const step = await renewTo(workload);
      const renewed = { keyPem: step.keyPem, certificate: ok(step.answer).renewCertificate as Issued };
      expect(lifetimeOf(renewed.certificate)).toBeLessThanOrEqual(3600);
      ok(await admin(DELETE_REGISTRATION, { id: registration.id }));
      const answer = refusal((await renewTo(renewed)).answer);
      expect(answer).toMatchObject({ code: "FORBIDDEN", message: expect.stringMatching(new RegExp(`registration ${registration.id} .*deleted`)) });
    });

    it("revokes every later certificate of the lineage when an older one is revoked for KEY_COMPROMISE, visible by OCSP and CRL", async () => {
      const original = await enroll();
      const firstStep = await renewTo(original);
      const middle = { keyPem: firstStep.keyPem, certificate: ok(firstStep.answer).renewCertificate as Issued };
      const newest = ok((await renewTo(middle)).answer).renewCertificate as Issued;
      const unrelated = await enroll();

      ok(await admin(ADMIN_REVOKE, { serial: original.certificate.serial, reason: "KEY_COMPROMISE" }));
      for (const serial of [middle.certificate.serial, newest.serial]) {
        expect(ok(await admin(READ, { serial })).certificate).toEqual({ status: "REVOKED", revocationReason: "KEY_COMPROMISE" });
        expect(service.sqlValue("SELECT count(*) FROM audit_events WHERE type = 'certificate.revoked' AND subject = ?", serial)).toBe(1);
      }
      expect(ok(await admin(READ, { serial: unrelated.certificate.serial })).certificate.status).toBe("VALID");

      const issuerFile = scratch.file("lineage-issuer.pem", newest.chainPem);
      const leafFile = scratch.file("lineage-leaf.pem", newest.certificatePem);
      const status = openssl(["ocsp", "-issuer", issuerFile, "-cert", leafFile, "-url", `http://127.0.0.1:${service.httpPort}/ocsp`, "-noverify", "-no_nonce"]);
      expect(`${status.stdout}${status.stderr}`).toMatch(/: revoked/);
      expect(`${status.stdout}${status.stderr}`).toMatch(/Key Compromise|keyCompromise/);

      const authorityId = service.sqlValue("SELECT authority_id FROM certificates WHERE serial = ?", newest.serial) as string;
      const crl = await service.http(`/crl/${authorityId}.crl`);
      const crlText = openssl(["crl", "-inform", "DER", "-noout", "-text"], crl.body).stdout.replace(/:/g, "").toLowerCase();
      for (const serial of [original.certificate.serial, middle.certificate.serial, newest.serial]) expect(crlText).toContain(serial.replace(/^0+/, ""));
    });

    it("does not cascade a revocation for another reason to the successors", async () => {
      const original = await enroll();
      const renewed = ok((await renewTo(original)).answer).renewCertificate as Issued;
      ok(await admin(ADMIN_REVOKE, { serial: original.certificate.serial, reason: "SUPERSEDED" }));
      expect(ok(await admin(READ, { serial: renewed.serial })).certificate.status).toBe("VALID");
    });
  });

  it("refuses an expired certificate, and accepts it within the operator's grace window", async () => {
    const expiresAt = new Date(shortLived.certificate.notAfter).getTime();
    const wait = expiresAt + 1500 - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    expect(Date.now() - startedAt).toBeGreaterThan(60_000);
    const rows = service.countCertificateRows();
    const expired = refusal(await renew(shortLived, makeKey("P-256")));
    expect(expired).toMatchObject({ code: "UNAUTHENTICATED", message: expect.stringMatching(/expired at/) });
    expect(service.countCertificateRows()).toBe(rows);

    await service.stop();
    service = await startService({ dataDir, env: { ANCHORAGE_RENEWAL_GRACE_SECONDS: "3600" } });
    const renewed = ok(await renew(shortLived, makeKey("P-256"))).renewCertificate as Issued;
    expect(verifies(renewed)).toBe(true);
    expect(new Date(renewed.notAfter).getTime()).toBeGreaterThan(Date.now());
  }, 120_000);
});
