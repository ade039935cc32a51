/**
 * Runs the real service (`src/main.ts`) in a child process for integration tests: its own data folder, SoftHSM
 * tokens, SQLite file and listeners on free ports. Talks to it the way a client would (HTTPS with the data
 * folder's root.pem as the only trust anchor, plain HTTP for public material) and reads its database read-only
 * for the facts a client cannot see (row counts, audit events).
 *
 * Also: CSR helpers on top of `openssl req` (a tool we did not write), and the prerequisite check that makes a
 * missing SoftHSM or openssl a failure in CI rather than a skip.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { get as httpGet, type IncomingHttpHeaders } from "node:http";
import { Agent, request as httpsRequest, type RequestOptions } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { describe, it } from "vitest";

/** The repository root, where `src/main.ts` lives. */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

const STARTUP_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 15_000;

export interface GqlOptions {
  /** Sent as `Authorization: Bearer <bearer>`. */
  readonly bearer?: string;
  /** Raw Authorization header value, for malformed-header tests; wins over `bearer`. */
  readonly authorization?: string;
  /** Client certificate chain (PEM) for mutual TLS; with `key`. */
  readonly cert?: string;
  /** Client private key (PEM) for mutual TLS; with `cert`. */
  readonly key?: string;
  /** Open a connection of its own instead of reusing the shared keep-alive agent (e.g. to reach another worker). */
  readonly newConnection?: boolean;
  /** Give up (reject) when no answer arrives within this many milliseconds. */
  readonly timeoutMs?: number;
}

export interface GqlResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** The parsed JSON body, or the raw text when the body is not JSON. */
  readonly body: any;
  /** Serial of the HTTPS certificate the answering service process presented (upper-case hex, as Node gives it). */
  readonly serverCertificateSerial: string;
}

export interface HttpResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface RunningService {
  readonly dataDir: string;
  readonly graphqlPort: number;
  readonly httpPort: number;
  /** `<data>/root.pem`, the trust anchor for HTTPS. */
  readonly rootPem: string;
  /** The bootstrap admin API key from `<data>/admin-api-key`. */
  readonly adminKey: string;
  readonly pid: number;
  /** Everything the process wrote to stdout and stderr so far. */
  logs(): string;
  /** One GraphQL operation as a JSON POST to /graphql. */
  gql(query: string, variables?: Record<string, unknown>, opts?: GqlOptions): Promise<GqlResponse>;
  /** A POST to /graphql with exactly this body (for batched-array and oversized bodies). */
  postGraphql(body: string | Buffer, opts?: GqlOptions & { contentType?: string }): Promise<GqlResponse>;
  /** A GET on the plain-HTTP listener. */
  http(path: string): Promise<HttpResponse>;
  /** `SELECT count(*) FROM certificates`, read-only. */
  countCertificateRows(): number;
  /** Number of audit events, of one type when given. */
  countAuditEvents(type?: string): number;
  /** First column of the first row of a read-only query on anchorage.db. */
  sqlValue(sql: string, ...parameters: unknown[]): unknown;
  /** Resolves with the exit code (null when killed by a signal) once the process has exited. */
  readonly exited: Promise<number | null>;
  /** SIGTERM, wait for the exit (SIGKILL after 15 s); the exit code, null when it had to be killed. */
  stop(): Promise<number | null>;
  /** Stops the process if it still runs and removes the data folder if this harness created it. */
  cleanup(): Promise<void>;
}

export interface StartOptions {
  /** Reuse this data folder (e.g. for a restart); it is then not removed by `cleanup()`. */
  readonly dataDir?: string;
  /**
   * Extra environment for the service, applied last: e.g. `ANCHORAGE_PKCS11_MODULE` (p11-kit's client module)
   * and `P11_KIT_SERVER_ADDRESS` for a node sharing a network HSM (test/support/p11-kit.ts).
   */
  readonly env?: Record<string, string>;
}

/** Children still running when the test process exits are killed, so a crashed test leaves no service behind. */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** The environment of the test process without anything that would configure the service from outside. */
function baseEnvironment(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value === undefined) continue;
    if (name.startsWith("ANCHORAGE_") || name === "SOFTHSM2_CONF" || name === "P11_KIT_SERVER_ADDRESS") continue;
    env[name] = value;
  }
  return env;
}

export async function startService(options: StartOptions = {}): Promise<RunningService> {
  const ownsDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "anchorage-service-"));
  const env = {
    ...baseEnvironment(),
    ANCHORAGE_DATA_DIR: dataDir,
    ANCHORAGE_GRAPHQL_PORT: "0",
    ANCHORAGE_HTTP_PORT: "0",
    ANCHORAGE_LOG_LEVEL: "info",
    ...options.env,
  };
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    cwd: REPO_ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  let output = "";
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code) => {
      running.delete(child);
      exitCode = code;
      resolve(code);
    });
  });
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk: string) => {
    output += chunk;
  });

  const listening = await new Promise<{ graphqlPort: number; httpPort: number }>((resolve, reject) => {
    let pending = "";
    let settled = false;
    const finish = (error: Error | undefined, ports?: { graphqlPort: number; httpPort: number }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) reject(error);
      else resolve(ports as { graphqlPort: number; httpPort: number });
    };
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      finish(new Error(`the service did not report "listening" within ${STARTUP_TIMEOUT_MS} ms; output:\n${output}`));
    }, STARTUP_TIMEOUT_MS);
    child.stdout.on("data", (chunk: string) => {
      output += chunk;
      pending += chunk;
      let newline: number;
      while ((newline = pending.indexOf("\n")) !== -1) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        if (!line.includes('"msg":"listening"')) continue;
        try {
          const parsed = JSON.parse(line) as { graphqlPort?: unknown; httpPort?: unknown };
          if (typeof parsed.graphqlPort === "number" && typeof parsed.httpPort === "number") {
            finish(undefined, { graphqlPort: parsed.graphqlPort, httpPort: parsed.httpPort });
          }
        } catch {
          // Not a JSON line after all; keep waiting.
        }
      }
    });
    void exited.then((code) => finish(new Error(`the service exited with code ${code} before listening; output:\n${output}`)));
  });

  const rootPem = readFileSync(join(dataDir, "root.pem"), "utf8");
  const adminKey = readFileSync(join(dataDir, "admin-api-key"), "utf8").trim();
  const agent = new Agent({ keepAlive: true, ca: rootPem, servername: "localhost" });
  const { graphqlPort, httpPort } = listening;

  const post = (body: string | Buffer, opts: GqlOptions & { contentType?: string } = {}): Promise<GqlResponse> => {
    const headers: Record<string, string | number> = {
      "content-type": opts.contentType ?? "application/json",
      accept: "application/graphql-response+json, application/json",
      "content-length": Buffer.byteLength(body),
    };
    if (opts.authorization !== undefined) headers.authorization = opts.authorization;
    else if (opts.bearer !== undefined) headers.authorization = `Bearer ${opts.bearer}`;
    const mutualTls = opts.cert !== undefined || opts.key !== undefined;
    const requestOptions: RequestOptions = {
      host: "127.0.0.1",
      port: graphqlPort,
      path: "/graphql",
      method: "POST",
      headers,
      ca: rootPem,
      servername: "localhost",
      // A client certificate needs its own connection: the shared agent's sockets were opened without one.
      agent: mutualTls || opts.newConnection ? false : agent,
      ...(mutualTls ? { cert: opts.cert, key: opts.key } : {}),
    };
    return new Promise((resolve, reject) => {
      const request = httpsRequest(requestOptions, (response) => {
        const serverCertificateSerial = (response.socket as TLSSocket).getPeerCertificate().serialNumber ?? "";
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("error", reject);
        response.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // Leave non-JSON bodies as text.
          }
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body: parsed, serverCertificateSerial });
        });
      });
      if (opts.timeoutMs !== undefined) {
        const limit = opts.timeoutMs;
        request.setTimeout(limit, () => request.destroy(new Error(`no answer within ${limit} ms`)));
      }
      request.on("error", reject);
      request.end(body);
    });
  };

  const withDatabase = <T>(work: (db: Database.Database) => T): T => {
    const db = new Database(join(dataDir, "anchorage.db"), { readonly: true, fileMustExist: true });
    try {
      return work(db);
    } finally {
      db.close();
    }
  };

  const stop = async (): Promise<number | null> => {
    agent.destroy();
    if (exitCode !== undefined) return exitCode;
    child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
    try {
      return await exited;
    } finally {
      clearTimeout(killer);
    }
  };

  return {
    dataDir,
    graphqlPort,
    httpPort,
    rootPem,
    adminKey,
    pid: child.pid as number,
    exited,
    logs: () => output,
    gql: (query, variables, opts) => post(JSON.stringify({ query, ...(variables ? { variables } : {}) }), opts),
    postGraphql: post,
    http: (path) =>
      new Promise((resolve, reject) => {
        httpGet({ host: "127.0.0.1", port: httpPort, path, agent: false }, (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("error", reject);
          response.on("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }));
        }).on("error", reject);
      }),
    countCertificateRows: () => Number(withDatabase((db) => db.prepare("SELECT count(*) FROM certificates").pluck().get())),
    countAuditEvents: (type) =>
      Number(
        withDatabase((db) =>
          type === undefined
            ? db.prepare("SELECT count(*) FROM audit_events").pluck().get()
            : db.prepare("SELECT count(*) FROM audit_events WHERE type = ?").pluck().get(type),
        ),
      ),
    sqlValue: (sql, ...parameters) => withDatabase((db) => db.prepare(sql).pluck().get(...parameters)),
    stop,
    cleanup: async () => {
      await stop();
      if (ownsDataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Why the integration tests cannot run here (a missing tool), or undefined when they can. With `CI` set a
 * missing tool is an error, never a skip: the caller turns the returned reason into a failing test.
 */
export function missingTools(tools: readonly string[] = ["softhsm2-util", "openssl"]): string | undefined {
  const probes: Record<string, string[]> = {
    "softhsm2-util": ["--version"],
    openssl: ["version"],
    "pkcs11-tool": ["--version"],
  };
  const missing = tools.filter((tool) => spawnSync(tool, probes[tool] ?? ["--version"], { stdio: "ignore" }).error !== undefined);
  return missing.length === 0 ? undefined : `missing ${missing.join(", ")} (run scripts/ensure-system-deps.sh)`;
}

/**
 * `missingTools` for an integration test file, with the CI rule applied: when a tool is missing and `CI` is
 * set, a failing test naming it is registered (integration tests never skip in CI). Returns the reason, for
 * `describe.skipIf` outside CI.
 */
export function requireTools(tools: readonly string[] = ["softhsm2-util", "openssl"]): string | undefined {
  const missing = missingTools(tools);
  if (missing !== undefined && process.env.CI) {
    describe("integration prerequisites in CI", () => {
      it("are installed", () => {
        throw new Error(`CI must not skip integration tests: ${missing}`);
      });
    });
  }
  return missing;
}

// ---------------------------------------------------------------------------------------------------------
// CSRs made by openssl

export type CsrKeyType = "P-256" | "P-384" | "P-521" | "RSA-2048" | "RSA-1024" | "Ed25519";

export interface CsrOptions {
  /** Put in a `URI:` SAN; any URI, so that tests can also ask for non-SPIFFE ones. */
  readonly spiffeId: string;
  readonly dnsNames?: readonly string[];
  readonly keyType?: CsrKeyType;
  /** Appended verbatim to the subjectAltName value, e.g. `IP:10.0.0.1` or `URI:spiffe://x/y`. */
  readonly extraSan?: string;
}

export interface Csr {
  readonly csrPem: string;
  readonly keyPem: string;
}

function genpkeyArgs(keyType: CsrKeyType): string[] {
  switch (keyType) {
    case "P-256":
    case "P-384":
    case "P-521":
      return ["-algorithm", "EC", "-pkeyopt", `ec_paramgen_curve:${keyType}`, "-pkeyopt", "ec_param_enc:named_curve"];
    case "RSA-2048":
      return ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
    case "RSA-1024":
      return ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"];
    case "Ed25519":
      return ["-algorithm", "ED25519"];
  }
}

/** RSA keys are slow to make, so each size is generated once per process and reused. */
const rsaKeys = new Map<CsrKeyType, string>();

function withTempDir<T>(work: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), "anchorage-csr-"));
  try {
    return work(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A key of that type as PKCS#8 PEM, made by openssl (RSA keys cached per process). */
export function makeKey(keyType: CsrKeyType): string {
  const cached = rsaKeys.get(keyType);
  if (cached !== undefined) return cached;
  const keyPem = execFileSync("openssl", ["genpkey", ...genpkeyArgs(keyType)], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  if (keyType.startsWith("RSA")) rsaKeys.set(keyType, keyPem);
  return keyPem;
}

/** `openssl req -new` with an empty subject and the SANs asked for. */
export function makeCsr(options: CsrOptions): Csr {
  const keyType = options.keyType ?? "P-256";
  const keyPem = makeKey(keyType);
  const sans = [`URI:${options.spiffeId}`, ...(options.dnsNames ?? []).map((name) => `DNS:${name}`)];
  if (options.extraSan) sans.push(options.extraSan);
  return withTempDir((dir) => {
    const keyPath = join(dir, "key.pem");
    writeFileSync(keyPath, keyPem, { mode: 0o600 });
    const csrPem = execFileSync(
      "openssl",
      ["req", "-new", "-key", keyPath, "-subj", "/", "-addext", `subjectAltName=${sans.join(",")}`],
      { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
    );
    return { csrPem, keyPem };
  });
}

/** Runs openssl with an argument array; stdout, stderr and the exit status, never throwing. */
export function openssl(args: readonly string[], input?: string | Buffer): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync("openssl", args, { encoding: "utf8", ...(input !== undefined ? { input } : {}) });
  return { status: result.status, stdout: result.stdout ?? "", stderr: result.stderr ?? "" };
}

/** A scratch directory for files handed to command-line tools. */
export function scratchDir(prefix = "anchorage-test-"): { dir: string; file(name: string, contents?: string | Buffer): string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return {
    dir,
    file: (name, contents) => {
      const path = join(dir, name);
      if (contents !== undefined) writeFileSync(path, contents);
      return path;
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Waits for an event with a deadline, for tests that wait on sockets. */
export async function onceWithin<T extends unknown[]>(emitter: NodeJS.EventEmitter, event: string, ms: number): Promise<T> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ms);
  try {
    return (await once(emitter, event, { signal: controller.signal })) as T;
  } finally {
    clearTimeout(timer);
  }
}
