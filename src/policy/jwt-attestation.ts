import { readFileSync } from "node:fs";

import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type CryptoKey,
  type FlattenedJWSInput,
  type JSONWebKeySet,
  type JWSHeaderParameters,
  type JWTPayload,
} from "jose";

import type { Clock } from "../common/clock.js";
import { ConfigError, UnauthenticatedError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import { InvalidIdentityError, parseDnsName, parseSpiffeId, parseWorkloadSpiffeId, spiffeIdIsInTrustDomain } from "./identity.js";

/**
 * JWT attestation: a workload proves who it is with a JWT signed by an issuer the operator trusts (typically a
 * Kubernetes service-account token), and the claims of that JWT are mapped onto a SPIFFE ID through an
 * operator-written template. This is how a workload obtains its first certificate without an enrollment token.
 *
 * Nothing in the token is trusted before its signature verifies, except `iss`, which only selects the issuer
 * configuration (and so the keys and rules) the token is then verified against. A token naming an issuer we do not
 * know is refused before any key is looked at. Claim values that end up in the SPIFFE ID are restricted to a
 * path-segment-safe alphabet so that a claim cannot add path segments (`/`) or walk up the path (`..`).
 *
 * Every refusal is an UnauthenticatedError whose message says what is wrong with the token without repeating it;
 * the underlying jose error is kept as `cause` and logged, never sent.
 */

/** One trusted JWT issuer, as the operator configures it. */
export interface JwtIssuerSettings {
  /** Exact `iss` value of the issuer's tokens. */
  issuer: string;
  /** The token's `aud` must contain at least one of these. */
  audiences: string[];
  /** Path of a JWKS (JSON) file read once at start-up. Exactly one of jwksFile / jwksUrl. */
  jwksFile?: string;
  /** URL of the issuer's JWKS, fetched and cached; refetched when a token names an unknown `kid`. https only (http to loopback is allowed). */
  jwksUrl?: string;
  /** e.g. `spiffe://example.org/ns/{namespace}/sa/{serviceaccount}`; every `{variable}` must be defined in `claims`. */
  spiffeIdTemplate: string;
  /**
   * Template variable → claim path in dotted form. A dot may also be part of a claim name, as in Kubernetes'
   * `kubernetes.io` claim: `kubernetes.io.namespace` finds `payload["kubernetes.io"]["namespace"]`. A path that can
   * be read in more than one way against a given token is refused rather than guessed.
   */
  claims: Record<string, string>;
  /** Optional DNS SAN templates, same variables as `spiffeIdTemplate`. */
  dnsNameTemplates?: string[];
  /** Certificate lifetime cap for this issuer; the operator maximum applies on top. */
  maxTtlSeconds?: number;
  /** Allowed `alg` values; asymmetric only. Defaults to {@link DEFAULT_JWT_ALGORITHMS}. */
  algorithms?: string[];
  /** How long a fetched JWKS is used before it is fetched again (jwksUrl only). Default 300. */
  jwksCacheSeconds?: number;
  /** Only subjects with a registration get a certificate (the template is not used). Default false. */
  requireRegistration?: boolean;
  /**
   * Longest accepted token validity (`exp` − `iat`) and age (now − `iat`), in seconds. Default
   * {@link DEFAULT_MAX_TOKEN_AGE_SECONDS}. Tokens without `iat` are refused.
   */
  maxTokenAgeSeconds?: number;
  /** A token carrying a `jti` obtains at most one certificate (remembered until it expires). Default true. */
  singleUseJti?: boolean;
  /** Tokens without a `jti` are refused, so that every accepted token is single-use. Default false. */
  requireJti?: boolean;
}

export interface JwtAttestorOptions {
  /** Bare trust domain name, e.g. `example.org`. */
  readonly trustDomain: string;
  /** Operator maximum for certificate lifetimes. */
  readonly maxTtlSeconds: number;
  readonly issuers: readonly JwtIssuerSettings[];
  readonly clock: Clock;
  readonly logger: Logger;
  /** Time limit of one JWKS fetch. Default 5000. */
  readonly fetchTimeoutMs?: number;
}

/** What a verified JWT attests. */
export interface JwtAttestation {
  readonly issuer: string;
  /** The token's `sub`. */
  readonly subject: string;
  readonly spiffeId: string;
  /** Lower-case, de-duplicated, in template order. */
  readonly dnsNames: readonly string[];
  /** min(issuer's cap, operator's maximum). */
  readonly maxTtlSeconds: number;
  /** The token's `jti`, when it has one (callers may use it to refuse replays). */
  readonly tokenId?: string;
  /** The token's `exp`. */
  readonly expiresAt: Date;
  /** The last moment the token could still verify (exp plus the clock tolerance): how long a use must be remembered. */
  readonly usableUntil: Date;
  /** Whether the token may obtain only one certificate (it has a `jti` and the issuer keeps them single-use). */
  readonly singleUse: boolean;
}

/** The default of {@link JwtIssuerSettings.maxTokenAgeSeconds}: an hour, as Kubernetes projects them by default. */
export const DEFAULT_MAX_TOKEN_AGE_SECONDS = 3600;

/** The algorithms accepted when an issuer does not list its own. */
export const DEFAULT_JWT_ALGORITHMS: readonly string[] = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "EdDSA",
];

/** Everything an operator may list: the defaults plus the other asymmetric JWS algorithms jose supports. No HS*, no none. */
const PERMITTED_ALGORITHMS: ReadonlySet<string> = new Set([...DEFAULT_JWT_ALGORITHMS, "ES512", "Ed25519"]);

/** A compact JWS is three base64url parts; Kubernetes tokens are 1–2 KiB. */
export const MAX_JWT_LENGTH = 16 * 1024;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const CLOCK_TOLERANCE_SECONDS = 30;
const DEFAULT_JWKS_CACHE_SECONDS = 300;
const DEFAULT_FETCH_TIMEOUT_MS = 5000;

/** What a claim value must look like to be substituted into a template: one safe path segment / DNS label piece. */
const CLAIM_VALUE = /^[A-Za-z0-9._-]{1,128}$/;
const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PLACEHOLDER = /\{([^{}]*)\}/g;
const MAX_CLAIM_PATH_SEGMENTS = 16;
/** Substituted for every variable when templates are checked at start-up. */
const SAMPLE_VALUE = "x";

function isClaimValue(value: string): boolean {
  return CLAIM_VALUE.test(value) && value !== "." && !value.includes("..");
}

/** The variable names a template uses, in order of first use. @throws ConfigError if the template is malformed. */
function templateVariables(template: string, what: string): string[] {
  const names: string[] = [];
  for (const match of template.matchAll(PLACEHOLDER)) {
    const name = match[1] as string;
    if (!VARIABLE_NAME.test(name)) {
      throw new ConfigError(`${what} has placeholder {${name}}: variable names are letters, digits and '_'`);
    }
    if (!names.includes(name)) names.push(name);
  }
  if (/[{}]/.test(template.replace(PLACEHOLDER, ""))) {
    throw new ConfigError(`${what} has an unmatched '{' or '}'`);
  }
  return names;
}

/**
 * Substitutes `{variable}` placeholders in a SPIFFE ID (or DNS name) template, in one pass: substituted text is
 * never expanded again. Each value must be 1–128 characters of letters, digits, '.', '-' and '_', and must not be
 * `.` or contain `..`, so that a value can neither add path segments nor walk up the path. The result is not
 * validated as a SPIFFE ID; callers parse it.
 *
 * @throws ConfigError if the template is malformed or names a variable `values` does not define.
 * @throws InvalidIdentityError if a value is not allowed.
 */
export function renderSpiffeIdTemplate(template: string, values: Readonly<Record<string, string>>): string {
  templateVariables(template, "the template");
  return template.replace(PLACEHOLDER, (_, name: string) => {
    const value = Object.hasOwn(values, name) ? values[name] : undefined;
    if (value === undefined) throw new ConfigError(`template variable {${name}} has no value`);
    if (!isClaimValue(value)) {
      throw new InvalidIdentityError(
        `the value of template variable {${name}} must be 1–128 letters, digits, '.', '-' or '_', and not contain '..'`,
      );
    }
    return value;
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Every value a dotted claim path can denote in `node`. A run of segments may name one key containing dots
 * (`kubernetes.io`), so all splittings are tried; the search stops at the second hit because more than one is
 * refused anyway. Own properties only, so `__proto__` or `constructor` never resolve to something inherited.
 */
function lookupClaim(node: unknown, segments: readonly string[], start: number, found: unknown[]): void {
  if (start === segments.length) {
    found.push(node);
    return;
  }
  if (!isObject(node)) return;
  for (let end = start + 1; end <= segments.length && found.length < 2; end++) {
    const key = segments.slice(start, end).join(".");
    if (Object.hasOwn(node, key)) lookupClaim(node[key], segments, end, found);
  }
}

type KeyResolver = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>;

/** The issuer's key set could not be obtained (network, HTTP status, bad JSON); not the token's fault. */
class KeySetUnavailableError extends Error {
  constructor(options: { cause: unknown }) {
    super("the JWKS could not be fetched", options);
    this.name = "KeySetUnavailableError";
  }
}

interface CompiledIssuer {
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly algorithms: readonly string[];
  readonly spiffeIdTemplate: string;
  readonly dnsNameTemplates: readonly string[];
  /** Variables the templates use, each with its claim path split on dots. */
  readonly variables: ReadonlyArray<{ readonly name: string; readonly path: string; readonly segments: readonly string[] }>;
  readonly maxTtlSeconds: number;
  readonly maxTokenAgeSeconds: number;
  readonly singleUseJti: boolean;
  readonly requireJti: boolean;
  readonly keys: KeyResolver;
}

function positiveInteger(value: unknown, field: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
    throw new ConfigError(`${field} must be a positive integer`);
  }
  return value;
}

function isLoopbackHost(hostname: string): boolean {
  return hostname === "localhost" || hostname === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

/** Reads and checks a JWKS file: valid JSON, a key set jose accepts, public asymmetric keys only. */
function readJwksFile(path: string, where: string): JSONWebKeySet {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(`${where}.jwksFile "${path}" cannot be read: ${(error as Error).message}`, { cause: error });
  }
  let jwks: unknown;
  try {
    jwks = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${where}.jwksFile "${path}" is not valid JSON`, { cause: error });
  }
  if (!isObject(jwks) || !Array.isArray(jwks.keys) || jwks.keys.length === 0) {
    throw new ConfigError(`${where}.jwksFile "${path}" must be a JWKS: an object with a non-empty "keys" array`);
  }
  jwks.keys.forEach((key: unknown, index) => {
    if (!isObject(key) || !["RSA", "EC", "OKP"].includes(key.kty as string)) {
      throw new ConfigError(`${where}.jwksFile "${path}" key ${index} must be an RSA, EC or OKP public key`);
    }
    // Private parameters in a verification key set mean someone copied the wrong file.
    for (const secret of ["d", "p", "q", "dp", "dq", "qi", "k"]) {
      if (Object.hasOwn(key, secret)) {
        throw new ConfigError(`${where}.jwksFile "${path}" key ${index} contains private key material ("${secret}")`);
      }
    }
  });
  return jwks as unknown as JSONWebKeySet;
}

/** Turns a jose (or key-fetch) failure into the public refusal. Never includes the token. */
function refusalFor(error: unknown): { reason: string; message: string } {
  if (error instanceof KeySetUnavailableError || error instanceof joseErrors.JWKSTimeout) {
    return { reason: "jwks_unavailable", message: "the JWT issuer's keys could not be fetched; try again later" };
  }
  if (error instanceof joseErrors.JWTExpired) {
    if (error.claim === "iat") {
      return { reason: "too_old", message: "the JWT was issued longer ago than this issuer's maximum token age allows (iat claim)" };
    }
    return { reason: "expired", message: "the JWT has expired" };
  }
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    const { claim, reason } = error;
    if (claim === "nbf") return { reason: "not_yet_valid", message: "the JWT is not yet valid (nbf is in the future)" };
    if (claim === "aud") {
      return reason === "missing"
        ? { reason: "no_audience", message: "the JWT has no audience (aud claim)" }
        : { reason: "audience", message: "the JWT audience is not accepted" };
    }
    if (claim === "exp" && reason === "missing") {
      return { reason: "no_expiry", message: "the JWT has no expiry (exp claim); only expiring tokens are accepted" };
    }
    if (claim === "iat") {
      return reason === "missing"
        ? { reason: "no_issued_at", message: "the JWT has no issue time (iat claim); only tokens with iat and exp are accepted" }
        : { reason: "issued_in_future", message: "the JWT's issue time (iat claim) is in the future" };
    }
    if (claim === "iss") return { reason: "issuer", message: "the JWT issuer is not configured" };
    return {
      reason: `claim_${reason}`,
      message: `the JWT ${JSON.stringify(claim.slice(0, 32))} claim is ${reason === "missing" ? "missing" : "invalid"}`,
    };
  }
  if (error instanceof joseErrors.JOSEAlgNotAllowed) {
    return { reason: "algorithm", message: "the JWT algorithm is not allowed" };
  }
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) {
    return { reason: "signature", message: "the JWT signature does not verify" };
  }
  if (error instanceof joseErrors.JWKSNoMatchingKey) {
    return { reason: "unknown_key", message: "the JWT was signed with a key (kid) the issuer does not publish" };
  }
  if (error instanceof joseErrors.JWKSMultipleMatchingKeys) {
    return { reason: "ambiguous_key", message: "the JWT names a key (kid) the issuer publishes more than once" };
  }
  if (error instanceof joseErrors.JOSENotSupported) {
    return { reason: "unsupported", message: "the JWT uses an unsupported algorithm, key or critical header" };
  }
  if (error instanceof joseErrors.JWSInvalid || error instanceof joseErrors.JWTInvalid) {
    return { reason: "malformed", message: "the JWT is malformed" };
  }
  return { reason: "unverifiable", message: "the JWT could not be verified" };
}

/**
 * Verifies JWTs from the configured issuers and maps their claims to a workload identity. Construction validates
 * the whole configuration (and reads JWKS files), so a mistake stops start-up rather than the first enrolment.
 */
export class JwtAttestor {
  private readonly issuers = new Map<string, CompiledIssuer>();
  private readonly trustDomain: string;
  private readonly clock: Clock;
  private readonly logger: Logger;

  /** @throws ConfigError naming the first setting that cannot work. */
  constructor(options: JwtAttestorOptions) {
    this.clock = options.clock;
    this.logger = options.logger.child({ component: "jwt-attestation" });
    const trustDomain = options.trustDomain;
    let trustDomainOk = false;
    try {
      trustDomainOk = typeof trustDomain === "string" && parseSpiffeId(`spiffe://${trustDomain}`).path === "";
    } catch {
      // reported below
    }
    if (!trustDomainOk) throw new ConfigError(`trust domain ${JSON.stringify(trustDomain)} is not a valid trust domain name`);
    this.trustDomain = trustDomain;
    const operatorMaxTtl = positiveInteger(options.maxTtlSeconds, "maxTtlSeconds");
    const fetchTimeoutMs = positiveInteger(options.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS, "fetchTimeoutMs");
    if (!Array.isArray(options.issuers)) throw new ConfigError("issuers must be a list");

    options.issuers.forEach((settings, index) => {
      const compiled = this.compile(settings, index, trustDomain, operatorMaxTtl, fetchTimeoutMs);
      if (this.issuers.has(compiled.issuer)) {
        throw new ConfigError(`issuers[${index}]: issuer "${compiled.issuer}" is configured more than once`);
      }
      this.issuers.set(compiled.issuer, compiled);
    });
  }

  private compile(
    settings: JwtIssuerSettings,
    index: number,
    trustDomain: string,
    operatorMaxTtl: number,
    fetchTimeoutMs: number,
  ): CompiledIssuer {
    const where = `issuers[${index}]`;
    if (!isObject(settings)) throw new ConfigError(`${where} must be an object`);
    const { issuer } = settings;
    if (typeof issuer !== "string" || issuer.trim() === "") throw new ConfigError(`${where}.issuer must be a non-empty string`);
    const at = `${where} (${issuer})`;

    const { audiences } = settings;
    if (!Array.isArray(audiences) || audiences.length === 0) {
      throw new ConfigError(`${at}.audiences must list at least one audience`);
    }
    if (audiences.some((audience) => typeof audience !== "string" || audience === "")) {
      throw new ConfigError(`${at}.audiences must be non-empty strings`);
    }

    const algorithms = settings.algorithms ?? [...DEFAULT_JWT_ALGORITHMS];
    if (!Array.isArray(algorithms) || algorithms.length === 0) {
      throw new ConfigError(`${at}.algorithms must list at least one algorithm`);
    }
    for (const algorithm of algorithms) {
      if (!PERMITTED_ALGORITHMS.has(algorithm)) {
        const why = /^HS/i.test(String(algorithm))
          ? "symmetric (HMAC) algorithms would let anyone holding the secret mint tokens"
          : String(algorithm).toLowerCase() === "none"
            ? "unsigned tokens are never accepted"
            : "it is not a supported asymmetric JWS algorithm";
        throw new ConfigError(
          `${at}.algorithms: "${String(algorithm)}" is not allowed (${why}); use ${[...PERMITTED_ALGORITHMS].join(", ")}`,
        );
      }
    }

    const claims = settings.claims;
    if (!isObject(claims)) throw new ConfigError(`${at}.claims must map template variables to claim paths`);
    for (const [name, path] of Object.entries(claims)) {
      if (!VARIABLE_NAME.test(name)) {
        throw new ConfigError(`${at}.claims: "${name}" is not a variable name (letters, digits and '_')`);
      }
      if (typeof path !== "string" || path === "" || path.split(".").some((segment) => segment === "")) {
        throw new ConfigError(`${at}.claims.${name} must be a dotted claim path such as "sub" or "kubernetes.io.namespace"`);
      }
      if (path.split(".").length > MAX_CLAIM_PATH_SEGMENTS) {
        throw new ConfigError(`${at}.claims.${name} has more than ${MAX_CLAIM_PATH_SEGMENTS} segments`);
      }
    }

    const spiffeIdTemplate = settings.spiffeIdTemplate;
    if (typeof spiffeIdTemplate !== "string" || spiffeIdTemplate === "") {
      throw new ConfigError(`${at}.spiffeIdTemplate must be a non-empty string`);
    }
    const dnsNameTemplates = settings.dnsNameTemplates ?? [];
    if (!Array.isArray(dnsNameTemplates) || dnsNameTemplates.some((template) => typeof template !== "string")) {
      throw new ConfigError(`${at}.dnsNameTemplates must be a list of strings`);
    }

    const used: string[] = [];
    const templates = [
      { template: spiffeIdTemplate, what: `${at}.spiffeIdTemplate` },
      ...dnsNameTemplates.map((template, i) => ({ template, what: `${at}.dnsNameTemplates[${i}]` })),
    ];
    for (const { template, what } of templates) {
      for (const name of templateVariables(template, what)) {
        if (!Object.hasOwn(claims, name)) {
          throw new ConfigError(`${what} uses {${name}}, which ${at}.claims does not define`);
        }
        if (!used.includes(name)) used.push(name);
      }
    }
    const unused = Object.keys(claims).filter((name) => !used.includes(name));
    if (unused.length > 0) {
      this.logger.warn({ issuer, unused }, "JWT issuer claims that no template uses are ignored");
    }

    // The trust domain must be literal: a claim must never choose it.
    const authority = spiffeIdTemplate.startsWith("spiffe://") ? spiffeIdTemplate.slice(9).split("/")[0] ?? "" : "";
    if (/[{}]/.test(authority)) {
      throw new ConfigError(`${at}.spiffeIdTemplate must not have template variables in its trust domain`);
    }
    const sample = Object.fromEntries(used.map((name) => [name, SAMPLE_VALUE]));
    try {
      const id = parseWorkloadSpiffeId(renderSpiffeIdTemplate(spiffeIdTemplate, sample));
      if (!spiffeIdIsInTrustDomain(id, trustDomain)) {
        throw new ConfigError(
          `${at}.spiffeIdTemplate is in trust domain "${id.trustDomain}", not this CA's trust domain "${trustDomain}"`,
        );
      }
      dnsNameTemplates.forEach((template) => parseDnsName(renderSpiffeIdTemplate(template, sample)));
    } catch (error) {
      if (error instanceof InvalidIdentityError) {
        throw new ConfigError(`${at}: a template does not give a valid name: ${error.message}`, { cause: error });
      }
      throw error;
    }

    const issuerMaxTtl =
      settings.maxTtlSeconds === undefined ? operatorMaxTtl : positiveInteger(settings.maxTtlSeconds, `${at}.maxTtlSeconds`);
    const maxTokenAgeSeconds = positiveInteger(settings.maxTokenAgeSeconds ?? DEFAULT_MAX_TOKEN_AGE_SECONDS, `${at}.maxTokenAgeSeconds`);
    for (const flag of ["singleUseJti", "requireJti"] as const) {
      if (settings[flag] !== undefined && typeof settings[flag] !== "boolean") throw new ConfigError(`${at}.${flag} must be true or false`);
    }
    const singleUseJti = settings.singleUseJti ?? true;
    const requireJti = settings.requireJti ?? false;
    if (requireJti && !singleUseJti) {
      throw new ConfigError(`${at}.requireJti needs singleUseJti: a jti that is required but not kept single-use protects nothing`);
    }

    const hasFile = settings.jwksFile !== undefined;
    const hasUrl = settings.jwksUrl !== undefined;
    if (hasFile === hasUrl) throw new ConfigError(`${at} must set exactly one of jwksFile and jwksUrl`);
    let keys: KeyResolver;
    if (hasFile) {
      if (typeof settings.jwksFile !== "string" || settings.jwksFile === "") {
        throw new ConfigError(`${at}.jwksFile must be a non-empty path`);
      }
      if (settings.jwksCacheSeconds !== undefined) {
        throw new ConfigError(`${at}.jwksCacheSeconds applies to jwksUrl only; a jwksFile is read once at start-up`);
      }
      const jwks = readJwksFile(settings.jwksFile, at);
      try {
        keys = createLocalJWKSet(jwks);
      } catch (error) {
        throw new ConfigError(`${at}.jwksFile "${settings.jwksFile}" is not a valid JWKS`, { cause: error });
      }
    } else {
      let url: URL;
      try {
        url = new URL(settings.jwksUrl as string);
      } catch (error) {
        throw new ConfigError(`${at}.jwksUrl is not a URL`, { cause: error });
      }
      // Whoever can change the key set in transit can mint any identity the templates allow.
      if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopbackHost(url.hostname))) {
        throw new ConfigError(`${at}.jwksUrl must use https (plain http is accepted only for a loopback address)`);
      }
      if (url.username !== "" || url.password !== "") {
        throw new ConfigError(`${at}.jwksUrl must not contain credentials`);
      }
      const cacheSeconds = positiveInteger(
        settings.jwksCacheSeconds ?? DEFAULT_JWKS_CACHE_SECONDS,
        `${at}.jwksCacheSeconds`,
      );
      // jose refetches on a `kid` it does not know (at most once per 30 s cool-down) and when the cache is stale.
      const remote = createRemoteJWKSet(url, { cacheMaxAge: cacheSeconds * 1000, timeoutDuration: fetchTimeoutMs });
      keys = async (header, token) => {
        try {
          return await remote(header, token);
        } catch (error) {
          // Key selection failures are about the token; anything else (network, HTTP status, JSON, a key set
          // jose rejects) is about the issuer's endpoint.
          if (
            error instanceof joseErrors.JWKSNoMatchingKey ||
            error instanceof joseErrors.JWKSMultipleMatchingKeys ||
            error instanceof joseErrors.JOSENotSupported
          ) {
            throw error;
          }
          throw new KeySetUnavailableError({ cause: error });
        }
      };
    }

    return {
      issuer,
      audiences: [...audiences],
      algorithms: [...algorithms],
      spiffeIdTemplate,
      dnsNameTemplates: [...dnsNameTemplates],
      variables: used.map((name) => {
        const path = claims[name] as string;
        return { name, path, segments: path.split(".") };
      }),
      maxTtlSeconds: Math.min(issuerMaxTtl, operatorMaxTtl),
      maxTokenAgeSeconds,
      singleUseJti,
      requireJti,
      keys,
    };
  }

  /** The configured issuer names. */
  get issuerNames(): string[] {
    return [...this.issuers.keys()];
  }

  /**
   * Verifies `jwt` and returns the identity it attests.
   *
   * @throws UnauthenticatedError saying what is wrong with the token (or that the issuer's keys are unreachable).
   */
  async attest(jwt: string): Promise<JwtAttestation> {
    if (typeof jwt !== "string" || jwt === "") throw new UnauthenticatedError("no JWT was presented");
    if (jwt.length > MAX_JWT_LENGTH) {
      throw new UnauthenticatedError(`the JWT is longer than ${MAX_JWT_LENGTH} characters`);
    }
    if (!COMPACT_JWS.test(jwt)) {
      throw new UnauthenticatedError("the JWT is malformed: expected a compact JWS (three base64url parts separated by '.')");
    }

    // Unverified: used only to choose the issuer configuration the token is then verified against.
    let unverified: JWTPayload;
    try {
      decodeProtectedHeader(jwt);
      unverified = decodeJwt(jwt);
    } catch (error) {
      throw new UnauthenticatedError("the JWT is malformed: its header or payload is not a JSON object", { cause: error });
    }
    if (typeof unverified.iss !== "string" || unverified.iss === "") {
      throw new UnauthenticatedError("the JWT has no issuer (iss claim)");
    }
    const issuer = this.issuers.get(unverified.iss);
    if (!issuer) {
      this.logger.info({ reason: "unknown_issuer" }, "JWT attestation refused");
      throw new UnauthenticatedError("the JWT issuer is not configured");
    }

    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(jwt, issuer.keys, {
        issuer: issuer.issuer,
        audience: [...issuer.audiences],
        algorithms: [...issuer.algorithms],
        requiredClaims: ["exp", "iat"],
        maxTokenAge: issuer.maxTokenAgeSeconds,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        currentDate: this.clock.now(),
      }));
    } catch (error) {
      const { reason, message } = refusalFor(error);
      const fields = { issuer: issuer.issuer, reason, cause: error instanceof Error ? error.message : String(error) };
      if (reason === "jwks_unavailable" || reason === "unverifiable") {
        const inner = error instanceof Error && error.cause instanceof Error ? error.cause : undefined;
        this.logger.warn({ ...fields, detail: inner?.message }, "JWT attestation failed: issuer keys unusable");
      } else {
        this.logger.info(fields, "JWT attestation refused");
      }
      throw new UnauthenticatedError(message, { cause: error });
    }

    const refuse = (reason: string, message: string): never => {
      this.logger.info({ issuer: issuer.issuer, reason }, "JWT attestation refused");
      throw new UnauthenticatedError(message);
    };

    if (typeof payload.sub !== "string" || payload.sub === "") refuse("no_subject", "the JWT has no subject (sub claim)");
    if (payload.jti !== undefined && (typeof payload.jti !== "string" || payload.jti === "" || payload.jti.length > 256)) {
      refuse("bad_jti", "the JWT jti claim must be a string of 1 to 256 characters");
    }
    if (issuer.requireJti && payload.jti === undefined) refuse("no_jti", "the JWT has no token ID (jti claim), which this issuer requires");
    // A long-lived token is a bearer credential that can be replayed for as long as it lasts. The tolerance
    // lets Kubernetes' default projected tokens (3607 s) through a one-hour limit.
    const validitySeconds = (payload.exp as number) - (payload.iat as number);
    if (validitySeconds > issuer.maxTokenAgeSeconds + CLOCK_TOLERANCE_SECONDS) {
      refuse(
        "lifetime_too_long",
        `the JWT is valid for ${validitySeconds} s (iat to exp); this issuer accepts tokens valid for at most ${issuer.maxTokenAgeSeconds} s`,
      );
    }

    const values: Record<string, string> = {};
    for (const { name, path, segments } of issuer.variables) {
      const found: unknown[] = [];
      lookupClaim(payload, segments, 0, found);
      if (found.length === 0) refuse("missing_claim", `the JWT has no "${path}" claim, which the issuer's template needs`);
      if (found.length > 1) refuse("ambiguous_claim", `the JWT claim path "${path}" matches more than one claim`);
      const value = found[0];
      if (typeof value !== "string" || !isClaimValue(value)) {
        refuse(
          "bad_claim",
          `the JWT "${path}" claim must be a string of 1–128 letters, digits, '.', '-' or '_', without '..'`,
        );
      }
      values[name] = value as string;
    }

    let spiffeId: string;
    let dnsNames: string[];
    try {
      const id = parseWorkloadSpiffeId(renderSpiffeIdTemplate(issuer.spiffeIdTemplate, values));
      // The template's trust domain is literal and was checked at start-up; this holds unless that check is broken.
      if (!spiffeIdIsInTrustDomain(id, this.trustDomain)) {
        throw new InvalidIdentityError(`the SPIFFE ID is outside trust domain "${this.trustDomain}"`);
      }
      spiffeId = id.id;
      dnsNames = [...new Set(issuer.dnsNameTemplates.map((template) => parseDnsName(renderSpiffeIdTemplate(template, values))))];
    } catch (error) {
      if (error instanceof InvalidIdentityError) {
        this.logger.info({ issuer: issuer.issuer, reason: "bad_identity", cause: error.message }, "JWT attestation refused");
        throw new UnauthenticatedError(`the JWT's claims do not give a valid workload identity: ${error.message}`, {
          cause: error,
        });
      }
      throw error;
    }

    const attestation: JwtAttestation = {
      issuer: issuer.issuer,
      subject: payload.sub as string,
      spiffeId,
      dnsNames,
      maxTtlSeconds: issuer.maxTtlSeconds,
      ...(payload.jti !== undefined ? { tokenId: payload.jti } : {}),
      expiresAt: new Date((payload.exp as number) * 1000),
      usableUntil: new Date(((payload.exp as number) + CLOCK_TOLERANCE_SECONDS) * 1000),
      singleUse: issuer.singleUseJti && payload.jti !== undefined,
    };
    this.logger.debug(
      { issuer: attestation.issuer, subject: attestation.subject, spiffeId, tokenId: attestation.tokenId },
      "JWT attested",
    );
    return attestation;
  }
}
