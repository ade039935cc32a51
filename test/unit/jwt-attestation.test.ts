import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { type CryptoKey, type JWK, type JWTPayload, SignJWT, base64url, exportJWK, generateKeyPair } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";

import { FixedClock } from "../../src/common/clock.js";
import { ConfigError, UnauthenticatedError } from "../../src/common/errors.js";
import type { Logger } from "../../src/common/logger.js";
import { InvalidIdentityError } from "../../src/policy/identity.js";
import {
  DEFAULT_JWT_ALGORITHMS,
  JwtAttestor,
  type JwtAttestorOptions,
  type JwtIssuerSettings,
  MAX_JWT_LENGTH,
  renderSpiffeIdTemplate,
} from "../../src/policy/jwt-attestation.js";

const TRUST_DOMAIN = "anchorage.test";
const ISSUER = "https://kubernetes.default.svc.cluster.local";
const AUDIENCE = "anchorage";
const OPERATOR_MAX_TTL = 86_400;
const START = new Date("2030-06-01T12:00:00Z");
const K8S_TEMPLATE = "spiffe://anchorage.test/ns/{namespace}/sa/{serviceaccount}";
const K8S_CLAIMS = { namespace: "kubernetes.io.namespace", serviceaccount: "kubernetes.io.serviceaccount.name" };

/** A logger that keeps every line, so tests can check what is (and is not) logged. */
class CollectingLogger implements Logger {
  readonly lines: Array<{ level: string; fields: object; message: string }> = [];
  constructor(private readonly bindings: object = {}) {}
  private push(level: string, fields: object, message: string): void {
    this.lines.push({ level, fields: { ...this.bindings, ...fields }, message });
  }
  debug(fields: object, message: string): void {
    this.push("debug", fields, message);
  }
  info(fields: object, message: string): void {
    this.push("info", fields, message);
  }
  warn(fields: object, message: string): void {
    this.push("warn", fields, message);
  }
  error(fields: object, message: string): void {
    this.push("error", fields, message);
  }
  child(bindings: object): Logger {
    const child = new CollectingLogger({ ...this.bindings, ...bindings });
    // Share one list of lines between parent and child.
    (child as { lines: CollectingLogger["lines"] }).lines = this.lines;
    return child;
  }
}

interface KeyPair {
  readonly privateKey: CryptoKey;
  readonly jwk: JWK;
}

async function keyPair(alg: "ES256" | "RS256", kid: string): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

// ---------------------------------------------------------------------------------------------------------------
// A real JWKS endpoint on 127.0.0.1. Each path serves its own key set and counts its fetches, so tests do not
// share caches or counters.

const keySets = new Map<string, JWK[]>();
const fetches = new Map<string, number>();
const hanging: ServerResponse[] = [];
let server: Server;
let baseUrl: string;
/** A URL on which nothing listens (a server was bound there and closed). */
let deadUrl: string;

function handle(request: IncomingMessage, response: ServerResponse): void {
  const path = new URL(request.url ?? "/", "http://localhost").pathname;
  fetches.set(path, (fetches.get(path) ?? 0) + 1);
  if (path === "/status-500") {
    response.writeHead(500).end("internal error");
    return;
  }
  if (path === "/not-json") {
    response.writeHead(200, { "content-type": "application/json" }).end("<html>");
    return;
  }
  if (path === "/hang") {
    hanging.push(response);
    return;
  }
  const keys = keySets.get(path);
  if (!keys) {
    response.writeHead(404).end();
    return;
  }
  response.writeHead(200, { "content-type": "application/jwk-set+json" }).end(JSON.stringify({ keys }));
}

async function listen(target: Server): Promise<number> {
  await new Promise<void>((resolve) => target.listen(0, "127.0.0.1", resolve));
  return (target.address() as AddressInfo).port;
}

let es: KeyPair; // the issuer's current key, kid es-1
let rs: KeyPair; // an RSA key, kid rs-1
let impostor: KeyPair; // another key that claims to be es-1
let rotated: KeyPair; // the issuer's next key, kid es-2
let dir: string;
let esJwksFile: string;
let rsJwksFile: string;

beforeAll(async () => {
  [es, rs, impostor, rotated] = await Promise.all([
    keyPair("ES256", "es-1"),
    keyPair("RS256", "rs-1"),
    keyPair("ES256", "es-1"),
    keyPair("ES256", "es-2"),
  ]);
  server = createServer(handle);
  baseUrl = `http://127.0.0.1:${await listen(server)}`;
  const closed = createServer();
  deadUrl = `http://127.0.0.1:${await listen(closed)}/jwks`;
  await new Promise<void>((resolve, reject) => closed.close((error) => (error ? reject(error) : resolve())));

  dir = mkdtempSync(join(tmpdir(), "anchorage-jwt-"));
  esJwksFile = join(dir, "es.jwks.json");
  writeFileSync(esJwksFile, JSON.stringify({ keys: [es.jwk] }));
  rsJwksFile = join(dir, "rs.jwks.json");
  writeFileSync(rsJwksFile, JSON.stringify({ keys: [rs.jwk] }));
});

afterAll(async () => {
  for (const response of hanging) response.destroy();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

afterEach(() => {
  vi.useRealTimers();
});

/** A fresh JWKS path on the local server serving `keys`. */
let pathCounter = 0;
function serveKeys(...keys: JWK[]): { url: string; path: string } {
  const path = `/jwks-${++pathCounter}`;
  keySets.set(path, keys);
  return { url: `${baseUrl}${path}`, path };
}

// ---------------------------------------------------------------------------------------------------------------

function k8sSettings(overrides: Partial<JwtIssuerSettings> = {}): JwtIssuerSettings {
  const base: JwtIssuerSettings = {
    issuer: ISSUER,
    audiences: [AUDIENCE],
    spiffeIdTemplate: K8S_TEMPLATE,
    claims: { ...K8S_CLAIMS },
  };
  const settings = { ...base, ...overrides };
  if (settings.jwksFile === undefined && settings.jwksUrl === undefined) settings.jwksFile = esJwksFile;
  return settings;
}

function attestor(
  issuers: JwtIssuerSettings[],
  options: Partial<JwtAttestorOptions> = {},
): { attestor: JwtAttestor; clock: FixedClock; logger: CollectingLogger } {
  const clock = new FixedClock(START);
  const logger = new CollectingLogger();
  return {
    attestor: new JwtAttestor({ trustDomain: TRUST_DOMAIN, maxTtlSeconds: OPERATOR_MAX_TTL, issuers, clock, logger, ...options }),
    clock,
    logger,
  };
}

const nowSeconds = Math.floor(START.getTime() / 1000);

function k8sPayload(namespace: unknown = "default", name: unknown = "web"): JWTPayload {
  return {
    iss: ISSUER,
    aud: [AUDIENCE, "https://kubernetes.default.svc"],
    sub: `system:serviceaccount:${String(namespace)}:${String(name)}`,
    jti: "3f1e9c2a-7d4b-4c1e-9b1a-5e2f0d6c8a71",
    iat: nowSeconds - 60,
    exp: nowSeconds + 3540,
    "kubernetes.io": {
      namespace,
      serviceaccount: { name, uid: "0a4c1d7e-55b3-4a5e-8c1d-2b9e6f3a7c10" },
    },
  };
}

async function sign(
  payload: JWTPayload,
  { key = es, alg = "ES256" }: { key?: KeyPair | Uint8Array; alg?: string } = {},
): Promise<string> {
  const header = key instanceof Uint8Array ? { alg, typ: "JWT" } : { alg, typ: "JWT", kid: key.jwk.kid as string };
  return new SignJWT(payload).setProtectedHeader(header).sign(key instanceof Uint8Array ? key : key.privateKey);
}

/** An `alg: none` token, built by hand since jose will not produce one for verification paths. */
function unsecured(payload: JWTPayload): string {
  const encode = (value: object): string => base64url.encode(JSON.stringify(value));
  return `${encode({ alg: "none" })}.${encode(payload)}.`;
}

async function refusal(promise: Promise<unknown>): Promise<UnauthenticatedError> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(UnauthenticatedError);
  return error as UnauthenticatedError;
}

function configError(fn: () => unknown, fragment: string | RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(ConfigError);
  if (typeof fragment === "string") expect((thrown as Error).message).toContain(fragment);
  else expect((thrown as Error).message).toMatch(fragment);
}

// ---------------------------------------------------------------------------------------------------------------

describe("renderSpiffeIdTemplate", () => {
  it("substitutes every placeholder", () => {
    expect(renderSpiffeIdTemplate(K8S_TEMPLATE, { namespace: "default", serviceaccount: "web" })).toBe(
      "spiffe://anchorage.test/ns/default/sa/web",
    );
    expect(renderSpiffeIdTemplate("spiffe://td/{a}-{a}/{b_2}", { a: "x", b_2: "y.z" })).toBe("spiffe://td/x-x/y.z");
    expect(renderSpiffeIdTemplate("spiffe://td/static", {})).toBe("spiffe://td/static");
  });

  it("refuses values that could change the path's shape", () => {
    for (const value of ["a/b", "..", ".", "a..b", "", "a b", "é", "x".repeat(129), "{a}"]) {
      expect(() => renderSpiffeIdTemplate("spiffe://td/ns/{a}", { a: value }), value).toThrow(InvalidIdentityError);
    }
  });

  it("refuses a variable without a value and a malformed template", () => {
    expect(() => renderSpiffeIdTemplate("spiffe://td/{a}", {})).toThrow(ConfigError);
    expect(() => renderSpiffeIdTemplate("spiffe://td/{a", { a: "x" })).toThrow(ConfigError);
    expect(() => renderSpiffeIdTemplate("spiffe://td/{a-b}", { "a-b": "x" })).toThrow(ConfigError);
  });
});

describe("JwtAttestor.attest", () => {
  it("maps a valid Kubernetes service-account token to its SPIFFE ID (keys from a URL)", async () => {
    const { url } = serveKeys(es.jwk);
    const { attestor: jwt } = attestor([k8sSettings({ jwksUrl: url, jwksFile: undefined })]);
    const result = await jwt.attest(await sign(k8sPayload()));
    expect(result).toEqual({
      issuer: ISSUER,
      subject: "system:serviceaccount:default:web",
      spiffeId: "spiffe://anchorage.test/ns/default/sa/web",
      dnsNames: [],
      maxTtlSeconds: OPERATOR_MAX_TTL,
      tokenId: "3f1e9c2a-7d4b-4c1e-9b1a-5e2f0d6c8a71",
      expiresAt: new Date((nowSeconds + 3540) * 1000),
      usableUntil: new Date((nowSeconds + 3540 + 30) * 1000),
      singleUse: true,
    });
  });

  it("refuses a token valid for longer than the issuer's maximum token age, or without iat", async () => {
    const { attestor: jwt } = attestor([k8sSettings()]);
    const yearLong = await refusal(jwt.attest(await sign({ ...k8sPayload(), exp: nowSeconds + 365 * 86400 })));
    expect(yearLong.message).toBe("the JWT is valid for 31536060 s (iat to exp); this issuer accepts tokens valid for at most 3600 s");
    const { iat: _iat, ...withoutIssuedAt } = k8sPayload();
    expect((await refusal(jwt.attest(await sign(withoutIssuedAt)))).message).toMatch(/no issue time \(iat claim\)/);
    const old = await refusal(jwt.attest(await sign({ ...k8sPayload(), iat: nowSeconds - 7200, exp: nowSeconds + 60 })));
    expect(old.message).toMatch(/issued longer ago than this issuer's maximum token age/);
    // Kubernetes' default projected token lasts 3607 s; a longer limit is the operator's choice.
    await expect(jwt.attest(await sign({ ...k8sPayload(), iat: nowSeconds - 7, exp: nowSeconds + 3600 }))).resolves.toMatchObject({ singleUse: true });
    const { attestor: lenient } = attestor([k8sSettings({ maxTokenAgeSeconds: 2 * 86400 })]);
    await expect(lenient.attest(await sign({ ...k8sPayload(), iat: nowSeconds - 60, exp: nowSeconds + 86400 }))).resolves.toBeDefined();
  });

  it("marks tokens with a jti single-use unless the issuer opts out, and can require a jti", async () => {
    const { jti: _jti, ...withoutJti } = k8sPayload();
    const { attestor: jwt } = attestor([k8sSettings()]);
    expect(await jwt.attest(await sign(withoutJti))).toMatchObject({ singleUse: false });
    const { attestor: reusable } = attestor([k8sSettings({ singleUseJti: false })]);
    expect(await reusable.attest(await sign(k8sPayload()))).toMatchObject({ singleUse: false });
    const { attestor: strict } = attestor([k8sSettings({ requireJti: true })]);
    expect((await refusal(strict.attest(await sign(withoutJti)))).message).toMatch(/no token ID \(jti claim\)/);
    configError(() => attestor([k8sSettings({ requireJti: true, singleUseJti: false })]), /requireJti needs singleUseJti/);
  });

  it("verifies an RS256 token against a JWKS file, renders DNS names and caps the TTL", async () => {
    const { attestor: jwt } = attestor([
      k8sSettings({
        jwksFile: rsJwksFile,
        dnsNameTemplates: ["{serviceaccount}.{namespace}.svc", "{serviceaccount}.{namespace}.svc", "{serviceaccount}"],
        maxTtlSeconds: 3600,
      }),
    ]);
    const payload = k8sPayload("payments", "Ledger-API");
    delete payload.jti;
    const result = await jwt.attest(await sign(payload, { key: rs, alg: "RS256" }));
    expect(result.spiffeId).toBe("spiffe://anchorage.test/ns/payments/sa/Ledger-API");
    expect(result.dnsNames).toEqual(["ledger-api.payments.svc", "ledger-api"]);
    expect(result.maxTtlSeconds).toBe(3600);
    expect(result).not.toHaveProperty("tokenId");
  });

  it("never grants more than the operator maximum", async () => {
    const { attestor: jwt } = attestor([k8sSettings({ maxTtlSeconds: 10 * OPERATOR_MAX_TTL })]);
    expect((await jwt.attest(await sign(k8sPayload()))).maxTtlSeconds).toBe(OPERATOR_MAX_TTL);
  });

  it("picks the issuer by iss among several, and maps plain claims such as sub", async () => {
    const ci: JwtIssuerSettings = {
      issuer: "https://ci.example",
      audiences: ["anchorage"],
      jwksFile: rsJwksFile,
      spiffeIdTemplate: "spiffe://anchorage.test/ci/{repo}",
      claims: { repo: "sub" },
    };
    const { attestor: jwt } = attestor([k8sSettings(), ci]);
    const token = await sign(
      { iss: "https://ci.example", aud: "anchorage", sub: "anchorage-ca", iat: nowSeconds, exp: nowSeconds + 300 },
      { key: rs, alg: "RS256" },
    );
    expect((await jwt.attest(token)).spiffeId).toBe("spiffe://anchorage.test/ci/anchorage-ca");
    expect((await jwt.attest(await sign(k8sPayload()))).spiffeId).toBe("spiffe://anchorage.test/ns/default/sa/web");
  });

  it("accepts a token inside the clock tolerance and refuses it beyond", async () => {
    const { attestor: jwt, clock } = attestor([k8sSettings()]);
    const token = await sign({ ...k8sPayload(), exp: nowSeconds - 10, nbf: nowSeconds + 10 });
    await expect(jwt.attest(token)).resolves.toMatchObject({ spiffeId: "spiffe://anchorage.test/ns/default/sa/web" });
    clock.advance(60_000);
    expect((await refusal(jwt.attest(token))).message).toBe("the JWT has expired");
  });

  describe("refuses bad tokens, each with its own message", () => {
    const HS_SECRET = new TextEncoder().encode("a-shared-secret-that-must-never-be-accepted");
    const cases: Array<[string, () => Promise<string>, string | RegExp]> = [
      ["an expired token", () => sign({ ...k8sPayload(), exp: nowSeconds - 120 }), "the JWT has expired"],
      ["a token not yet valid", () => sign({ ...k8sPayload(), nbf: nowSeconds + 300 }), "the JWT is not yet valid"],
      ["a wrong audience", () => sign({ ...k8sPayload(), aud: "someone-else" }), "the JWT audience is not accepted"],
      ["no audience", () => sign({ ...k8sPayload(), aud: undefined }), "the JWT has no audience"],
      ["an unconfigured issuer", () => sign({ ...k8sPayload(), iss: "https://evil.example" }), "the JWT issuer is not configured"],
      ["no issuer", () => sign({ ...k8sPayload(), iss: undefined }), "the JWT has no issuer"],
      ["a signature by another key with the same kid", () => sign(k8sPayload(), { key: impostor }), "the JWT signature does not verify"],
      ["a key the issuer does not publish", () => sign(k8sPayload(), { key: rotated }), /kid\) the issuer does not publish/],
      ["alg none", async () => unsecured(k8sPayload()), "the JWT algorithm is not allowed"],
      ["HS256 signed with a secret", () => sign(k8sPayload(), { key: HS_SECRET, alg: "HS256" }), "the JWT algorithm is not allowed"],
      ["no exp", () => sign({ ...k8sPayload(), exp: undefined }), /the JWT has no expiry/],
      ["a non-numeric exp", () => sign({ ...k8sPayload(), exp: "tomorrow" as unknown as number }), 'the JWT "exp" claim is invalid'],
      ["no sub", () => sign({ ...k8sPayload(), sub: undefined }), "the JWT has no subject (sub claim)"],
      ["a claim value with '/'", () => sign(k8sPayload("default/sa/admin", "web")), /"kubernetes\.io\.namespace" claim must be/],
      ["a claim value '..'", () => sign(k8sPayload("default", "..")), /"kubernetes\.io\.serviceaccount\.name" claim must be/],
      ["a claim value with '..' inside", () => sign(k8sPayload("a..b", "web")), /"kubernetes\.io\.namespace" claim must be/],
      ["a non-string claim value", () => sign(k8sPayload(42, "web")), /"kubernetes\.io\.namespace" claim must be a string/],
      ["a missing claim", () => sign({ ...k8sPayload(), "kubernetes.io": { namespace: "default" } }), 'the JWT has no "kubernetes.io.serviceaccount.name" claim'],
      [
        "an ambiguous claim path",
        () => sign({ ...k8sPayload(), kubernetes: { io: { namespace: "kube-system" } } }),
        'the JWT claim path "kubernetes.io.namespace" matches more than one claim',
      ],
    ];

    it.each(cases)("%s", async (_, token, expected) => {
      const { attestor: jwt } = attestor([k8sSettings()]);
      const error = await refusal(jwt.attest(await token()));
      if (typeof expected === "string") expect(error.message).toContain(expected);
      else expect(error.message).toMatch(expected);
    });

    it("the messages are distinct where the causes are", async () => {
      const { attestor: jwt } = attestor([k8sSettings()]);
      const messages = new Map<string, string>();
      for (const [name, token] of cases) messages.set(name, (await refusal(jwt.attest(await token()))).message);
      // These share a cause with an earlier case (a disallowed algorithm; a bad namespace claim value).
      const sameCause = new Set(["HS256 signed with a secret", "a claim value with '..' inside", "a non-string claim value"]);
      const distinctCauses = cases.filter(([name]) => !sameCause.has(name));
      expect(new Set(distinctCauses.map(([name]) => messages.get(name))).size).toBe(distinctCauses.length);
    });
  });

  it.each([
    ["empty", ""],
    ["one part", "abc"],
    ["two parts", "abc.def"],
    ["four parts", "a.b.c.d"],
    ["a JWE-shaped string", "a.b.c.d.e"],
    ["non-base64url characters", "!!!.@@@.###"],
    ["whitespace", " eyJhbGciOiJFUzI1NiJ9.e30.sig"],
    ["a header that is not JSON", `${base64url.encode("not json")}.${base64url.encode("{}")}.c2ln`],
    ["a payload that is not an object", `${base64url.encode('{"alg":"ES256"}')}.${base64url.encode("[1,2]")}.c2ln`],
  ])("refuses garbage: %s", async (_, garbage) => {
    const { attestor: jwt } = attestor([k8sSettings()]);
    expect((await refusal(jwt.attest(garbage))).message).toMatch(/^(the JWT is malformed|no JWT was presented)/);
  });

  it("refuses a non-string without throwing a TypeError", async () => {
    const { attestor: jwt } = attestor([k8sSettings()]);
    expect((await refusal(jwt.attest(undefined as unknown as string))).message).toBe("no JWT was presented");
    expect((await refusal(jwt.attest({ toString: () => "x" } as unknown as string))).message).toBe("no JWT was presented");
  });

  it("refuses an oversized token before decoding it", async () => {
    const { attestor: jwt } = attestor([k8sSettings()]);
    const token = await sign({ ...k8sPayload(), padding: "x".repeat(MAX_JWT_LENGTH) });
    expect(token.length).toBeGreaterThan(MAX_JWT_LENGTH);
    expect((await refusal(jwt.attest(token))).message).toBe(`the JWT is longer than ${MAX_JWT_LENGTH} characters`);
  });

  it("refuses claims that render an invalid DNS name", async () => {
    const { attestor: jwt } = attestor([k8sSettings({ dnsNameTemplates: ["{serviceaccount}.{namespace}.svc"] })]);
    const error = await refusal(jwt.attest(await sign(k8sPayload("default", "web_1"))));
    expect(error.message).toMatch(/^the JWT's claims do not give a valid workload identity: DNS name/);
  });

  it("never logs or echoes the token", async () => {
    const { attestor: jwt, logger } = attestor([k8sSettings()]);
    const tokens = [
      await sign({ ...k8sPayload(), exp: nowSeconds - 120 }),
      await sign(k8sPayload(), { key: impostor }),
      await sign(k8sPayload("a/b")),
      unsecured(k8sPayload()),
      await sign(k8sPayload()),
    ];
    const messages: string[] = [];
    for (const token of tokens) {
      await jwt.attest(token).catch((error: Error) => messages.push(error.message));
    }
    expect(messages).toHaveLength(4);
    const logged = JSON.stringify(logger.lines) + messages.join("\n");
    expect(logger.lines.length).toBeGreaterThanOrEqual(5);
    for (const token of tokens) {
      for (const part of token.split(".").filter((p) => p.length > 8)) expect(logged).not.toContain(part);
    }
  });
});

describe("JwtAttestor with a remote JWKS", () => {
  it("fetches once, then refetches when a token names a kid not in the cached set (key rotation)", async () => {
    const { url, path } = serveKeys(es.jwk);
    const { attestor: jwt } = attestor([k8sSettings({ jwksUrl: url, jwksFile: undefined })]);

    await jwt.attest(await sign(k8sPayload()));
    await jwt.attest(await sign(k8sPayload("default", "api")));
    expect(fetches.get(path)).toBe(1);

    // The issuer rotates: the new key is published and tokens start being signed with it.
    keySets.set(path, [es.jwk, rotated.jwk]);
    const rotatedToken = await sign(k8sPayload(), { key: rotated });

    // jose refetches on an unknown kid at most once per 30 s cool-down (wall clock), after its last fetch.
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.now() + 31_000);
    const result = await jwt.attest(rotatedToken);
    expect(result.spiffeId).toBe("spiffe://anchorage.test/ns/default/sa/web");
    expect(fetches.get(path)).toBe(2);

    // Both keys now come from the cache.
    await jwt.attest(rotatedToken);
    await jwt.attest(await sign(k8sPayload()));
    expect(fetches.get(path)).toBe(2);
  });

  it("does not refetch on every unknown kid: the cool-down protects the issuer", async () => {
    const { url, path } = serveKeys(es.jwk);
    const { attestor: jwt } = attestor([k8sSettings({ jwksUrl: url, jwksFile: undefined })]);
    await jwt.attest(await sign(k8sPayload()));
    keySets.set(path, [es.jwk, rotated.jwk]);
    for (let i = 0; i < 3; i++) {
      expect((await refusal(jwt.attest(await sign(k8sPayload(), { key: rotated })))).message).toMatch(
        /kid\) the issuer does not publish/,
      );
    }
    expect(fetches.get(path)).toBe(1);
  });

  it("refetches when the cache has expired", async () => {
    const { url, path } = serveKeys(es.jwk);
    const { attestor: jwt } = attestor([k8sSettings({ jwksUrl: url, jwksFile: undefined, jwksCacheSeconds: 60 })]);
    const token = await sign(k8sPayload());
    await jwt.attest(token);
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.now() + 61_000);
    await jwt.attest(token);
    expect(fetches.get(path)).toBe(2);
  });

  it.each([
    ["nothing listens on the port", () => deadUrl],
    ["the endpoint answers 500", () => `${baseUrl}/status-500`],
    ["the endpoint does not answer JSON", () => `${baseUrl}/not-json`],
    ["the endpoint hangs past the fetch timeout", () => `${baseUrl}/hang`],
  ])("refuses clearly when %s", async (_, url) => {
    const { attestor: jwt, logger } = attestor([k8sSettings({ jwksUrl: url(), jwksFile: undefined })], {
      fetchTimeoutMs: 300,
    });
    const error = await refusal(jwt.attest(await sign(k8sPayload())));
    expect(error.message).toBe("the JWT issuer's keys could not be fetched; try again later");
    expect(logger.lines.some((line) => line.level === "warn")).toBe(true);
  });

  it("recovers once the endpoint is back", async () => {
    const path = `/jwks-${++pathCounter}`;
    const { attestor: jwt } = attestor([k8sSettings({ jwksUrl: `${baseUrl}${path}`, jwksFile: undefined })]);
    const token = await sign(k8sPayload());
    await refusal(jwt.attest(token)); // 404: not published yet
    keySets.set(path, [es.jwk]);
    await expect(jwt.attest(token)).resolves.toMatchObject({ subject: "system:serviceaccount:default:web" });
  });
});

describe("JwtAttestor settings", () => {
  const build = (settings: Partial<JwtIssuerSettings>, options: Partial<JwtAttestorOptions> = {}) => () =>
    attestor([k8sSettings(settings)], options);

  it("defaults to asymmetric algorithms only", () => {
    expect(DEFAULT_JWT_ALGORITHMS).toEqual(["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]);
    expect(() => attestor([k8sSettings({ algorithms: ["ES256", "ES512", "Ed25519"] })])).not.toThrow();
  });

  it.each<[string, Partial<JwtIssuerSettings>, string | RegExp]>([
    ["HS256 in algorithms", { algorithms: ["ES256", "HS256"] }, /"HS256" is not allowed \(symmetric/],
    ["none in algorithms", { algorithms: ["none"] }, /"none" is not allowed \(unsigned/],
    ["an unknown algorithm", { algorithms: ["ES256K"] }, '"ES256K" is not allowed'],
    ["an empty algorithm list", { algorithms: [] }, "algorithms must list at least one"],
    [
      "a template variable not in claims",
      { spiffeIdTemplate: "spiffe://anchorage.test/ns/{namespace}/sa/{sa}" },
      "spiffeIdTemplate uses {sa}, which",
    ],
    [
      "a DNS template variable not in claims",
      { dnsNameTemplates: ["{pod}.svc"] },
      "dnsNameTemplates[0] uses {pod}",
    ],
    ["both jwksFile and jwksUrl", { jwksFile: "/unused/jwks.json", jwksUrl: "https://issuer.example/jwks" }, "exactly one of jwksFile and jwksUrl"],
    [
      "a template outside the trust domain",
      { spiffeIdTemplate: "spiffe://other.test/ns/{namespace}/sa/{serviceaccount}" },
      'is in trust domain "other.test", not this CA\'s trust domain "anchorage.test"',
    ],
    [
      "a variable in the trust domain",
      { spiffeIdTemplate: "spiffe://{namespace}.anchorage.test/sa/{serviceaccount}" },
      "must not have template variables in its trust domain",
    ],
    ["a template without a path", { spiffeIdTemplate: "spiffe://anchorage.test" }, "has no path"],
    ["a template that is not a SPIFFE ID", { spiffeIdTemplate: "https://anchorage.test/{namespace}" }, 'does not start with "spiffe://"'],
    ["an unmatched brace", { spiffeIdTemplate: "spiffe://anchorage.test/ns/{namespace" }, "unmatched '{' or '}'"],
    ["a DNS template that cannot give a name", { dnsNameTemplates: ["*.{namespace}"] }, "is a wildcard"],
    ["an empty issuer", { issuer: " " }, "issuer must be a non-empty string"],
    ["no audiences", { audiences: [] }, "audiences must list at least one audience"],
    ["an empty audience", { audiences: [""] }, "audiences must be non-empty strings"],
    ["a malformed claim path", { claims: { ...K8S_CLAIMS, namespace: "kubernetes.io..namespace" } }, "must be a dotted claim path"],
    ["a plain-http JWKS URL", { jwksFile: undefined, jwksUrl: "http://issuer.example/jwks" }, "must use https"],
    ["a JWKS URL that is not a URL", { jwksFile: undefined, jwksUrl: "issuer/jwks" }, "jwksUrl is not a URL"],
    ["a zero cache time", { jwksFile: undefined, jwksUrl: "https://issuer.example/jwks", jwksCacheSeconds: 0 }, "jwksCacheSeconds must be a positive integer"],
    ["a bad maxTtlSeconds", { maxTtlSeconds: 1.5 }, "maxTtlSeconds must be a positive integer"],
    ["a missing JWKS file", { jwksFile: "/nonexistent/jwks.json" }, "cannot be read"],
  ])("refuses %s", (_, settings, fragment) => {
    configError(build(settings), fragment);
  });

  it("refuses neither jwksFile nor jwksUrl", () => {
    configError(() => attestor([{ ...k8sSettings(), jwksFile: undefined }]), "exactly one of jwksFile and jwksUrl");
  });

  it("refuses JWKS files that are not public key sets", async () => {
    const { privateKey } = await generateKeyPair("ES256", { extractable: true });
    const files: Array<[string, string, string]> = [
      ["private.json", JSON.stringify({ keys: [{ ...(await exportJWK(privateKey)), kid: "p" }] }), 'private key material ("d")'],
      ["secret.json", JSON.stringify({ keys: [{ kty: "oct", k: "c2VjcmV0" }] }), "must be an RSA, EC or OKP public key"],
      ["empty.json", JSON.stringify({ keys: [] }), 'non-empty "keys" array'],
      ["broken.json", "{", "is not valid JSON"],
    ];
    for (const [name, content, fragment] of files) {
      const file = join(dir, name);
      writeFileSync(file, content);
      configError(() => attestor([k8sSettings({ jwksFile: file })]), fragment);
    }
  });

  it("refuses the same issuer twice, a bad trust domain and a bad operator maximum", () => {
    configError(() => attestor([k8sSettings(), k8sSettings()]), "configured more than once");
    configError(build({}, { trustDomain: "Anchorage.test" }), "is not a valid trust domain name");
    configError(build({}, { trustDomain: "anchorage.test/path" }), "is not a valid trust domain name");
    configError(build({}, { maxTtlSeconds: 0 }), "maxTtlSeconds must be a positive integer");
  });

  it("warns about claims no template uses", () => {
    const { logger } = attestor([k8sSettings({ claims: { ...K8S_CLAIMS, uid: "kubernetes.io.serviceaccount.uid" } })]);
    expect(logger.lines).toContainEqual(
      expect.objectContaining({ level: "warn", fields: expect.objectContaining({ unused: ["uid"] }) }),
    );
  });

  it("accepts http to a loopback JWKS URL", () => {
    expect(() => attestor([k8sSettings({ jwksFile: undefined, jwksUrl: "http://localhost:8080/jwks" })])).not.toThrow();
  });
});
