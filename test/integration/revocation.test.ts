/**
 * Revocation end to end against the real service (child process, SoftHSM, SQLite file): the revokeCertificate
 * mutation (idempotence, audit, refusals that leave nothing behind) and the per-intermediate CRL it
 * publishes, judged by openssl (signature, contents, `openssl verify -crl_check_all` on real chains), CRL
 * numbering that only goes up (also across a restart), expired entries staying until a scheduled CRL has
 * listed them after their expiry (crl-expiry.test.ts follows them off with a test clock), and a burst of
 * parallel revocations whose coalesced rebuilds lose none.
 *
 * One service for the whole file (restarted once on the same data folder); the tests run in order and build
 * on what earlier ones revoked.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { refusal } from "../support/graphql.js";
import { makeCsr, requireTools, openssl, scratchDir, startService, type GqlResponse, type RunningService } from "../support/service.js";

const missing = requireTools(["softhsm2-util", "openssl"]);

const TRUST_DOMAIN = "anchorage.test";
const spiffe = (path: string): string => `spiffe://${TRUST_DOMAIN}/${path}`;
const DAY_MS = 86_400_000;

const ISSUED_FIELDS = "serial certificatePem chainPem notBefore notAfter spiffeId dnsNames";
const CREATE_TOKEN = `mutation ($input: CreateEnrollmentTokenInput!) { createEnrollmentToken(input: $input) { id token } }`;
const ISSUE = `mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { ${ISSUED_FIELDS} } }`;
const ISSUE_BATCH = `mutation ($inputs: [IssueCertificateInput!]!) {
  issueCertificates(inputs: $inputs) { certificate { ${ISSUED_FIELDS} } error { code message } }
}`;
const REVOKE = `mutation ($input: RevokeCertificateInput!) {
  revokeCertificate(input: $input) { serial status revokedAt revocationReason issuerId }
}`;
const AUTHORITIES = "{ authorities { id kind status certificatePem } }";

interface Issued {
  serial: string;
  certificatePem: string;
  chainPem: string;
  notBefore: string;
  notAfter: string;
}

interface Revoked {
  serial: string;
  status: string;
  revokedAt: string | null;
  revocationReason: string | null;
  issuerId: string;
}

interface CrlEntry {
  /** Lower-case hex without leading zeros. */
  readonly serial: string;
  readonly revocationDate: Date;
  /** As openssl prints it ("Key Compromise"); undefined when the entry has no reason code. */
  readonly reason: string | undefined;
}

interface ParsedCrl {
  readonly der: Buffer;
  readonly text: string;
  readonly crlNumber: bigint;
  readonly lastUpdate: Date;
  readonly nextUpdate: Date;
  /** Authority Key Identifier, lower-case hex without separators. */
  readonly authorityKeyId: string;
  readonly entries: Map<string, CrlEntry>;
}

/** A serial as the CRL parser keys it: lower-case hex, leading zeros dropped (DER integers carry none). */
const serialKey = (hex: string): string => hex.toLowerCase().replace(/^0+(?=.)/, "");

/** Reads a CRL with `openssl crl -text`, not with our own decoder. */
function parseCrl(der: Buffer): ParsedCrl {
  const result = openssl(["crl", "-inform", "DER", "-noout", "-text"], der);
  expect(result.status, result.stderr).toBe(0);
  const text = result.stdout;

  const crlNumber = /X509v3 CRL Number:\s*\n\s*(0x[0-9A-Fa-f]+|\d+)\s*\n/.exec(text);
  expect(crlNumber, `no CRL Number in\n${text}`).not.toBeNull();
  const aki = /X509v3 Authority Key Identifier:\s*\n\s*(?:keyid:)?([0-9A-Fa-f:]+)\s*\n/.exec(text);
  expect(aki, `no Authority Key Identifier in\n${text}`).not.toBeNull();
  const lastUpdate = /Last Update: (.+ GMT)/.exec(text);
  const nextUpdate = /Next Update: (.+ GMT)/.exec(text);
  expect(lastUpdate, text).not.toBeNull();
  expect(nextUpdate, text).not.toBeNull();

  const entries = new Map<string, CrlEntry>();
  const revokedStart = text.indexOf("Revoked Certificates:");
  if (revokedStart !== -1) {
    const signatureStart = text.indexOf("Signature Algorithm:", revokedStart);
    const revokedText = text.slice(revokedStart, signatureStart === -1 ? undefined : signatureStart);
    for (const block of revokedText.split(/\n\s*Serial Number: /).slice(1)) {
      const serial = /^([0-9A-F]+)\s*\n/.exec(block);
      const date = /Revocation Date: (.+ GMT)/.exec(block);
      expect(serial, `unparsable CRL entry:\n${block}`).not.toBeNull();
      expect(date, `unparsable CRL entry:\n${block}`).not.toBeNull();
      const reason = /X509v3 CRL Reason Code:\s*\n\s*(.+?)\s*\n/.exec(`${block}\n`);
      const key = serialKey(serial?.[1] as string);
      expect(entries.has(key), `serial ${key} listed twice`).toBe(false);
      entries.set(key, { serial: key, revocationDate: new Date(date?.[1] as string), reason: reason?.[1] });
    }
  }
  return {
    der,
    text,
    crlNumber: BigInt(crlNumber?.[1] as string),
    lastUpdate: new Date(lastUpdate?.[1] as string),
    nextUpdate: new Date(nextUpdate?.[1] as string),
    authorityKeyId: (aki?.[1] as string).replace(/:/g, "").toLowerCase(),
    entries,
  };
}

function crlToPem(der: Buffer): string {
  const result = openssl(["crl", "-inform", "DER", "-outform", "PEM"], der);
  expect(result.status, result.stderr).toBe(0);
  return result.stdout;
}

describe.skipIf(missing !== undefined)(`revocation and CRLs through the running service${missing ? ` (skipped: ${missing})` : ""}`, () => {
  /** The first instance: owns the data folder, which its cleanup removes. */
  let first: RunningService;
  /** Whichever instance is current (the service is restarted once). */
  let service: RunningService;
  const scratch = scratchDir("anchorage-revocation-");

  let intermediateId: string;
  let intermediatePem: string;
  let rootId: string;
  /** Two leaves for two identities: A is revoked first, B stays valid until late in the file. */
  let leafA: Issued;
  let leafB: Issued;
  /** The first revocation of leaf A as the mutation returned it. */
  let firstRevocation: Revoked;
  /** The intermediate's CRL fetched right after leaf A was revoked. */
  let crlAfterFirst: Buffer;
  /** Every serial revoked so far (none has been on a scheduled CRL after its expiry yet): each CRL from now on must list them all. */
  const revokedSerials = new Set<string>();
  /** The highest CRL number seen so far. */
  let highestCrlNumber = 0n;

  const admin = (query: string, variables?: Record<string, unknown>) => service.gql(query, variables, { bearer: service.adminKey });

  async function issueLeaf(name: string, ttlSeconds?: number): Promise<Issued> {
    const spiffeId = spiffe(`ns/revocation/sa/${name}`);
    const token = await admin(CREATE_TOKEN, { input: { spiffeId } });
    expect(token.body.errors, JSON.stringify(token.body.errors)).toBeUndefined();
    const { csrPem } = makeCsr({ spiffeId });
    const input = { csr: csrPem, token: token.body.data.createEnrollmentToken.token, ...(ttlSeconds ? { ttlSeconds } : {}) };
    const response = await service.gql(ISSUE, { input });
    expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
    return response.body.data.issueCertificate as Issued;
  }

  async function revokeOk(serial: string, reason?: string): Promise<Revoked> {
    const response = await admin(REVOKE, { input: { serial, ...(reason ? { reason } : {}) } });
    expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
    const revoked = response.body.data.revokeCertificate as Revoked;
    expect(revoked.status).toBe("REVOKED");
    revokedSerials.add(serial);
    return revoked;
  }

  async function fetchCrl(authorityId = intermediateId): Promise<Buffer> {
    const response = await service.http(`/crl/${authorityId}.crl`);
    expect(response.status, response.body.toString("utf8")).toBe(200);
    expect(response.headers["content-type"]).toBe("application/pkix-crl");
    return response.body;
  }

  /** The current intermediate CRL, parsed, checked to list every serial revoked so far and to number up. */
  async function currentCrl(): Promise<ParsedCrl> {
    const crl = parseCrl(await fetchCrl());
    for (const serial of revokedSerials) expect(crl.entries.has(serialKey(serial)), `CRL ${crl.crlNumber} lacks ${serial}`).toBe(true);
    expect(crl.crlNumber).toBeGreaterThanOrEqual(highestCrlNumber);
    highestCrlNumber = crl.crlNumber;
    return crl;
  }

  const revokedAtOf = (serial: string): unknown => service.sqlValue("SELECT revoked_at FROM certificates WHERE serial = ?", serial);

  beforeAll(async () => {
    first = await startService({ env: { ANCHORAGE_TRUST_DOMAIN: TRUST_DOMAIN } });
    service = first;
    const authorities = await service.gql(AUTHORITIES);
    expect(authorities.body.errors).toBeUndefined();
    const list = authorities.body.data.authorities as { id: string; kind: string; status: string; certificatePem: string }[];
    const intermediate = list.find((authority) => authority.kind === "INTERMEDIATE" && authority.status === "ACTIVE");
    const root = list.find((authority) => authority.kind === "ROOT");
    expect(intermediate).toBeDefined();
    expect(root).toBeDefined();
    intermediateId = intermediate?.id as string;
    intermediatePem = intermediate?.certificatePem as string;
    rootId = root?.id as string;
    leafA = await issueLeaf("alpha");
    leafB = await issueLeaf("bravo");
  }, 90_000);

  afterAll(async () => {
    scratch.remove();
    if (service && service !== first) await service.stop();
    if (first) await first.cleanup();
  }, 40_000);

  it("revokes a certificate once: REVOKED with time and reason, audited; revoking again keeps the first and audits nothing", async () => {
    // The leaves name the active intermediate as their issuer (AKI), the id the CRL is published under.
    const leafText = openssl(["x509", "-noout", "-text"], leafA.certificatePem);
    const aki = /X509v3 Authority Key Identifier:\s*\n\s*(?:keyid:)?([0-9A-Fa-f:]+)/.exec(leafText.stdout);
    expect(aki?.[1]?.replace(/:/g, "").toLowerCase()).toBe(intermediateId);

    const auditBefore = service.countAuditEvents("certificate.revoked");
    expect(revokedAtOf(leafA.serial)).toBeNull();
    const before = Date.now();
    firstRevocation = await revokeOk(leafA.serial, "KEY_COMPROMISE");
    // No waiting: the CRL is rebuilt before the mutation returns.
    crlAfterFirst = await fetchCrl();
    const after = Date.now();

    expect(firstRevocation).toMatchObject({ serial: leafA.serial, status: "REVOKED", revocationReason: "KEY_COMPROMISE", issuerId: intermediateId });
    const revokedAt = new Date(firstRevocation.revokedAt as string).getTime();
    expect(revokedAt).toBeGreaterThanOrEqual(before - 1000);
    expect(revokedAt).toBeLessThanOrEqual(after + 1000);
    expect(revokedAtOf(leafA.serial)).toBe(revokedAt);
    expect(service.countAuditEvents("certificate.revoked")).toBe(auditBefore + 1);
    expect(service.sqlValue("SELECT count(*) FROM audit_events WHERE type = 'certificate.revoked' AND subject = ?", leafA.serial)).toBe(1);
    expect(parseCrl(crlAfterFirst).entries.has(serialKey(leafA.serial))).toBe(true);

    // The other leaf is untouched.
    expect(revokedAtOf(leafB.serial)).toBeNull();
    const other = await admin(`query ($serial: String!) { certificate(serial: $serial) { status revokedAt revocationReason } }`, { serial: leafB.serial });
    expect(other.body.data.certificate).toEqual({ status: "VALID", revokedAt: null, revocationReason: null });

    // Idempotent: a second revocation with another reason returns the first time and reason.
    const again = await revokeOk(leafA.serial, "SUPERSEDED");
    expect(again).toEqual(firstRevocation);
    expect(service.sqlValue("SELECT revocation_reason FROM certificates WHERE serial = ?", leafA.serial)).toBe("KEY_COMPROMISE");
    expect(revokedAtOf(leafA.serial)).toBe(revokedAt);
    expect(service.countAuditEvents("certificate.revoked")).toBe(auditBefore + 1);
  });

  it("refuses unknown and malformed serials, anonymous callers and auditors, revoking nothing", async () => {
    const auditBefore = service.countAuditEvents("certificate.revoked");
    const createKey = await admin(`mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) { key role } }`, {
      input: { name: "revocation auditor", role: "AUDITOR" },
    });
    expect(createKey.body.errors).toBeUndefined();
    expect(createKey.body.data.createApiKey.role).toBe("AUDITOR");
    const auditorKey = createKey.body.data.createApiKey.key as string;

    const cases: { name: string; send: () => Promise<GqlResponse>; code: string }[] = [
      { name: "unknown serial", send: () => admin(REVOKE, { input: { serial: randomBytes(16).toString("hex"), reason: "KEY_COMPROMISE" } }), code: "NOT_FOUND" },
      { name: "malformed serial", send: () => admin(REVOKE, { input: { serial: "xyz", reason: "KEY_COMPROMISE" } }), code: "BAD_USER_INPUT" },
      { name: "no API key", send: () => service.gql(REVOKE, { input: { serial: leafB.serial, reason: "KEY_COMPROMISE" } }), code: "UNAUTHENTICATED" },
      {
        name: "auditor key",
        send: () => service.gql(REVOKE, { input: { serial: leafB.serial, reason: "KEY_COMPROMISE" } }, { bearer: auditorKey }),
        code: "FORBIDDEN",
      },
    ];
    for (const { name, send, code } of cases) {
      const error = refusal(await send());
      expect(error.code, `${name}: ${error.message}`).toBe(code);
      expect(revokedAtOf(leafB.serial), name).toBeNull();
      expect(service.countAuditEvents("certificate.revoked"), name).toBe(auditBefore);
    }
    const crl = await currentCrl();
    expect(crl.entries.has(serialKey(leafB.serial))).toBe(false);
  });

  // certificateHold is not a RevocationReason: the client's error, BAD_USER_INPUT like every other refusal of
  // a bad request, whether the value is written into the document (refused by validation) or sent as a
  // variable (refused by variable coercion, where graphql-js wraps the enum's error in another GraphQLError).
  it.each([
    {
      form: "written in the document",
      send: (serial: string) => admin(`mutation { revokeCertificate(input: { serial: "${serial}", reason: CERTIFICATE_HOLD }) { serial status } }`),
    },
    {
      form: "sent as a variable",
      send: (serial: string) => admin(REVOKE, { input: { serial, reason: "CERTIFICATE_HOLD" } }),
    },
  ])("refuses the reason CERTIFICATE_HOLD $form with BAD_USER_INPUT, revoking nothing", async ({ send }) => {
    const auditBefore = service.countAuditEvents("certificate.revoked");
    const error = refusal(await send(leafB.serial));
    expect(revokedAtOf(leafB.serial)).toBeNull();
    expect(service.countAuditEvents("certificate.revoked")).toBe(auditBefore);
    expect(error.code, error.message).toBe("BAD_USER_INPUT");
    expect(error.message).toMatch(/CERTIFICATE_HOLD/);
  });

  it("publishes the intermediate's CRL, signed by it, listing the revoked serial with its reason, valid for 24 hours", async () => {
    const der = await fetchCrl();
    // Nothing was revoked since: the very CRL built before the first mutation returned, served from storage.
    expect(der.equals(crlAfterFirst)).toBe(true);

    const rootFile = scratch.file("root.pem", service.rootPem);
    const caFile = scratch.file("root-and-intermediate.pem", service.rootPem + intermediatePem);
    const crlFile = scratch.file("intermediate.crl", der);
    const verified = openssl(["crl", "-inform", "DER", "-in", crlFile, "-CAfile", caFile, "-verify", "-noout"]);
    expect(verified.status, verified.stdout + verified.stderr).toBe(0);
    expect(verified.stdout + verified.stderr).toMatch(/verify OK/);
    // Control: the root did not sign it, so against the root alone it does not verify.
    const wrongCa = openssl(["crl", "-inform", "DER", "-in", crlFile, "-CAfile", rootFile, "-verify", "-noout"]);
    expect(wrongCa.stdout + wrongCa.stderr).not.toMatch(/verify OK/);

    const crl = parseCrl(der);
    expect(crl.text).toContain(leafA.serial.replace(/^0+/, "").toUpperCase());
    const entry = crl.entries.get(serialKey(leafA.serial));
    expect(entry).toBeDefined();
    expect(entry?.reason).toBe("Key Compromise");
    expect(entry?.revocationDate.getTime()).toBe(Math.floor(new Date(firstRevocation.revokedAt as string).getTime() / 1000) * 1000);
    expect([...crl.entries.keys()]).toEqual([serialKey(leafA.serial)]);
    expect(crl.crlNumber).toBeGreaterThan(0n);
    expect(crl.authorityKeyId).toBe(intermediateId);
    expect(Math.abs(crl.nextUpdate.getTime() - crl.lastUpdate.getTime() - DAY_MS)).toBeLessThanOrEqual(5 * 60_000);
    expect(Math.abs(crl.lastUpdate.getTime() - new Date(firstRevocation.revokedAt as string).getTime())).toBeLessThanOrEqual(60_000);
    highestCrlNumber = crl.crlNumber > highestCrlNumber ? crl.crlNumber : highestCrlNumber;
  });

  it("makes openssl verify -crl_check_all reject the revoked leaf and accept the other", async () => {
    const rootCrl = await fetchCrl(rootId);
    const intermediateCrl = await fetchCrl();
    const rootFile = scratch.file("verify-root.pem", service.rootPem);
    const crls = scratch.file("crls.pem", crlToPem(intermediateCrl) + crlToPem(rootCrl));
    const verify = (leaf: Issued, name: string, crlFile = crls) => {
      const chain = scratch.file(`${name}-chain.pem`, leaf.chainPem);
      const leafFile = scratch.file(`${name}-leaf.pem`, leaf.certificatePem);
      const result = openssl(["verify", "-crl_check_all", "-CAfile", rootFile, "-untrusted", chain, "-CRLfile", crlFile, leafFile]);
      return { status: result.status, output: result.stdout + result.stderr };
    };

    const revoked = verify(leafA, "alpha");
    expect(revoked.status, revoked.output).not.toBe(0);
    expect(revoked.output).toMatch(/certificate revoked/);

    const valid = verify(leafB, "bravo");
    expect(valid.status, valid.output).toBe(0);
    expect(valid.output.trim()).toMatch(/: OK$/);

    // Control: without the intermediate's CRL the check cannot pass, so the pass above used it.
    const withoutIntermediateCrl = verify(leafB, "bravo-no-crl", scratch.file("root-crl-only.pem", crlToPem(rootCrl)));
    expect(withoutIntermediateCrl.status, withoutIntermediateCrl.output).not.toBe(0);
    expect(withoutIntermediateCrl.output).toMatch(/unable to get certificate CRL/);
  });

  it("numbers CRLs upwards with each revocation and serves the stored CRL unchanged between revocations", async () => {
    const before = await currentCrl();
    const revoked = await revokeOk(leafB.serial, "AFFILIATION_CHANGED");
    expect(revoked.revocationReason).toBe("AFFILIATION_CHANGED");

    const after = await currentCrl();
    expect(after.crlNumber).toBeGreaterThan(before.crlNumber);
    expect(after.entries.get(serialKey(leafA.serial))?.reason).toBe("Key Compromise");
    expect(after.entries.get(serialKey(leafB.serial))?.reason).toBe("Affiliation Changed");
    expect(after.entries.size).toBe(2);
    expect(service.sqlValue("SELECT last_number FROM crl_counters WHERE authority_id = ?", intermediateId)).toBe(Number(after.crlNumber));

    // Not re-signed per request: the same bytes twice.
    const again = await fetchCrl();
    expect(again.equals(after.der)).toBe(true);
  });

  it("keeps numbering upwards across a restart on the same data folder", async () => {
    const beforeStop = await currentCrl();
    const highestBeforeRestart = highestCrlNumber;
    const code = await service.stop();
    expect(code).toBe(0);
    service = await startService({ dataDir: first.dataDir, env: { ANCHORAGE_TRUST_DOMAIN: TRUST_DOMAIN } });

    // Still fresh, so the restarted service serves the stored CRL rather than signing another.
    const afterStart = await fetchCrl();
    expect(afterStart.equals(beforeStop.der)).toBe(true);

    const leafC = await issueLeaf("charlie");
    await revokeOk(leafC.serial, "PRIVILEGE_WITHDRAWN");
    const crl = await currentCrl();
    expect(crl.crlNumber).toBeGreaterThan(highestBeforeRestart);
    expect(crl.entries.get(serialKey(leafC.serial))?.reason).toBe("Privilege Withdrawn");
    expect(crl.entries.size).toBe(3);
  }, 60_000);

  it("keeps an expired revoked certificate on a CRL made for a revocation: only a scheduled one after its expiry may drop it", async () => {
    const shortLived = await issueLeaf("short-lived", 60);
    expect(new Date(shortLived.notAfter).getTime() - Date.now()).toBeLessThanOrEqual(61_000);
    await revokeOk(shortLived.serial, "CESSATION_OF_OPERATION");
    const listed = await currentCrl();
    expect(listed.entries.get(serialKey(shortLived.serial))?.reason).toBe("Cessation Of Operation");

    // Simulated expiry: waiting out even a 60-second certificate would slow the file down, so its notAfter
    // is moved into the past in the database (a second, read-write connection next to the running service;
    // WAL lets it write). The certificate's own bytes keep the real notAfter; the CRL builder goes by the
    // database, which is all this test needs to exercise.
    const db = new Database(join(service.dataDir, "anchorage.db"), { fileMustExist: true, timeout: 10_000 });
    try {
      const changed = db.prepare("UPDATE certificates SET not_after = ? WHERE serial = ?").run(Date.now() - 60_000, shortLived.serial);
      expect(changed.changes).toBe(1);
    } finally {
      db.close();
    }

    // Another revocation triggers an out-of-cycle rebuild: issued after the expiry, but not a scheduled CRL
    // (RFC 5280 §3.3), so the expired entry is still there, with every other one.
    const leafD = await issueLeaf("delta");
    await revokeOk(leafD.serial, "SUPERSEDED");
    const crl = await currentCrl();
    expect(crl.crlNumber).toBeGreaterThan(listed.crlNumber);
    expect(crl.entries.get(serialKey(shortLived.serial))?.reason).toBe("Cessation Of Operation");
    expect([...crl.entries.keys()].sort()).toEqual([...revokedSerials].map(serialKey).sort());
    expect(crl.entries.get(serialKey(leafD.serial))?.reason).toBe("Superseded");
  });

  it("lists every one of 10 parallel revocations, each in the CRL by the time its mutation returns", async () => {
    const spiffeId = spiffe("ns/revocation/sa/burst");
    const token = await admin(CREATE_TOKEN, { input: { spiffeId, uses: 10 } });
    expect(token.body.errors, JSON.stringify(token.body.errors)).toBeUndefined();
    const inputs = Array.from({ length: 10 }, () => ({ csr: makeCsr({ spiffeId }).csrPem, token: token.body.data.createEnrollmentToken.token }));
    const batch = await service.gql(ISSUE_BATCH, { inputs });
    expect(batch.body.errors, JSON.stringify(batch.body.errors)).toBeUndefined();
    const results = batch.body.data.issueCertificates as { certificate: Issued | null; error: unknown }[];
    expect(results.map((result) => result.error)).toEqual(Array(10).fill(null));
    const serials = results.map((result) => (result.certificate as Issued).serial);

    const before = await currentCrl();
    const auditBefore = service.countAuditEvents("certificate.revoked");
    // Each mutation's own CRL fetch happens as soon as that mutation returns, while others may still run.
    const seen = await Promise.all(
      serials.map(async (serial) => {
        const response = await admin(REVOKE, { input: { serial, reason: "KEY_COMPROMISE" } });
        const crl = await fetchCrl();
        return { serial, response, crl };
      }),
    );
    for (const { serial, response, crl } of seen) {
      expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
      expect(response.body.data.revokeCertificate).toMatchObject({ serial, status: "REVOKED", revocationReason: "KEY_COMPROMISE" });
      expect(parseCrl(crl).entries.has(serialKey(serial)), `${serial} missing from the CRL fetched after its revocation`).toBe(true);
      revokedSerials.add(serial);
    }
    expect(service.countAuditEvents("certificate.revoked")).toBe(auditBefore + 10);

    const after = await currentCrl();
    expect(after.crlNumber).toBeGreaterThan(before.crlNumber);
    for (const serial of serials) expect(after.entries.get(serialKey(serial))?.reason).toBe("Key Compromise");
    expect([...after.entries.keys()].sort()).toEqual([...revokedSerials].map(serialKey).sort());
  });

  it("answers 404 for unknown authorities and paths that try to leave /crl", async () => {
    for (const path of [
      `/crl/${randomBytes(20).toString("hex")}.crl`,
      `/crl/${"0".repeat(40)}.crl`,
      "/crl/../etc/passwd",
      "/crl/..%2f..%2fetc%2fpasswd",
      "/crl/%2e%2e/%2e%2e/etc/passwd.crl",
    ]) {
      const response = await service.http(path);
      expect(response.status, path).toBe(404);
      expect(response.body.toString("utf8"), path).not.toMatch(/root:/);
    }
    // Controls: the known authorities are served on the same listener.
    expect((await service.http(`/crl/${intermediateId}.crl`)).status).toBe(200);
    expect((await service.http(`/crl/${rootId}.crl`)).status).toBe(200);
  });
});
