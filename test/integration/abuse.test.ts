/**
 * Abuse by callers without credentials, against the real service: a flood of refused issuances or bad API keys
 * adds a bounded handful of audit events (the rest are counted into one summary per address and window) while
 * OCSP keeps answering; an anonymous request runs at most one issuance field; browsers on other origins can
 * neither read answers (no CORS) nor run mutations with simple requests (CSRF prevention); introspection is
 * for admins only.
 *
 * One service for the whole file, with a per-address failure budget high enough that the flood is processed
 * rather than cut short (the limits themselves are tested in rate-limits.test.ts). The last test stops it.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { request as httpsRequest } from "node:https";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ok, refusal } from "../support/graphql.js";
import { makeCsr, requireTools, scratchDir, startService, type RunningService } from "../support/service.js";

const missing = requireTools(["softhsm2-util", "openssl"]);
const run = promisify(execFile);

const TRUST_DOMAIN = "anchorage.test";
const spiffe = (path: string): string => `spiffe://${TRUST_DOMAIN}/${path}`;
/** Refusals of one kind from one address that are recorded one by one in a window; the rest are counted. */
const INDIVIDUALLY_AUDITED = 3;
const ALIASES = 30;
const BATCH = 64;

const CREATE_TOKEN = `mutation ($input: CreateEnrollmentTokenInput!) { createEnrollmentToken(input: $input) { id token } }`;
const ISSUE = `mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { serial certificatePem chainPem } }`;
const INTROSPECTION = "{ __schema { queryType { name } } }";

describe.skipIf(missing !== undefined)(`abuse without credentials${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let service: RunningService;
  const scratch = scratchDir("anchorage-abuse-");
  let csrPem: string;

  const admin = (query: string, variables?: Record<string, unknown>) => service.gql(query, variables, { bearer: service.adminKey });

  /** One HTTPS exchange with /graphql with exactly these method, headers and body. */
  function raw(method: string, headers: Record<string, string>, body?: string, path = "/graphql"): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
    return new Promise((resolve, reject) => {
      const request = httpsRequest(
        {
          host: "127.0.0.1",
          port: service.graphqlPort,
          path,
          method,
          ca: service.rootPem,
          servername: "localhost",
          agent: false,
          headers: body === undefined ? headers : { ...headers, "content-length": String(Buffer.byteLength(body)) },
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("error", reject);
          response.on("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers, text: Buffer.concat(chunks).toString("utf8") }));
        },
      );
      request.on("error", reject);
      request.end(body);
    });
  }

  /** `issueCertificates` with BATCH items under a made-up token, `aliases` times in one operation. */
  function floodBody(aliases: number): string {
    const token = `anc_enroll_${randomBytes(32).toString("base64url")}`;
    const fields = Array.from({ length: aliases }, (_, index) => `a${index}: issueCertificates(inputs: $i) { error { code } }`);
    const inputs = Array.from({ length: BATCH }, () => ({ csr: csrPem, token }));
    return JSON.stringify({ query: `mutation ($i: [IssueCertificateInput!]!) { ${fields.join(" ")} }`, variables: { i: inputs } });
  }

  beforeAll(async () => {
    service = await startService({
      env: {
        ANCHORAGE_TRUST_DOMAIN: TRUST_DOMAIN,
        ANCHORAGE_RATE_LIMIT_FAILURES_PER_ADDRESS: "100000",
        ANCHORAGE_AUDIT_REFUSALS_PER_WINDOW: String(INDIVIDUALLY_AUDITED),
      },
    });
    csrPem = makeCsr({ spiffeId: spiffe("ns/abuse/sa/victim") }).csrPem;
  }, 90_000);

  afterAll(async () => {
    scratch.remove();
    if (service) await service.cleanup();
  }, 40_000);

  describe("unauthenticated refusals", () => {
    it("refuses an anonymous operation with more than one issuance field as a whole, before running any", async () => {
      const eventsBefore = service.countAuditEvents();
      const answer = await service.postGraphql(floodBody(ALIASES));
      expect(refusal(answer).code).toBe("BAD_USER_INPUT");
      expect(refusal(answer).message).toMatch(/one issuance field/);
      expect(service.countAuditEvents()).toBeLessThanOrEqual(eventsBefore + INDIVIDUALLY_AUDITED);
    });

    it("adds a handful of audit events for the same flood sent as single-field requests, and OCSP answers good meanwhile", async () => {
      const spiffeId = spiffe("ns/abuse/sa/bystander");
      const token = ok(await admin(CREATE_TOKEN, { input: { spiffeId } })).createEnrollmentToken;
      const issued = ok(await service.gql(ISSUE, { input: { csr: makeCsr({ spiffeId }).csrPem, token: token.token } })).issueCertificate;
      const [intermediatePem] = issued.chainPem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n?/g) as string[];
      const leafFile = scratch.file("leaf.pem", issued.certificatePem);
      const issuerFile = scratch.file("issuer.pem", intermediatePem as string);
      const casFile = scratch.file("cas.pem", service.rootPem + issued.chainPem);

      const eventsBefore = service.countAuditEvents();
      const flood = Array.from({ length: ALIASES }, () => service.postGraphql(floodBody(1), { newConnection: true }));
      const ocsp = run("openssl", ["ocsp", "-issuer", issuerFile, "-cert", leafFile, "-url", `http://127.0.0.1:${service.httpPort}/ocsp`, "-CAfile", casFile, "-resp_text"]);
      const answers = await Promise.all(flood);
      const lookup = await ocsp;

      for (const answer of answers) {
        const results = ok(answer).a0 as { error: { code: string } }[];
        expect(results).toHaveLength(BATCH);
        for (const result of results) expect(result.error.code).toBe("UNAUTHENTICATED");
      }
      expect(`${lookup.stdout}\n${lookup.stderr}`).toContain("Response verify OK");
      expect(lookup.stdout).toMatch(new RegExp(`${leafFile.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: good`));
      expect(service.countAuditEvents()).toBeLessThanOrEqual(eventsBefore + INDIVIDUALLY_AUDITED);
    }, 120_000);

    it("adds a handful of audit events for a bad API key sent again and again", async () => {
      const failuresBefore = service.countAuditEvents("authentication.failed");
      for (let attempt = 0; attempt < 40; attempt++) {
        const answer = await service.gql("{ __typename }", {}, { bearer: "anc_admin_madeup" });
        expect(answer.status).toBe(401);
        expect(refusal(answer).code).toBe("UNAUTHENTICATED");
      }
      const added = service.countAuditEvents("authentication.failed") - failuresBefore;
      expect(added).toBeGreaterThanOrEqual(1);
      expect(added).toBeLessThanOrEqual(INDIVIDUALLY_AUDITED);
    });
  });

  describe("cross-site requests", () => {
    const tokensNow = () => Number(service.sqlValue("SELECT count(*) FROM enrollment_tokens"));
    const mutation = `mutation { createEnrollmentToken(input: { spiffeId: "${spiffe("ns/abuse/sa/csrf")}" }) { id } }`;

    it("runs no mutation sent form-encoded, as text/plain, or by GET", async () => {
      const before = tokensNow();
      const authorization = `Bearer ${service.adminKey}`;
      const form = await raw("POST", { authorization, "content-type": "application/x-www-form-urlencoded" }, new URLSearchParams({ query: mutation }).toString());
      const text = await raw("POST", { authorization, "content-type": "text/plain" }, JSON.stringify({ query: mutation }));
      const multipart = await raw(
        "POST",
        { authorization, "content-type": "multipart/form-data; boundary=x" },
        `--x\r\ncontent-disposition: form-data; name="operations"\r\n\r\n${JSON.stringify({ query: mutation })}\r\n--x--\r\n`,
      );
      // Even with the CSRF header, which a cross-site page cannot send without a preflight: GET only reads.
      const get = await raw("GET", { authorization, "x-graphql-yoga-csrf": "1" }, undefined, `/graphql?${new URLSearchParams({ query: mutation }).toString()}`);
      const refused = (answer: { text: string }, reason: RegExp) => {
        const body = JSON.parse(answer.text) as { data?: unknown; errors?: { message: string }[] };
        expect(body.data, answer.text).toBeUndefined();
        expect(body.errors?.[0]?.message, answer.text).toMatch(reason);
      };
      for (const answer of [form, text, multipart]) {
        refused(answer, /CSRF/);
        expect(answer.status, answer.text).toBe(403);
      }
      refused(get, /POST/);
      expect(get.status, get.text).toBe(405);
      expect(tokensNow()).toBe(before);
      // The same mutation as JSON, the way every client of ours sends it, still runs.
      ok(await admin(mutation));
      expect(tokensNow()).toBe(before + 1);
    });

    it("grants no other origin access: no Access-Control-Allow-Origin on a preflight or an answer", async () => {
      const origin = "https://attacker.example";
      const preflight = await raw("OPTIONS", {
        origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
      });
      expect(preflight.headers["access-control-allow-origin"]).toBeUndefined();
      expect(preflight.headers["access-control-allow-credentials"]).toBeUndefined();
      const answer = await raw("POST", { origin, "content-type": "application/json" }, JSON.stringify({ query: "{ __typename }" }));
      expect(answer.status).toBe(200);
      expect(answer.headers["access-control-allow-origin"]).toBeUndefined();
    });
  });

  describe("introspection", () => {
    it("answers admins and refuses anonymous callers and auditors", async () => {
      expect(ok(await admin(INTROSPECTION)).__schema.queryType.name).toBe("Query");
      const auditor = ok(await admin(`mutation { createApiKey(input: { name: "abuse-auditor", role: AUDITOR }) { key } }`)).createApiKey.key as string;
      for (const answer of [await service.gql(INTROSPECTION), await service.gql(INTROSPECTION, {}, { bearer: auditor })]) {
        expect(answer.body.data ?? null).toBeNull();
        const errors = answer.body.errors as { message: string; extensions: { code: string } }[];
        expect(errors.length).toBeGreaterThanOrEqual(1);
        for (const error of errors) {
          expect(error.extensions.code).toBe("BAD_USER_INPUT");
          expect(error.message).toMatch(/introspection has been disabled/);
        }
      }
      // Ordinary queries that name a type are not introspection.
      expect(ok(await service.gql("{ __typename }")).__typename).toBe("Query");
    });
  });

  describe("on shutdown", () => {
    it("writes the counted refusals as one summary per address and kind, with their number", async () => {
      await service.stop();
      const counted = (type: string) =>
        Number(
          service.sqlValue(
            "SELECT coalesce(sum(json_extract(details, '$.count')), 0) FROM audit_events WHERE type = ? AND remote_address = '127.0.0.1' AND json_extract(details, '$.count') IS NOT NULL",
            type,
          ),
        );
      const summaries = (type: string) =>
        Number(service.sqlValue("SELECT count(*) FROM audit_events WHERE type = ? AND json_extract(details, '$.count') IS NOT NULL", type));
      expect(summaries("issuance.refused")).toBe(1);
      expect(counted("issuance.refused")).toBe(ALIASES * BATCH - INDIVIDUALLY_AUDITED);
      expect(summaries("authentication.failed")).toBe(1);
      expect(counted("authentication.failed")).toBe(40 - INDIVIDUALLY_AUDITED);
    }, 40_000);
  });
});
