/**
 * First certificates without an enrollment token (a signed JWT from a configured issuer, verified against its
 * JWKS served over real HTTP) and the side-effect-free dry run, against the real service.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { refusal, ok } from "../support/graphql.js";
import { makeCsr, openssl, requireTools, scratchDir, startService, type RunningService } from "../support/service.js";

const missing = requireTools(["softhsm2-util", "openssl"]);

const ISSUER = "https://kubernetes.default.svc.cluster.local";
const AUDIENCE = "anchorage";
const ISSUE = `mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { serial certificatePem spiffeId dnsNames } }`;
const EXPLAIN = `mutation ($input: IssueCertificateInput!) {
  explainIssuance(input: $input) { allowed refusals { rule code message } requester spiffeId dnsNames keyType certificate { issuerId notBefore notAfter ttlSeconds } }
}`;
const CREATE_TOKEN = `mutation ($input: CreateEnrollmentTokenInput!) { createEnrollmentToken(input: $input) { id token } }`;

describe.skipIf(missing !== undefined)(`JWT attestation and explainIssuance${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let service: RunningService;
  let jwks: Server;
  const scratch = scratchDir("anchorage-attestation-");
  let signingKey: CryptoKey;
  let strangerKey: CryptoKey;
  const admin = (query: string, variables?: Record<string, unknown>) => service.gql(query, variables, { bearer: service.adminKey });

  async function serviceAccountToken(
    overrides: { key?: CryptoKey; issuer?: string; audience?: string; expiresAt?: number; namespace?: string; kid?: string; jti?: string } = {},
  ): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({
      "kubernetes.io": { namespace: overrides.namespace ?? "default", serviceaccount: { name: "web", uid: "5f1c" } },
      ...(overrides.jti ? { jti: overrides.jti } : {}),
    })
      .setProtectedHeader({ alg: "ES256", kid: overrides.kid ?? "k1" })
      .setIssuer(overrides.issuer ?? ISSUER)
      .setAudience(overrides.audience ?? AUDIENCE)
      .setSubject(`system:serviceaccount:${overrides.namespace ?? "default"}:web`)
      .setIssuedAt(now - 60)
      .setExpirationTime(overrides.expiresAt ?? now + 600)
      .sign(overrides.key ?? signingKey);
  }

  const counts = () => ({
    rows: service.countCertificateRows(),
    events: service.countAuditEvents(),
    signed: service.countAuditEvents("issuance.signed"),
  });

  beforeAll(async () => {
    const pair = await generateKeyPair("ES256");
    signingKey = pair.privateKey;
    ({ privateKey: strangerKey } = await generateKeyPair("ES256"));
    const publicJwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: "k1", alg: "ES256", use: "sig" };
    jwks = createServer((_request, response) => {
      response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: [publicJwk] }));
    });
    jwks.listen(0, "127.0.0.1");
    await new Promise((resolve) => jwks.once("listening", resolve));
    const config = scratch.file(
      "anchorage.json",
      JSON.stringify({
        jwtIssuers: [
          {
            issuer: ISSUER,
            audiences: [AUDIENCE],
            jwksUrl: `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/openid/v1/jwks`,
            spiffeIdTemplate: "spiffe://anchorage.test/ns/{namespace}/sa/{serviceaccount}",
            claims: { namespace: "kubernetes.io.namespace", serviceaccount: "kubernetes.io.serviceaccount.name" },
            dnsNameTemplates: ["{serviceaccount}.{namespace}.svc"],
            maxTtlSeconds: 7200,
          },
        ],
      }),
    );
    service = await startService({ env: { ANCHORAGE_CONFIG: config } });
  });

  afterAll(async () => {
    await service?.cleanup();
    if (jwks) await new Promise((resolve) => jwks.close(resolve));
    scratch.remove();
  });

  it("issues a first certificate for the identity a service-account JWT maps to", async () => {
    const spiffeId = "spiffe://anchorage.test/ns/default/sa/web";
    const { csrPem } = makeCsr({ spiffeId, dnsNames: ["web.default.svc"] });
    const issued = ok(await service.gql(ISSUE, { input: { csr: csrPem, jwt: await serviceAccountToken() } })).issueCertificate;
    expect(issued).toMatchObject({ spiffeId, dnsNames: ["web.default.svc"] });
    const text = openssl(["x509", "-noout", "-ext", "subjectAltName"], issued.certificatePem).stdout;
    expect(text).toContain(`URI:${spiffeId}`);
    const row = service.sqlValue("SELECT requester FROM certificates WHERE serial = ?", issued.serial);
    expect(row).toBe(`jwt:${ISSUER}#system:serviceaccount:default:web`);
  });

  it("refuses expired, wrong-audience, unknown-issuer, badly signed and unsigned JWTs with UNAUTHENTICATED, storing nothing", async () => {
    const { csrPem } = makeCsr({ spiffeId: "spiffe://anchorage.test/ns/default/sa/web" });
    const header = Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url");
    const body = Buffer.from(JSON.stringify({ iss: ISSUER, aud: AUDIENCE, sub: "x", exp: Math.floor(Date.now() / 1000) + 600, "kubernetes.io": { namespace: "default", serviceaccount: { name: "web" } } })).toString("base64url");
    const cases: [string, string, RegExp][] = [
      ["expired", await serviceAccountToken({ expiresAt: Math.floor(Date.now() / 1000) - 300 }), /expired/],
      ["wrong audience", await serviceAccountToken({ audience: "someone-else" }), /audience/],
      ["unknown issuer", await serviceAccountToken({ issuer: "https://evil.example" }), /issuer/],
      ["bad signature", await serviceAccountToken({ key: strangerKey }), /signature/],
      ["alg none", `${header}.${body}.`, /algorithm|not allowed|malformed/],
    ];
    const before = counts();
    for (const [name, jwt, message] of cases) {
      const answer = refusal(await service.gql(ISSUE, { input: { csr: csrPem, jwt } }));
      expect(answer.code, name).toBe("UNAUTHENTICATED");
      expect(answer.message, name).toMatch(message);
      expect(answer.message, name).not.toContain(jwt.slice(0, 40));
    }
    const after = counts();
    expect(after.rows).toBe(before.rows);
    expect(after.signed).toBe(before.signed);
    expect(service.countAuditEvents("issuance.refused")).toBeGreaterThanOrEqual(cases.length);
  });

  it("refuses a JWT whose identity differs from the CSR's, and a token together with a JWT", async () => {
    const { csrPem } = makeCsr({ spiffeId: "spiffe://anchorage.test/ns/default/sa/db" });
    expect(refusal(await service.gql(ISSUE, { input: { csr: csrPem, jwt: await serviceAccountToken() } })).code).toBe("POLICY_VIOLATION");
    expect(refusal(await service.gql(ISSUE, { input: { csr: csrPem, jwt: await serviceAccountToken(), token: "anc_enroll_x" } })).code).toBe("BAD_USER_INPUT");
  });

  it("lets a JWT with a jti obtain one certificate, not a second one for another CSR", async () => {
    const spiffeId = "spiffe://anchorage.test/ns/replay/sa/web";
    const jwt = await serviceAccountToken({ namespace: "replay", jti: "0b7e6f1a-replay" });
    ok(await service.gql(ISSUE, { input: { csr: makeCsr({ spiffeId }).csrPem, jwt } }));
    const before = counts();
    const replay = refusal(await service.gql(ISSUE, { input: { csr: makeCsr({ spiffeId, dnsNames: ["web.replay.svc"] }).csrPem, jwt } }));
    expect(replay).toMatchObject({ code: "UNAUTHENTICATED", message: expect.stringMatching(/already used/) });
    expect(counts().rows).toBe(before.rows);
    expect(counts().signed).toBe(before.signed);
    // The dry run says the same, and still writes nothing.
    const explained = ok(await service.gql(EXPLAIN, { input: { csr: makeCsr({ spiffeId }).csrPem, jwt } })).explainIssuance;
    expect(explained.allowed).toBe(false);
    expect(explained.refusals).toContainEqual({ rule: "credential", code: "UNAUTHENTICATED", message: expect.stringMatching(/already used/) });
    expect(counts().rows).toBe(before.rows);
    // Another token of the same workload is a fresh credential.
    ok(await service.gql(ISSUE, { input: { csr: makeCsr({ spiffeId }).csrPem, jwt: await serviceAccountToken({ namespace: "replay", jti: "0b7e6f1a-next" }) } }));
  });

  it("refuses a JWT valid for a year, however fresh", async () => {
    const { csrPem } = makeCsr({ spiffeId: "spiffe://anchorage.test/ns/default/sa/web" });
    const yearLong = await serviceAccountToken({ expiresAt: Math.floor(Date.now() / 1000) + 365 * 86400 });
    const before = counts();
    const answer = refusal(await service.gql(ISSUE, { input: { csr: csrPem, jwt: yearLong } }));
    expect(answer).toMatchObject({ code: "UNAUTHENTICATED", message: expect.stringMatching(/valid for \d+ s .*at most 3600 s/) });
    expect(counts().rows).toBe(before.rows);
  });

  describe("explainIssuance", () => {
    it("says what a valid request would get, and changes nothing: the token keeps its use", async () => {
      const spiffeId = "spiffe://anchorage.test/ns/dry/sa/run";
      const token = ok(await admin(CREATE_TOKEN, { input: { spiffeId, dnsNames: ["run.dry.svc"] } })).createEnrollmentToken;
      const { csrPem } = makeCsr({ spiffeId, dnsNames: ["run.dry.svc"] });
      const before = counts();
      const decision = ok(await service.gql(EXPLAIN, { input: { csr: csrPem, token: token.token, ttlSeconds: 1800 } })).explainIssuance;
      expect(decision).toMatchObject({ allowed: true, refusals: [], requester: `token:${token.id}`, spiffeId, dnsNames: ["run.dry.svc"], keyType: "P-256" });
      expect(decision.certificate.ttlSeconds).toBe(1800);
      expect(new Date(decision.certificate.notAfter).getTime() - Date.now()).toBeGreaterThan(1700_000);
      expect(counts()).toEqual(before);
      expect(service.sqlValue("SELECT uses_left FROM enrollment_tokens WHERE id = ?", token.id)).toBe(1);
      ok(await service.gql(ISSUE, { input: { csr: csrPem, token: token.token } }));
      expect(service.sqlValue("SELECT uses_left FROM enrollment_tokens WHERE id = ?", token.id)).toBe(0);
    });

    it("lists every rule that refuses a request, not only the first", async () => {
      const token = ok(await admin(CREATE_TOKEN, { input: { spiffeId: "spiffe://anchorage.test/ns/dry/sa/strict", maxTtlSeconds: 600 } })).createEnrollmentToken;
      const { csrPem } = makeCsr({ spiffeId: "spiffe://anchorage.test/ns/dry/sa/other", dnsNames: ["other.dry.svc"] });
      const before = counts();
      const decision = ok(await service.gql(EXPLAIN, { input: { csr: csrPem, token: token.token, ttlSeconds: 3600 } })).explainIssuance;
      expect(decision.allowed).toBe(false);
      expect(decision.certificate).toBeNull();
      expect(decision.refusals.map((r: { rule: string; code: string }) => [r.rule, r.code])).toEqual([
        ["lifetime", "POLICY_VIOLATION"],
        ["identity", "POLICY_VIOLATION"],
      ]);

      const nothing = ok(await service.gql(EXPLAIN, { input: { csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", ttlSeconds: 10 } })).explainIssuance;
      expect(nothing.refusals.map((r: { rule: string; code: string }) => [r.rule, r.code])).toEqual([
        ["credential", "UNAUTHENTICATED"],
        ["csr", "BAD_CSR"],
        ["lifetime", "BAD_USER_INPUT"],
      ]);
      const expired = ok(await service.gql(EXPLAIN, { input: { csr: csrPem, jwt: await serviceAccountToken({ expiresAt: Math.floor(Date.now() / 1000) - 300 }) } })).explainIssuance;
      expect(expired.refusals).toEqual([{ rule: "credential", code: "UNAUTHENTICATED", message: expect.stringMatching(/expired/) }]);
      expect(expired.spiffeId).toBe("spiffe://anchorage.test/ns/dry/sa/other");
      expect(counts()).toEqual(before);
    });
  });

  describe("registrations", () => {
    const REGISTRATION_FIELDS = "id spiffeId dnsNames maxTtlSeconds jwtIssuer jwtSubject createdAt updatedAt";
    const CREATE = `mutation ($input: RegistrationInput!) { createRegistration(input: $input) { ${REGISTRATION_FIELDS} } }`;
    const UPDATE = `mutation ($id: ID!, $input: RegistrationInput!) { updateRegistration(id: $id, input: $input) { ${REGISTRATION_FIELDS} } }`;
    const DELETE = `mutation ($id: ID!) { deleteRegistration(id: $id) { id } }`;

    it("are created, listed, updated and deleted by admins, each change audited; bad input changes nothing", async () => {
      const created = ok(await admin(CREATE, { input: { spiffeId: "spiffe://anchorage.test/apps/crud", dnsNames: ["crud.apps.internal"], maxTtlSeconds: 900 } })).createRegistration;
      expect(created).toMatchObject({ spiffeId: "spiffe://anchorage.test/apps/crud", dnsNames: ["crud.apps.internal"], maxTtlSeconds: 900, jwtIssuer: null });
      const listed = ok(await admin(`{ registrations(spiffeIdPrefix: "spiffe://anchorage.test/apps/") { id } }`)).registrations;
      expect(listed).toContainEqual({ id: created.id });
      const updated = ok(await admin(UPDATE, { id: created.id, input: { spiffeId: "spiffe://anchorage.test/apps/crud", dnsNames: [], maxTtlSeconds: 600 } })).updateRegistration;
      expect(updated).toMatchObject({ id: created.id, dnsNames: [], maxTtlSeconds: 600, createdAt: created.createdAt });

      const events = () => service.countAuditEvents("registration.created") + service.countAuditEvents("registration.updated") + service.countAuditEvents("registration.deleted");
      const before = events();
      const rows = Number(service.sqlValue("SELECT count(*) FROM registrations"));
      for (const input of [
        { spiffeId: "spiffe://elsewhere.test/apps/x" },
        { spiffeId: "spiffe://anchorage.test/apps/x", dnsNames: ["*.wild.card"] },
        { spiffeId: "spiffe://anchorage.test/apps/x", maxTtlSeconds: 10 },
        { spiffeId: "spiffe://anchorage.test/apps/x", jwtIssuer: ISSUER },
        { spiffeId: "spiffe://anchorage.test/apps/x", jwtIssuer: "https://unknown.example", jwtSubject: "s" },
      ]) {
        expect(refusal(await admin(CREATE, { input })).code, JSON.stringify(input)).toBe("BAD_USER_INPUT");
      }
      expect(refusal(await admin(UPDATE, { id: "reg_missing", input: { spiffeId: "spiffe://anchorage.test/apps/x" } })).code).toBe("NOT_FOUND");
      expect(refusal(await service.gql(CREATE, { input: { spiffeId: "spiffe://anchorage.test/apps/x" } })).code).toBe("UNAUTHENTICATED");
      expect(events()).toBe(before);
      expect(Number(service.sqlValue("SELECT count(*) FROM registrations"))).toBe(rows);

      ok(await admin(DELETE, { id: created.id }));
      expect(refusal(await admin(DELETE, { id: created.id })).code).toBe("NOT_FOUND");
      const trail = JSON.parse(service.sqlValue("SELECT details FROM audit_events WHERE type = 'registration.updated' AND subject = ?", created.id) as string);
      expect(trail).toMatchObject({ before: { dnsNames: ["crud.apps.internal"], maxTtlSeconds: 900 }, after: { dnsNames: [], maxTtlSeconds: 600 } });
      expect(service.sqlValue("SELECT count(*) FROM audit_events WHERE type = 'registration.deleted' AND subject = ?", created.id)).toBe(1);
    });

    it("map a JWT subject to the identity they name instead of the issuer's template", async () => {
      const spiffeId = "spiffe://anchorage.test/apps/web-registered";
      const registration = ok(
        await admin(CREATE, { input: { spiffeId, dnsNames: ["web.apps.internal"], maxTtlSeconds: 1200, jwtIssuer: ISSUER, jwtSubject: "system:serviceaccount:default:web" } }),
      ).createRegistration;
      expect(refusal(await admin(CREATE, { input: { spiffeId, jwtIssuer: ISSUER, jwtSubject: "system:serviceaccount:default:web" } })).message).toMatch(/already maps/);
      const templated = makeCsr({ spiffeId: "spiffe://anchorage.test/ns/default/sa/web" });
      expect(refusal(await service.gql(ISSUE, { input: { csr: templated.csrPem, jwt: await serviceAccountToken() } })).code).toBe("POLICY_VIOLATION");
      const { csrPem } = makeCsr({ spiffeId, dnsNames: ["web.apps.internal"] });
      const issued = ok(await service.gql(ISSUE, { input: { csr: csrPem, jwt: await serviceAccountToken() } })).issueCertificate;
      expect(issued).toMatchObject({ spiffeId, dnsNames: ["web.apps.internal"] });
      expect(refusal(await service.gql(ISSUE, { input: { csr: csrPem, jwt: await serviceAccountToken(), ttlSeconds: 3600 } })).message).toMatch(/exceeds the maximum of 1200/);
      ok(await admin(DELETE, { id: registration.id }));
    });

    it("bound the tokens made from them: an update narrows a token, a deletion voids it", async () => {
      const spiffeId = "spiffe://anchorage.test/apps/batch";
      const registration = ok(await admin(CREATE, { input: { spiffeId, dnsNames: ["a.batch.internal", "b.batch.internal"], maxTtlSeconds: 1800 } })).createRegistration;
      const token = ok(
        await admin(`mutation ($input: CreateEnrollmentTokenInput!) { createEnrollmentToken(input: $input) { id token dnsNames maxTtlSeconds } }`, {
          input: { spiffeId, registrationId: registration.id, uses: 5 },
        }),
      ).createEnrollmentToken;
      expect(token).toMatchObject({ dnsNames: ["a.batch.internal", "b.batch.internal"], maxTtlSeconds: 1800 });
      expect(refusal(await admin(CREATE_TOKEN, { input: { spiffeId: "spiffe://anchorage.test/apps/other", registrationId: registration.id } })).code).toBe("BAD_USER_INPUT");
      expect(refusal(await admin(CREATE_TOKEN, { input: { spiffeId, registrationId: registration.id, dnsNames: ["c.batch.internal"] } })).code).toBe("BAD_USER_INPUT");

      ok(await admin(UPDATE, { id: registration.id, input: { spiffeId, dnsNames: ["a.batch.internal"], maxTtlSeconds: 1800 } }));
      const withB = makeCsr({ spiffeId, dnsNames: ["b.batch.internal"] });
      expect(refusal(await service.gql(ISSUE, { input: { csr: withB.csrPem, token: token.token } })).code).toBe("POLICY_VIOLATION");
      const withA = makeCsr({ spiffeId, dnsNames: ["a.batch.internal"] });
      ok(await service.gql(ISSUE, { input: { csr: withA.csrPem, token: token.token } }));

      ok(await admin(DELETE, { id: registration.id }));
      const voided = refusal(await service.gql(ISSUE, { input: { csr: withA.csrPem, token: token.token } }));
      expect(voided).toMatchObject({ code: "UNAUTHENTICATED", message: expect.stringMatching(/registration/) });
    });
  });
});
