/**
 * OCSP end to end against the real service (child process, SoftHSM, SQLite file), judged by `openssl ocsp`:
 * good / revoked / unknown answers with and without a nonce, SHA-1 and SHA-256 CertIDs, the RFC 5019 GET form
 * with its caching headers, pre-signed responses served from storage and replaced on revocation, refusals of
 * bad input that leave the responder serving, and the delegated responder certificate.
 *
 * One service for the whole file; the tests run in order and build on what earlier ones revoked.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeCsr, requireTools, openssl, scratchDir, startService, type RunningService } from "../support/service.js";

const missing = requireTools(["softhsm2-util", "openssl"]);

const TRUST_DOMAIN = "anchorage.test";
const spiffe = (path: string): string => `spiffe://${TRUST_DOMAIN}/${path}`;

const CREATE_TOKEN = `mutation ($input: CreateEnrollmentTokenInput!) { createEnrollmentToken(input: $input) { id token } }`;
const ISSUE = `mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { serial certificatePem chainPem } }`;
const REVOKE = `mutation ($input: RevokeCertificateInput!) {
  revokeCertificate(input: $input) { serial status revokedAt revocationReason issuerId }
}`;
const AUTHORITIES = "{ authorities { id kind status certificatePem } }";

/** OCSPResponse { responseStatus malformedRequest(1) } and { unauthorized(6) }. */
const MALFORMED = Buffer.from("30030a0101", "hex");
const UNAUTHORIZED = Buffer.from("30030a0106", "hex");
/** Every refusal must come back well within this. */
const QUICK_MS = 5_000;

interface Issued {
  serial: string;
  certificatePem: string;
  chainPem: string;
}

interface HttpResult {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

describe.skipIf(missing !== undefined)(`OCSP through the running service${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let service: RunningService;
  const scratch = scratchDir("anchorage-ocsp-");
  let url: string;
  let good: Issued;
  let revoked: Issued;
  let second: Issued;
  let rootFile: string;
  let chainFile: string;
  let casFile: string;
  let goodFile: string;
  let revokedFile: string;
  let secondFile: string;

  const admin = (query: string, variables?: Record<string, unknown>) => service.gql(query, variables, { bearer: service.adminKey });

  async function issueLeaf(name: string): Promise<Issued> {
    const spiffeId = spiffe(`ns/ocsp/sa/${name}`);
    const token = await admin(CREATE_TOKEN, { input: { spiffeId } });
    expect(token.body.errors, JSON.stringify(token.body.errors)).toBeUndefined();
    const { csrPem } = makeCsr({ spiffeId });
    const response = await service.gql(ISSUE, { input: { csr: csrPem, token: token.body.data.createEnrollmentToken.token } });
    expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
    return response.body.data.issueCertificate as Issued;
  }

  async function revokeOk(serial: string, reason: string): Promise<void> {
    const response = await admin(REVOKE, { input: { serial, reason } });
    expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
    expect(response.body.data.revokeCertificate.status).toBe("REVOKED");
  }

  /** `openssl ocsp` against the service; stdout and stderr together (openssl splits its verdicts between them). */
  function ocsp(args: readonly string[]): { status: number | null; output: string } {
    const result = openssl(["ocsp", ...args]);
    return { status: result.status, output: `${result.stdout}\n${result.stderr}` };
  }

  /** A lookup that must verify against root + intermediate. */
  function lookup(args: readonly string[]): string {
    const result = ocsp(["-issuer", chainFile, ...args, "-url", url, "-CAfile", casFile, "-resp_text"]);
    expect(result.status, result.output).toBe(0);
    expect(result.output).toContain("Response verify OK");
    return result.output;
  }

  /** A DER OCSP request written by openssl (no network). */
  function makeRequest(name: string, args: readonly string[]): Buffer {
    const out = scratch.file(name);
    const result = ocsp([...args, "-reqout", out]);
    expect(result.status, result.output).toBe(0);
    return readFileSync(out);
  }

  function raw(method: string, path: string, body?: Buffer, headers: Record<string, string> = {}): Promise<HttpResult> {
    return new Promise((resolve, reject) => {
      const request = httpRequest(
        {
          host: "127.0.0.1",
          port: service.httpPort,
          path,
          method,
          agent: false,
          headers: body ? { "content-length": String(body.length), ...headers } : headers,
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("error", reject);
          response.on("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }));
        },
      );
      // The server may answer (413) before it read the whole body and close; the answer is what counts.
      request.on("error", reject);
      request.end(body);
    });
  }

  const post = (body: Buffer, contentType = "application/ocsp-request") => raw("POST", "/ocsp", body, { "content-type": contentType });

  async function timed<T>(work: () => Promise<T>): Promise<T> {
    const start = Date.now();
    const result = await work();
    expect(Date.now() - start).toBeLessThan(QUICK_MS);
    return result;
  }

  beforeAll(async () => {
    service = await startService({ env: { ANCHORAGE_TRUST_DOMAIN: TRUST_DOMAIN } });
    url = `http://127.0.0.1:${service.httpPort}/ocsp`;
    const authorities = await service.gql(AUTHORITIES);
    expect(authorities.body.errors).toBeUndefined();
    const list = authorities.body.data.authorities as { id: string; kind: string; status: string; certificatePem: string }[];
    const intermediate = list.find((authority) => authority.kind === "INTERMEDIATE" && authority.status === "ACTIVE");
    expect(intermediate).toBeDefined();
    rootFile = scratch.file("root.pem", service.rootPem);
    chainFile = scratch.file("chain.pem", intermediate?.certificatePem as string);
    casFile = scratch.file("cas.pem", service.rootPem + (intermediate?.certificatePem as string));

    good = await issueLeaf("good");
    revoked = await issueLeaf("revoked");
    second = await issueLeaf("second");
    goodFile = scratch.file("good.pem", good.certificatePem);
    revokedFile = scratch.file("revoked.pem", revoked.certificatePem);
    secondFile = scratch.file("second.pem", second.certificatePem);
  }, 90_000);

  afterAll(async () => {
    scratch.remove();
    if (service) await service.cleanup();
  }, 40_000);

  it("answers good for a valid leaf, echoing the nonce, and without a nonce", () => {
    const withNonce = ocsp(["-issuer", chainFile, "-cert", goodFile, "-url", url, "-CAfile", casFile, "-req_text", "-resp_text"]);
    expect(withNonce.status, withNonce.output).toBe(0);
    expect(withNonce.output).toContain("Response verify OK");
    expect(withNonce.output).toMatch(/good\.pem: good/);
    // The request's nonce, and the same value again in the response (openssl would also warn on a mismatch).
    const nonces = [...withNonce.output.matchAll(/OCSP Nonce:\s*\n\s*([0-9A-F]+)/g)].map((match) => match[1]);
    expect(nonces, withNonce.output).toHaveLength(2);
    expect(nonces[0]).toBe(nonces[1]);
    expect(withNonce.output).not.toMatch(/nonce verify error|WARNING: no nonce/i);

    const withoutNonce = lookup(["-cert", goodFile, "-no_nonce"]);
    expect(withoutNonce).toMatch(/good\.pem: good/);
    expect(withoutNonce).not.toMatch(/OCSP Nonce/);
  });

  it("answers revoked with keyCompromise right after the mutation returned", async () => {
    await revokeOk(revoked.serial, "KEY_COMPROMISE");
    // No waiting, and both the nonce path (signed now) and the stored no-nonce response.
    for (const extra of [[], ["-no_nonce"]]) {
      const output = lookup(["-cert", revokedFile, ...extra]);
      expect(output).toMatch(/revoked\.pem: revoked/);
      expect(output).toMatch(/Reason: keyCompromise/);
      expect(output).toMatch(/Revocation Time: .+ GMT/);
    }
  });

  it("answers unknown for a serial never issued", () => {
    const output = lookup(["-serial", "0x1234"]);
    expect(output).toMatch(/0x1234: unknown/);
  });

  it("answers SHA-256 CertIDs (-sha256 before -cert)", () => {
    const output = lookup(["-sha256", "-cert", goodFile, "-req_text"]);
    expect(output).toMatch(/good\.pem: good/);
    expect(output).toMatch(/Hash Algorithm: sha256/);
    expect(output).not.toMatch(/Hash Algorithm: sha1/);
  });

  it("serves GET requests with RFC 5019 caching headers, revalidation, and lenient path forms", async () => {
    const requestDer = makeRequest("get-req.der", ["-issuer", chainFile, "-cert", goodFile, "-no_nonce"]);
    const base64 = requestDer.toString("base64");
    const first = await raw("GET", `/ocsp/${encodeURIComponent(base64)}`);
    expect(first.status, first.body.toString()).toBe(200);
    expect(first.headers["content-type"]).toBe("application/ocsp-response");
    const maxAge = /max-age=(\d+)/.exec(first.headers["cache-control"] ?? "");
    expect(maxAge, first.headers["cache-control"]).not.toBeNull();
    expect(Number(maxAge?.[1])).toBeGreaterThan(0);
    const etag = first.headers.etag as string;
    expect(etag).toBeTruthy();
    expect(first.headers["last-modified"]).toBeTruthy();
    expect(Number.isNaN(new Date(first.headers["last-modified"] as string).getTime())).toBe(false);

    const revalidated = await raw("GET", `/ocsp/${encodeURIComponent(base64)}`, undefined, { "if-none-match": etag });
    expect(revalidated.status).toBe(304);
    expect(revalidated.body.length).toBe(0);

    // Not percent-encoded, '+' as a space (sent as %20: a bare space cannot appear in a request line), double
    // slash. The base64 is random per run, so pick a request whose base64 has a '+' (and a '/') to exercise it.
    const candidates = [goodFile, revokedFile, secondFile].flatMap((file, index) =>
      [[], ["-sha256"]].map((hash) => makeRequest(`lenient-${index}-${hash.length}.der`, ["-issuer", chainFile, ...hash, "-cert", file, "-no_nonce"])),
    );
    const lenientDer = candidates.find((der) => der.toString("base64").includes("+")) ?? requestDer;
    const lenientBase64 = lenientDer.toString("base64");
    const encodedAnswer = lenientDer === requestDer ? first : await raw("GET", `/ocsp/${encodeURIComponent(lenientBase64)}`);
    expect(encodedAnswer.status).toBe(200);
    const lenient = await raw("GET", `//ocsp/${lenientBase64.replaceAll("+", "%20")}`);
    expect(lenient.status).toBe(200);
    expect(lenient.body.equals(encodedAnswer.body)).toBe(true);
    // And with the base64 entirely raw ('+' and '/' as they are).
    const rawForm = await raw("GET", `/ocsp/${lenientBase64}`);
    expect(rawForm.status).toBe(200);
    expect(rawForm.body.equals(encodedAnswer.body)).toBe(true);

    const respFile = scratch.file("get-resp.der", first.body);
    const verified = ocsp(["-respin", respFile, "-issuer", chainFile, "-cert", goodFile, "-no_nonce", "-CAfile", casFile]);
    expect(verified.status, verified.output).toBe(0);
    expect(verified.output).toContain("Response verify OK");
    expect(verified.output).toMatch(/good\.pem: good/);
  });

  it("serves no-nonce responses from storage (identical bytes) and signs nonce requests anew", async () => {
    const plain = makeRequest("plain.der", ["-issuer", chainFile, "-cert", goodFile, "-no_nonce"]);
    const [a, b] = [await post(plain), await post(plain)];
    expect(a.status).toBe(200);
    expect(a.body.length).toBeGreaterThan(MALFORMED.length);
    expect(a.body.equals(b.body)).toBe(true);

    const nonced = makeRequest("nonced.der", ["-issuer", chainFile, "-cert", goodFile]);
    const [c, d] = [await post(nonced), await post(nonced)];
    expect(c.status).toBe(200);
    expect(c.headers["cache-control"]).toBe("no-store");
    expect(c.body.length).toBeGreaterThan(MALFORMED.length);
    expect(c.body.equals(d.body)).toBe(false);
  });

  it("replaces the stored response when the second leaf is revoked", async () => {
    const before = lookup(["-cert", secondFile, "-no_nonce"]);
    expect(before).toMatch(/second\.pem: good/);
    await revokeOk(second.serial, "SUPERSEDED");
    const after = lookup(["-cert", secondFile, "-no_nonce"]);
    expect(after).toMatch(/second\.pem: revoked/);
    expect(after).toMatch(/Reason: superseded/);
    // The SHA-256 stored response too.
    const sha256 = lookup(["-sha256", "-cert", secondFile, "-no_nonce"]);
    expect(sha256).toMatch(/second\.pem: revoked/);
  });

  it("refuses bad input quickly and keeps serving", async () => {
    const realRequest = makeRequest("real.der", ["-issuer", chainFile, "-cert", goodFile, "-no_nonce"]);

    const random = await timed(() => post(randomBytes(64)));
    expect(random.status).toBe(200);
    expect(random.body.toString("hex")).toBe(MALFORMED.toString("hex"));

    const truncated = await timed(() => post(realRequest.subarray(0, realRequest.length - 7)));
    expect(truncated.body.toString("hex")).toBe(MALFORMED.toString("hex"));

    const serials = Array.from({ length: 20 }, (_, index) => ["-serial", String(index + 1)]).flat();
    const many = makeRequest("many.der", ["-issuer", chainFile, ...serials, "-no_nonce"]);
    const tooMany = await timed(() => post(many));
    expect(tooMany.body.toString("hex")).toBe(MALFORMED.toString("hex"));

    const wrongType = await timed(() => post(realRequest, "text/plain"));
    expect(wrongType.status).toBe(415);

    const huge = await timed(() => post(randomBytes(100 * 1024)));
    expect(huge.status).toBe(413);

    const foreign = makeRequest("foreign.der", ["-issuer", rootFile, "-cert", chainFile, "-no_nonce"]);
    const unauthorized = await timed(() => post(foreign));
    expect(unauthorized.body.toString("hex")).toBe(UNAUTHORIZED.toString("hex"));

    const badBase64 = await timed(() => raw("GET", "/ocsp/%%%not-base64!!"));
    if (badBase64.status === 200) expect(badBase64.body.toString("hex")).toBe(MALFORMED.toString("hex"));
    else expect(badBase64.status).toBe(400);
    const junkBase64 = await timed(() => raw("GET", "/ocsp/AAAA$$$$"));
    if (junkBase64.status === 200) expect(junkBase64.body.toString("hex")).toBe(MALFORMED.toString("hex"));
    else expect(junkBase64.status).toBe(400);

    // Still serving.
    expect(lookup(["-cert", goodFile])).toMatch(/good\.pem: good/);
  });

  it("signs with a delegated responder certificate carrying OCSP Signing and OCSP No Check", () => {
    const output = lookup(["-cert", goodFile, "-no_nonce"]);
    const pems = output.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    expect(pems, output).toHaveLength(1);
    const text = openssl(["x509", "-noout", "-text", "-ext", "extendedKeyUsage,noCheck,basicConstraints"], pems[0]);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/OCSP Signing/);
    expect(text.stdout).toMatch(/OCSP No Check/);
    expect(text.stdout).not.toMatch(/CA:TRUE/);
    // Issued by the intermediate: verifies against the chain without being a CA itself.
    const responderFile = scratch.file("responder.pem", pems[0]);
    const verify = openssl(["verify", "-CAfile", rootFile, "-untrusted", chainFile, "-purpose", "ocsphelper", responderFile]);
    expect(verify.status, verify.stdout + verify.stderr).toBe(0);
  });
});
