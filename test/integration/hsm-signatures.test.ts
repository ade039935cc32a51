/**
 * What the online token signs, counted by an outside witness: OpenSC's pkcs11-spy sits between the real
 * service and SoftHSM and logs every PKCS#11 call, so the C_Sign lines in its log are the signatures made.
 *
 * - Unauthenticated requests do not spend signatures at their own rate: /readyz serves a health result
 *   probed in the background, and OCSP requests that would be signed on arrival (a nonce, several CertIDs,
 *   an unknown serial) draw on a global budget; over it, a nonce is ignored in favour of the pre-signed
 *   response, and the rest get tryLater.
 * - Every certificate a key of ours signs is in the ledger: the delegated OCSP responder certificate has its
 *   row in the history, its audit events and its transparency-log leaf.
 *
 * One service for the whole file.
 */
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { Agent, request as httpRequest } from "node:http";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeCsr, openssl, requireTools, scratchDir, startService, type RunningService } from "../support/service.js";

const SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so";
const SPY_MODULES = ["/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so", "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so", "/usr/lib/pkcs11/pkcs11-spy.so"];

const missing = requireTools(["softhsm2-util", "openssl"]);
const spyModule = SPY_MODULES.find((path) => existsSync(path));

const TRUST_DOMAIN = "anchorage.test";
const CREATE_TOKEN = `mutation ($input: CreateEnrollmentTokenInput!) { createEnrollmentToken(input: $input) { id token } }`;
const ISSUE = `mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { serial certificatePem chainPem } }`;
const AUTHORITIES = "{ authorities { id kind status certificatePem } }";

/** The budget the service runs with here: a burst, then this many on-request OCSP signatures a second. */
const SIGNING_BURST = 10;
const SIGNING_PER_SECOND = 2;
const READINESS_INTERVAL_MS = 1000;

/** OCSPResponse { responseStatus tryLater(3) }. */
const TRY_LATER = Buffer.from("30030a0103", "hex");
/** No single answer may take longer than this (a probe that waits out a database lock would). */
const QUICK_MS = 5_000;

describe.skipIf(missing !== undefined)(`HSM signatures of the running service${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let service: RunningService;
  /** Every service this file started, the first (which owns the data folder) first. */
  const services: RunningService[] = [];
  const scratch = scratchDir("anchorage-hsm-signatures-");
  const spyLog = scratch.file("pkcs11-spy.log");
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  let intermediateFile: string;
  let knownSerial: string;

  const admin = (query: string, variables?: Record<string, unknown>) => service.gql(query, variables, { bearer: service.adminKey });

  /** C_Sign calls the token has answered so far, from the spy's log. */
  const signatures = (): number => (readFileSync(spyLog, "utf8").match(/^\d+: C_Sign\r?$/gm) ?? []).length;

  function post(path: string, body?: Buffer, timeoutMs = QUICK_MS): Promise<{ status: number; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const request = httpRequest(
        {
          host: "127.0.0.1",
          port: service.httpPort,
          path,
          method: body ? "POST" : "GET",
          agent,
          headers: body ? { "content-type": "application/ocsp-request", "content-length": String(body.length) } : {},
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("error", reject);
          response.on("end", () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks) }));
        },
      );
      request.setTimeout(timeoutMs, () => request.destroy(new Error(`no answer to ${path} within ${timeoutMs} ms`)));
      request.on("error", reject);
      request.end(body);
    });
  }

  /** Runs `work` over `count` indexes, `concurrency` at a time. */
  async function inParallel<T>(count: number, concurrency: number, work: (index: number) => Promise<T>): Promise<T[]> {
    const results: T[] = new Array(count);
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        for (let index = next++; index < count; index = next++) results[index] = await work(index);
      }),
    );
    return results;
  }

  /** A DER OCSP request written by openssl (no network). */
  function ocspRequest(name: string, args: readonly string[]): Buffer {
    const out = scratch.file(name);
    const result = openssl(["ocsp", "-issuer", intermediateFile, ...args, "-reqout", out]);
    expect(result.status, result.stderr).toBe(0);
    return readFileSync(out);
  }

  async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!(await condition())) {
      if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  const serviceEnvironment = (): Record<string, string> => ({
    ANCHORAGE_PKCS11_MODULE: spyModule ?? "",
    PKCS11SPY: SOFTHSM_MODULE,
    PKCS11SPY_OUTPUT: spyLog,
    ANCHORAGE_OCSP_SIGNING_BUDGET: String(SIGNING_PER_SECOND),
    ANCHORAGE_OCSP_SIGNING_BURST: String(SIGNING_BURST),
    ANCHORAGE_READINESS_INTERVAL_MS: String(READINESS_INTERVAL_MS),
    // Sequenced once at start (the responder and service certificates); no later round may wait out
    // the database lock the readiness test takes.
    ANCHORAGE_LOG_INTERVAL_MS: "3600000",
  });

  beforeAll(async () => {
    if (!spyModule) throw new Error("pkcs11-spy.so (package opensc) is required for this test");
    service = await startService({ env: serviceEnvironment() });
    services.push(service);

    const authorities = await admin(AUTHORITIES);
    const intermediate = (authorities.body.data.authorities as { kind: string; status: string; certificatePem: string }[]).find(
      (authority) => authority.kind.toLowerCase() === "intermediate" && authority.status.toLowerCase() === "active",
    );
    intermediateFile = scratch.file("intermediate.pem", intermediate?.certificatePem ?? "");

    const spiffeId = `spiffe://${TRUST_DOMAIN}/ns/hsm/sa/budget`;
    const token = await admin(CREATE_TOKEN, { input: { spiffeId } });
    expect(token.body.errors, JSON.stringify(token.body.errors)).toBeUndefined();
    const issued = await service.gql(ISSUE, { input: { csr: makeCsr({ spiffeId }).csrPem, token: token.body.data.createEnrollmentToken.token } });
    expect(issued.body.errors, JSON.stringify(issued.body.errors)).toBeUndefined();
    knownSerial = issued.body.data.issueCertificate.serial as string;
    await waitFor("the pre-signed OCSP response", () => service.sqlValue("SELECT count(*) FROM ocsp_responses WHERE serial = ?", knownSerial) === 1);
  }, 120_000);

  afterAll(async () => {
    agent.destroy();
    for (const running of services.reverse()) await running.cleanup();
    scratch.remove();
  });

  it("answers 500 /readyz requests from a cached probe: a couple of signatures, not one each", async () => {
    const before = signatures();
    const started = performance.now();
    const answers = await inParallel(500, 10, () => post("/readyz"));
    const elapsedMs = performance.now() - started;
    expect(answers.every((answer) => answer.status === 200)).toBe(true);
    expect(JSON.parse(answers[0]?.body.toString("utf8") ?? "{}")).toMatchObject({ status: "ready", database: true, hsm: true });
    // One probe per interval at most, plus the one that may be under way as the burst starts.
    expect(signatures() - before).toBeLessThanOrEqual(Math.ceil(elapsedMs / READINESS_INTERVAL_MS) + 2);
  });

  it("reports not ready while another process holds the database's write lock, and ready again once it lets go", async () => {
    const db = new Database(join(service.dataDir, "anchorage.db"), { fileMustExist: true });
    try {
      // A probe that waited out the lock would leave every answer hanging; one slow answer (another of the
      // service's writes waiting for the lock) is tolerated, an answer never coming within the deadline is not.
      const answerWithin = async (path: string) => post(path).catch(() => undefined);
      db.exec("BEGIN IMMEDIATE");
      await waitFor("/readyz to report the database unavailable", async () => {
        const answer = await answerWithin("/readyz");
        return answer?.status === 503 && JSON.parse(answer.body.toString("utf8")).database === false;
      });
      db.exec("ROLLBACK");
      await waitFor("/readyz to report ready again", async () => (await answerWithin("/readyz"))?.status === 200);
    } finally {
      if (db.inTransaction) db.exec("ROLLBACK");
      db.close();
    }
  });

  it("spends at most the OCSP signing budget on 2,000 requests that would each be signed on arrival", async () => {
    const withNonce = ocspRequest("nonce.der", ["-serial", `0x${knownSerial}`]);
    const severalCertIds = ocspRequest("several.der", ["-no_nonce", "-serial", `0x${knownSerial}`, "-serial", "0x0badc0de"]);
    const unknownSerial = ocspRequest("unknown.der", ["-no_nonce", "-serial", "0x0badc0de"]);
    const kinds = [withNonce, severalCertIds, unknownSerial] as const;
    const preSigned = service.sqlValue(
      "SELECT der FROM ocsp_responses WHERE serial = ? AND hash_algorithm = 'sha1'",
      knownSerial,
    ) as Buffer;

    const before = signatures();
    const started = performance.now();
    const answers = await inParallel(2000, 16, (index) => post("/ocsp", kinds[index % kinds.length]));
    const elapsedSeconds = (performance.now() - started) / 1000;
    const made = signatures() - before;

    const budget = SIGNING_BURST + Math.ceil(elapsedSeconds * SIGNING_PER_SECOND);
    const readinessProbes = Math.ceil((elapsedSeconds * 1000) / READINESS_INTERVAL_MS) + 1;
    expect(made).toBeLessThanOrEqual(budget + readinessProbes);
    expect(answers.every((answer) => answer.status === 200)).toBe(true);
    // Over the budget a nonce is ignored (RFC 8954): the pre-signed response, byte for byte.
    const nonceAnswers = answers.filter((_, index) => index % kinds.length === 0);
    expect(nonceAnswers.filter((answer) => answer.body.equals(preSigned)).length).toBeGreaterThanOrEqual(nonceAnswers.length - budget);
    // What has no pre-signed response is refused for now.
    const others = answers.filter((_, index) => index % kinds.length !== 0);
    expect(others.filter((answer) => answer.body.equals(TRY_LATER)).length).toBeGreaterThanOrEqual(others.length - budget);
  });

  it("records the delegated OCSP responder certificate like any certificate: history, audit events, log leaf", async () => {
    const der = service.sqlValue("SELECT certificate_der FROM ocsp_signers ORDER BY created_at LIMIT 1") as Buffer;
    const certificate = new X509Certificate(der);
    const serial = certificate.serialNumber.toLowerCase();
    const history = await admin(`query ($serial: String!) { certificate(serial: $serial) { serial fingerprintSha256 requester profile } }`, { serial });
    expect(history.body.errors, JSON.stringify(history.body.errors)).toBeUndefined();
    expect(history.body.data.certificate).toEqual({
      serial,
      fingerprintSha256: certificate.fingerprint256.replaceAll(":", "").toLowerCase(),
      requester: "system:ocsp-responder",
      profile: "OCSP_RESPONDER",
    });
    const listed = await admin(`query ($serial: String!) { certificates(filter: { serial: $serial }) { edges { node { serial } } } }`, { serial });
    expect(listed.body.errors, JSON.stringify(listed.body.errors)).toBeUndefined();
    expect(listed.body.data.certificates.edges).toHaveLength(1);
    expect(service.sqlValue("SELECT count(*) FROM audit_events WHERE subject = ? AND type IN ('issuance.prepared', 'issuance.signed')", serial)).toBe(2);
    const proof = await admin(`query ($serial: String!) { inclusionProof(serial: $serial) { leafIndex entry } }`, { serial });
    expect(proof.body.errors, JSON.stringify(proof.body.errors)).toBeUndefined();
    expect(JSON.parse(proof.body.data.inclusionProof.entry)).toMatchObject({ kind: "certificate", serial, certificate: der.toString("base64") });
  });

  it("records a responder certificate signed before responder certificates went through the ledger when it is loaded", async () => {
    const der = service.sqlValue("SELECT certificate_der FROM ocsp_signers ORDER BY created_at LIMIT 1") as Buffer;
    const serial = new X509Certificate(der).serialNumber.toLowerCase();
    expect(await service.stop()).toBe(0);
    // A data folder from before: the responder certificate has no row in the ledger.
    const db = new Database(join(service.dataDir, "anchorage.db"), { fileMustExist: true });
    try {
      expect(db.prepare("DELETE FROM certificates WHERE serial = ?").run(serial).changes).toBe(1);
    } finally {
      db.close();
    }
    service = await startService({ dataDir: service.dataDir, env: serviceEnvironment() });
    services.push(service);
    const history = await admin(`query ($serial: String!) { certificate(serial: $serial) { serial requester } }`, { serial });
    expect(history.body.errors, JSON.stringify(history.body.errors)).toBeUndefined();
    expect(history.body.data.certificate).toEqual({ serial, requester: "system:ocsp-responder" });
    const recorded = service.sqlValue("SELECT details FROM audit_events WHERE subject = ? AND type = 'issuance.signed' ORDER BY sequence DESC LIMIT 1", serial) as string;
    expect(JSON.parse(recorded)).toMatchObject({ profile: "ocsp-responder", signedAt: expect.any(String) });
  }, 120_000);
});
