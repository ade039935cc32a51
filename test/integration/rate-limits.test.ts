/**
 * Rate limits of the real service, configured small: issuances per credential, requests per API key, and
 * failed attempts per client address. Over a limit the answer is RATE_LIMITED with a retry hint; admins with
 * a good key are not held back by their address.
 *
 * One service for the whole file; the tests run in order (the last ones use up the address's budget).
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ok, refusal } from "../support/graphql.js";
import { makeCsr, requireTools, startService, type RunningService } from "../support/service.js";

const missing = requireTools(["softhsm2-util", "openssl"]);

const TRUST_DOMAIN = "anchorage.test";
const spiffe = (path: string): string => `spiffe://${TRUST_DOMAIN}/${path}`;
const ISSUANCES_PER_CREDENTIAL = 3;
const REQUESTS_PER_API_KEY = 10;
const FAILURES_PER_ADDRESS = 12;

const CREATE_TOKEN = `mutation ($input: CreateEnrollmentTokenInput!) { createEnrollmentToken(input: $input) { id token } }`;
const ISSUE = `mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { serial } }`;
const ISSUE_BATCH = `mutation ($inputs: [IssueCertificateInput!]!) { issueCertificates(inputs: $inputs) { certificate { serial } error { code retryAfterSeconds } } }`;

describe.skipIf(missing !== undefined)(`rate limits${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let service: RunningService;

  const admin = (query: string, variables?: Record<string, unknown>) => service.gql(query, variables, { bearer: service.adminKey });

  function expectRateLimited(answer: Awaited<ReturnType<RunningService["gql"]>>): void {
    const error = refusal(answer);
    expect(error.code).toBe("RATE_LIMITED");
    const retryAfterSeconds = answer.body.errors[0].extensions.retryAfterSeconds as number;
    expect(Number.isInteger(retryAfterSeconds) && retryAfterSeconds >= 1).toBe(true);
  }

  beforeAll(async () => {
    service = await startService({
      env: {
        ANCHORAGE_TRUST_DOMAIN: TRUST_DOMAIN,
        ANCHORAGE_RATE_LIMIT_ISSUANCES_PER_CREDENTIAL: String(ISSUANCES_PER_CREDENTIAL),
        ANCHORAGE_RATE_LIMIT_REQUESTS_PER_API_KEY: String(REQUESTS_PER_API_KEY),
        ANCHORAGE_RATE_LIMIT_FAILURES_PER_ADDRESS: String(FAILURES_PER_ADDRESS),
      },
    });
  }, 90_000);

  afterAll(async () => {
    if (service) await service.cleanup();
  }, 40_000);

  it("limits the issuances of one credential, before the CSR is looked at, and leaves other credentials alone", async () => {
    const spiffeId = spiffe("ns/limits/sa/busy");
    const busy = ok(await admin(CREATE_TOKEN, { input: { spiffeId, uses: 20 } })).createEnrollmentToken;
    const other = ok(await admin(CREATE_TOKEN, { input: { spiffeId, uses: 20 } })).createEnrollmentToken;
    const csr = () => makeCsr({ spiffeId }).csrPem;
    for (let index = 0; index < ISSUANCES_PER_CREDENTIAL; index++) ok(await service.gql(ISSUE, { input: { csr: csr(), token: busy.token } }));
    const rows = service.countCertificateRows();

    expectRateLimited(await service.gql(ISSUE, { input: { csr: "not even a CSR", token: busy.token } }));
    const batch = ok(await service.gql(ISSUE_BATCH, { inputs: [{ csr: csr(), token: busy.token }] })).issueCertificates;
    expect(batch[0].certificate).toBeNull();
    expect(batch[0].error.code).toBe("RATE_LIMITED");
    expect(batch[0].error.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(service.countCertificateRows()).toBe(rows);
    expect(service.sqlValue("SELECT uses_left FROM enrollment_tokens WHERE id = ?", busy.id)).toBe(20 - ISSUANCES_PER_CREDENTIAL);
    // The refusal names the credential that was over its limit, not an unknown one.
    const actors = service.sqlValue(
      "SELECT group_concat(DISTINCT actor) FROM audit_events WHERE type = 'issuance.refused' AND code = 'RATE_LIMITED'",
    );
    expect(actors).toBe(`token:${busy.id}`);

    ok(await service.gql(ISSUE, { input: { csr: csr(), token: other.token } }));
  });

  it("limits the requests of one API key with HTTP 429 and Retry-After", async () => {
    const auditor = ok(await admin(`mutation { createApiKey(input: { name: "limits-auditor", role: AUDITOR }) { key } }`)).createApiKey.key as string;
    for (let index = 0; index < REQUESTS_PER_API_KEY; index++) ok(await service.gql("{ __typename }", {}, { bearer: auditor }));
    const answer = await service.gql("{ __typename }", {}, { bearer: auditor });
    expect(answer.status).toBe(429);
    expect(Number(answer.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    expectRateLimited(answer);
  });

  it("limits failed attempts per client address, whatever credential each one made up, but not admins", async () => {
    const madeUp = () => `anc_enroll_${randomBytes(32).toString("base64url")}`;
    const csr = makeCsr({ spiffeId: spiffe("ns/limits/sa/guess") }).csrPem;
    let limited: Awaited<ReturnType<RunningService["gql"]>> | undefined;
    for (let attempt = 0; attempt <= FAILURES_PER_ADDRESS && !limited; attempt++) {
      const answer =
        attempt % 2 === 0
          ? await service.gql(ISSUE, { input: { csr, token: madeUp() } })
          : await service.gql("{ __typename }", {}, { bearer: `anc_admin_${randomBytes(8).toString("hex")}` });
      if (answer.status === 429) limited = answer;
      else expect(refusal(answer).code).toBe("UNAUTHENTICATED");
    }
    // The budget is spent by the attempts above (and none before): the next anonymous request is refused whole.
    limited ??= await service.gql(ISSUE, { input: { csr, token: madeUp() } });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    expectRateLimited(limited);
    expectRateLimited(await service.gql("{ __typename }"));

    expect(ok(await admin("{ __typename }")).__typename).toBe("Query");
  });
});
