import type { JwtIssuerSettings } from "../policy/jwt-attestation.js";
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { z } from "zod";
import { ConfigError } from "../common/errors.js";

/**
 * The validated, frozen configuration of one Anchorage process. This module is the only reader of the
 * environment and of config files; everything else receives the parts it needs as arguments.
 */
export interface Config {
  readonly dataDir: string;
  readonly host: string;
  readonly graphqlPort: number;
  readonly httpPort: number;
  /** Base URL written into certificates (CRL distribution point, AIA). Derived from host and HTTP port when unset. */
  readonly publicBaseUrl: string | undefined;
  readonly trustDomain: string;
  readonly hsm: {
    readonly modulePath: string;
    readonly tokenLabel: string;
    /** PIN of the online token. Undefined in development, where the bootstrap keeps one in the data folder. */
    readonly pin: string | undefined;
    readonly sessionPoolSize: number;
  };
  /** `development` creates the SoftHSM tokens, root and intermediate on first start; `none` expects them to exist. */
  readonly bootstrap: "development" | "none";
  readonly issuance: {
    readonly defaultTtlSeconds: number;
    readonly maxTtlSeconds: number;
    readonly backdateSeconds: number;
    readonly maxBatchSize: number;
  };
  readonly limits: {
    readonly maxRequestBytes: number;
    readonly maxQueryDepth: number;
    readonly maxAliases: number;
    readonly maxTokens: number;
  };
  readonly crl: {
    /** nextUpdate - thisUpdate of intermediate CRLs. */
    readonly validitySeconds: number;
  };
  readonly database: {
    /** A postgres:// URL selects the PostgreSQL store, shared by several nodes; unset: SQLite in the data folder. */
    readonly url?: string;
    /**
     * The bound on every wait on the database before a request fails with UNAVAILABLE: SQLite's write lock held by
     * another process; PostgreSQL's connect, statement and lock timeouts.
     */
    readonly busyTimeoutMs: number;
    /** PostgreSQL connections this process keeps at most. */
    readonly poolSize: number;
  };
  readonly ocsp: {
    /** nextUpdate - thisUpdate of OCSP responses. */
    readonly responseValiditySeconds: number;
    /** Signatures a second this process may make for OCSP requests as they arrive (nonce, several CertIDs, unknown serial). */
    readonly onRequestSignaturesPerSecond: number;
    /** How many of those may be made at once after a quiet spell. */
    readonly onRequestSignatureBurst: number;
  };
  readonly readiness: {
    /** How often /readyz's answer is probed (one HSM signature and one database lock each time). */
    readonly probeIntervalMs: number;
  };
  readonly transparencyLog: {
    /** Checkpoint origin and key name; `<trust domain>/log` when unset. */
    readonly origin: string | undefined;
    /** Label of the log's P-256 signing key on the online token (made on first start). */
    readonly keyLabel: string;
    /** How often new leaves are sequenced and a checkpoint signed. */
    readonly intervalMs: number;
  };
  /** Issuers whose signed JWTs may obtain a first certificate (config file only); see JwtIssuerSettings. */
  readonly jwtIssuers: readonly JwtIssuerSettings[];
  readonly renewal: {
    /** Seconds after expiry during which a certificate may still renew itself. */
    readonly graceSeconds: number;
    /** Whether a renewal may keep the current key. */
    readonly allowSameKey: boolean;
  };
  readonly trustBundleConsumers: {
    /** Bound on registered trust bundle consumers (only admins register them). */
    readonly max: number;
  };
  readonly rateLimits: {
    /** Length of the fixed window every limit below counts in. */
    readonly windowSeconds: number;
    /** Failed attempts (bad credentials) per client address and window; then requests without a good API key are refused. */
    readonly failuresPerAddress: number;
    /** Issuances per enrollment token or JWT subject and window. */
    readonly issuancesPerCredential: number;
    /** Requests per API key and window. */
    readonly requestsPerApiKey: number;
    /** Unauthenticated refusals of one kind from one address recorded one by one per window; the rest are counted. */
    readonly refusalsAuditedPerWindow: number;
  };
  /** Origins whose browser scripts may call the API (CORS); none when empty. */
  readonly corsOrigins: readonly string[];
  readonly workers: number;
  readonly logLevel: "debug" | "info" | "warn" | "error";
}

export const DEFAULT_SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so";

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();

const schema = z
  .object({
    dataDir: z.string().min(1).default("./data"),
    host: z.string().min(1).default("127.0.0.1"),
    graphqlPort: port.default(8443),
    httpPort: port.default(8080),
    publicBaseUrl: z
      .url({ protocol: /^https?$/ })
      .refine((url) => !url.endsWith("/"), "must not end with a slash")
      .optional(),
    trustDomain: z
      .string()
      .regex(/^[a-z0-9._-]+$/, "must be a SPIFFE trust domain name: lower-case letters, digits, '.', '_' and '-'")
      .default("anchorage.test"),
    hsm: z
      .object({
        modulePath: z.string().min(1).default(DEFAULT_SOFTHSM_MODULE),
        tokenLabel: z.string().min(1).max(32).default("anchorage-online"),
        pin: z.string().min(4).optional(),
        sessionPoolSize: positiveInt.max(64).default(4),
      })
      .prefault({}),
    bootstrap: z.enum(["development", "none"]).default("development"),
    issuance: z
      .object({
        defaultTtlSeconds: positiveInt.default(3600),
        maxTtlSeconds: positiveInt.max(86400 * 30).default(86400),
        backdateSeconds: z.coerce.number().int().min(0).max(3600).default(300),
        maxBatchSize: positiveInt.max(1000).default(64),
      })
      .prefault({})
      .refine((issuance) => issuance.defaultTtlSeconds <= issuance.maxTtlSeconds, {
        message: "defaultTtlSeconds must not exceed maxTtlSeconds",
      }),
    limits: z
      .object({
        maxRequestBytes: positiveInt.default(512 * 1024),
        maxQueryDepth: positiveInt.default(12),
        maxAliases: positiveInt.default(30),
        maxTokens: positiveInt.default(5000),
      })
      .prefault({}),
    crl: z
      .object({ validitySeconds: positiveInt.min(600).max(30 * 86400).default(86400) })
      .prefault({}),
    database: z
      .object({
        url: z
          .string()
          .regex(/^postgres(ql)?:\/\//, "must be a postgres:// or postgresql:// URL")
          .optional(),
        busyTimeoutMs: positiveInt.max(600_000).default(5_000),
        poolSize: positiveInt.max(1_000).default(10),
      })
      .prefault({}),
    ocsp: z
      .object({
        responseValiditySeconds: positiveInt.min(300).max(7 * 86400).default(4 * 3600),
        onRequestSignaturesPerSecond: z.coerce.number().min(0).max(100_000).default(100),
        onRequestSignatureBurst: z.coerce.number().int().min(0).max(100_000).default(100),
      })
      .prefault({}),
    readiness: z
      .object({ probeIntervalMs: positiveInt.min(100).max(600_000).default(5000) })
      .prefault({}),
    transparencyLog: z
      .object({
        origin: z
          .string()
          .regex(/^[^\s+]+$/u, "must be non-empty without spaces or '+' (a signed-note key name)")
          .optional(),
        keyLabel: z.string().min(1).max(64).default("anchorage-log"),
        intervalMs: positiveInt.min(100).max(3_600_000).default(1000),
      })
      .prefault({}),
    // Shape only; the attestor checks the meaning (templates, algorithms, key sets) at start-up.
    jwtIssuers: z
      .array(
        z
          .object({
            issuer: z.string().min(1),
            audiences: z.array(z.string().min(1)).min(1),
            jwksFile: z.string().min(1).optional(),
            jwksUrl: z.string().min(1).optional(),
            spiffeIdTemplate: z.string().min(1),
            claims: z.record(z.string(), z.string()),
            dnsNameTemplates: z.array(z.string()).optional(),
            maxTtlSeconds: positiveInt.optional(),
            algorithms: z.array(z.string()).optional(),
            jwksCacheSeconds: positiveInt.optional(),
            requireRegistration: z.boolean().optional(),
            maxTokenAgeSeconds: positiveInt.optional(),
            singleUseJti: z.boolean().optional(),
            requireJti: z.boolean().optional(),
          })
          .strict(),
      )
      .default([]),
    renewal: z
      .object({
        graceSeconds: z.coerce.number().int().min(0).max(7 * 86400).default(0),
        allowSameKey: z
          .union([z.boolean(), z.enum(["true", "false"]).transform((value) => value === "true")])
          .default(false),
      })
      .prefault({}),
    trustBundleConsumers: z.object({ max: positiveInt.max(1_000_000).default(10_000) }).prefault({}),
    rateLimits: z
      .object({
        windowSeconds: positiveInt.max(86400).default(60),
        failuresPerAddress: positiveInt.default(300),
        issuancesPerCredential: positiveInt.default(6000),
        requestsPerApiKey: positiveInt.default(6000),
        refusalsAuditedPerWindow: z.coerce.number().int().min(0).default(10),
      })
      .prefault({}),
    corsOrigins: z
      .union([
        z.array(z.string()),
        z.string().transform((list) => list.split(",").map((origin) => origin.trim()).filter((origin) => origin.length > 0)),
      ])
      .pipe(z.array(z.url({ protocol: /^https?$/ }).refine((origin) => new URL(origin).origin === origin, "must be an origin: scheme, host and port only")))
      .default([]),
    workers: positiveInt.max(64).default(1),
    logLevel: z.enum(["debug", "info", "warn", "error"]).default("info"),
  })
  .strict();

/** Environment variable → config path. Environment wins over the config file. */
const ENVIRONMENT: Record<string, string> = {
  ANCHORAGE_DATA_DIR: "dataDir",
  ANCHORAGE_HOST: "host",
  ANCHORAGE_GRAPHQL_PORT: "graphqlPort",
  ANCHORAGE_HTTP_PORT: "httpPort",
  ANCHORAGE_PUBLIC_URL: "publicBaseUrl",
  ANCHORAGE_TRUST_DOMAIN: "trustDomain",
  ANCHORAGE_PKCS11_MODULE: "hsm.modulePath",
  ANCHORAGE_HSM_TOKEN_LABEL: "hsm.tokenLabel",
  ANCHORAGE_HSM_PIN: "hsm.pin",
  ANCHORAGE_HSM_SESSIONS: "hsm.sessionPoolSize",
  ANCHORAGE_BOOTSTRAP: "bootstrap",
  ANCHORAGE_DEFAULT_TTL_SECONDS: "issuance.defaultTtlSeconds",
  ANCHORAGE_MAX_TTL_SECONDS: "issuance.maxTtlSeconds",
  ANCHORAGE_BACKDATE_SECONDS: "issuance.backdateSeconds",
  ANCHORAGE_MAX_BATCH_SIZE: "issuance.maxBatchSize",
  ANCHORAGE_MAX_REQUEST_BYTES: "limits.maxRequestBytes",
  ANCHORAGE_CRL_VALIDITY_SECONDS: "crl.validitySeconds",
  ANCHORAGE_DATABASE_URL: "database.url",
  ANCHORAGE_DB_BUSY_TIMEOUT_MS: "database.busyTimeoutMs",
  ANCHORAGE_DB_POOL_SIZE: "database.poolSize",
  ANCHORAGE_OCSP_VALIDITY_SECONDS: "ocsp.responseValiditySeconds",
  ANCHORAGE_OCSP_SIGNING_BUDGET: "ocsp.onRequestSignaturesPerSecond",
  ANCHORAGE_OCSP_SIGNING_BURST: "ocsp.onRequestSignatureBurst",
  ANCHORAGE_READINESS_INTERVAL_MS: "readiness.probeIntervalMs",
  ANCHORAGE_LOG_ORIGIN: "transparencyLog.origin",
  ANCHORAGE_LOG_KEY_LABEL: "transparencyLog.keyLabel",
  ANCHORAGE_LOG_INTERVAL_MS: "transparencyLog.intervalMs",
  ANCHORAGE_RENEWAL_GRACE_SECONDS: "renewal.graceSeconds",
  ANCHORAGE_RENEWAL_ALLOW_SAME_KEY: "renewal.allowSameKey",
  ANCHORAGE_MAX_TRUST_BUNDLE_CONSUMERS: "trustBundleConsumers.max",
  ANCHORAGE_RATE_LIMIT_WINDOW_SECONDS: "rateLimits.windowSeconds",
  ANCHORAGE_RATE_LIMIT_FAILURES_PER_ADDRESS: "rateLimits.failuresPerAddress",
  ANCHORAGE_RATE_LIMIT_ISSUANCES_PER_CREDENTIAL: "rateLimits.issuancesPerCredential",
  ANCHORAGE_RATE_LIMIT_REQUESTS_PER_API_KEY: "rateLimits.requestsPerApiKey",
  ANCHORAGE_AUDIT_REFUSALS_PER_WINDOW: "rateLimits.refusalsAuditedPerWindow",
  ANCHORAGE_CORS_ORIGINS: "corsOrigins",
  ANCHORAGE_WORKERS: "workers",
  ANCHORAGE_LOG_LEVEL: "logLevel",
};

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split(".");
  let node = target;
  for (const key of keys.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== "object" || next === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[keys[keys.length - 1] as string] = value;
}

function readConfigFile(path: string): Record<string, unknown> {
  if (!existsSync(path)) throw new ConfigError(`config file ${path} (ANCHORAGE_CONFIG) does not exist`);
  try {
    const parsed: unknown = JSON.parse(readFileSync(path, "utf8"));
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError(`config file ${path} must hold a JSON object`);
    }
    return parsed as Record<string, unknown>;
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(`config file ${path} is not valid JSON`, { cause: error });
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

/**
 * Reads `ANCHORAGE_CONFIG` (a JSON file, optional) and the `ANCHORAGE_*` variables, validates them and
 * returns a frozen `Config`. Bad configuration fails here, naming the field, never later at first use.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): Config {
  const raw: Record<string, unknown> = env.ANCHORAGE_CONFIG ? readConfigFile(env.ANCHORAGE_CONFIG) : {};
  for (const [variable, path] of Object.entries(ENVIRONMENT)) {
    const value = env[variable];
    if (value !== undefined && value !== "") setPath(raw, path, value);
  }
  const result = schema.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const path = issue.path.join(".");
      const variable = Object.entries(ENVIRONMENT).find(([, p]) => p === path)?.[0];
      return `${path}${variable ? ` (${variable})` : ""}: ${issue.message}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${problems.join("\n  ")}`);
  }
  const config = result.data;
  const dataDir = isAbsolute(config.dataDir) ? config.dataDir : resolve(cwd, config.dataDir);
  if (config.bootstrap === "none" && config.hsm.pin === undefined) {
    throw new ConfigError("hsm.pin (ANCHORAGE_HSM_PIN) is required when bootstrap is 'none'");
  }
  return deepFreeze({
    ...config,
    dataDir,
    publicBaseUrl: config.publicBaseUrl,
    hsm: { ...config.hsm, pin: config.hsm.pin },
    transparencyLog: { ...config.transparencyLog, origin: config.transparencyLog.origin },
    jwtIssuers: config.jwtIssuers as JwtIssuerSettings[],
  });
}
