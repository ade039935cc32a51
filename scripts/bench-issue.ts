/**
 * Issuance throughput and latency over HTTPS, end to end (GraphQL, CSR checks, SoftHSM signing, durable
 * SQLite records):
 *
 *   npx tsx scripts/bench-issue.ts [--seconds 10] [--clients 32] [--csrs 2000] [--batch 16] [--workers N]
 *                                  [--modes single,batch,query]
 *                                  [--engines sqlite,postgres --postgres <server URL>] [--nodes N]
 *
 * Starts the service on a fresh data folder (ANCHORAGE_WORKERS=N), creates one enrollment token per client,
 * pre-generates the P-256 CSRs, then drives `issueCertificate` (one CSR per request) and `issueCertificates`
 * (batches) with wrk (Debian's `wrk` package: 2 threads, `--clients` keep-alive connections) for a bounded
 * time each, and prints certificates per second and p50/p99 latency, with the machine's `openssl speed
 * ecdsap256` figure from the same run for comparison. The load generator shares the machine's cores with the
 * service, which is why it is wrk (C, a few percent of one core) rather than a Node client (about 12 %).
 * Mode `query` sends `{ __typename }` the same way: the per-request ceiling of GraphQL over HTTPS here,
 * with no issuance work at all.
 * `--engines` runs the whole measurement once per storage engine, one after the other in the same run: SQLite
 * in the data folder, and PostgreSQL in a scratch database created on `--postgres` (and dropped after). With
 * `--nodes N` the PostgreSQL run starts N service processes sharing that database and the SoftHSM token, and
 * drives each with its share of the connections at once; the total is the sum.
 * All traffic goes to 127.0.0.1.
 */
import "reflect-metadata";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { Agent, request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { p256WorkloadCsr } from "./lib/workload-csr.js";
import { opensslEcdsaP256Speed } from "./lib/calibration.js";
import { startServiceProcess, type ServiceProcess } from "./lib/service-process.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    clients: { type: "string", default: "32" },
    csrs: { type: "string", default: "2000" },
    batch: { type: "string", default: "16" },
    workers: { type: "string", default: "2" },
    modes: { type: "string", default: "single,batch,query" },
    engines: { type: "string", default: "sqlite" },
    postgres: { type: "string" },
    nodes: { type: "string", default: "1" },
  },
});
const seconds = Number(values.seconds);
const clients = Number(values.clients);
const csrCount = Number(values.csrs);
const batchSize = Number(values.batch);

function post(service: ServiceProcess, agent: Agent, body: string, bearer?: string): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        servername: "localhost",
        port: service.graphqlPort,
        path: "/graphql",
        method: "POST",
        agent,
        ca: service.rootPem,
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => resolve({ status: response.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) }));
        response.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const ISSUE = "mutation($i: IssueCertificateInput!){ issueCertificate(input:$i){ serial } }";
const ISSUE_BATCH = "mutation($i: [IssueCertificateInput!]!){ issueCertificates(inputs:$i){ certificate { serial } error { code message } } }";
const LOAD_SCRIPT = fileURLToPath(new URL("./lib/graphql-load.lua", import.meta.url));

interface LoadResult {
  readonly requests: number;
  readonly durationUs: number;
  readonly ok: number;
  readonly failed: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly socketErrors: number;
}

/** Runs wrk against /graphql with one pre-built body per line of `bodiesFile`, for the configured time. */
function wrk(service: ServiceProcess, connections: number, bodiesFile: string, mode: "issue" | "query"): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      "wrk",
      ["-t", "2", "-c", String(connections), "-d", `${seconds}s`, "--timeout", "30s", "-s", LOAD_SCRIPT,
        `https://127.0.0.1:${service.graphqlPort}/graphql`, "--", bodiesFile, mode],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.once("error", reject);
    child.once("exit", (code) => {
      if (code !== 0) return reject(new Error(`wrk failed: ${stderr}`));
      const summary = stdout.split("\n").find((line) => line.startsWith('{"requests"'));
      if (!summary) return reject(new Error(`wrk printed no summary:\n${stdout}`));
      resolve(JSON.parse(summary) as LoadResult);
    });
  });
}

/**
 * Drives every node at once, each with its share of the connections, and adds the results up. The p99 reported
 * is the worst node's (per-node latencies are not merged).
 */
async function load(nodes: readonly ServiceProcess[], bodiesFile: string, mode: "issue" | "query"): Promise<LoadResult & { perNode: LoadResult[] }> {
  const perNode = await Promise.all(nodes.map((node) => wrk(node, Math.max(1, Math.floor(clients / nodes.length)), bodiesFile, mode)));
  const sum = (pick: (result: LoadResult) => number) => perNode.reduce((total, result) => total + pick(result), 0);
  return {
    requests: sum((result) => result.requests),
    durationUs: Math.max(...perNode.map((result) => result.durationUs)),
    ok: sum((result) => result.ok),
    failed: sum((result) => result.failed),
    p50Us: Math.max(...perNode.map((result) => result.p50Us)),
    p99Us: Math.max(...perNode.map((result) => result.p99Us)),
    socketErrors: sum((result) => result.socketErrors),
    perNode,
  };
}

/** One JSON document per line: each client's CSRs, `perRequest` at a time, under that client's token. */
function issuanceBodies(tokens: readonly string[], csrsByClient: readonly string[][], perRequest: number): string {
  const lines: string[] = [];
  tokens.forEach((token, client) => {
    const csrs = csrsByClient[client] as string[];
    for (let first = 0; first + perRequest <= csrs.length; first += perRequest) {
      const inputs = csrs.slice(first, first + perRequest).map((csr) => ({ csr, token }));
      lines.push(
        perRequest === 1
          ? JSON.stringify({ query: ISSUE, variables: { i: inputs[0] } })
          : JSON.stringify({ query: ISSUE_BATCH, variables: { i: inputs } }),
      );
    }
  });
  return `${lines.join("\n")}\n`;
}

const ms = (microseconds: number): string => (microseconds / 1000).toFixed(1);

/** A scratch database on the server at `serverUrl`, for one run; `drop` removes it. */
async function scratchDatabase(serverUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `anchorage_bench_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const client = new pg.Client({ connectionString: serverUrl });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

async function main(): Promise<void> {
  if (spawnSync("wrk", ["--version"]).error) throw new Error("wrk is needed: apt-get install wrk");
  console.log(`machine: ${(await import("node:os")).cpus().length} cores; openssl speed ecdsap256: ${opensslEcdsaP256Speed()}`);
  for (const engine of (values.engines as string).split(",")) {
    if (engine === "sqlite") {
      await runEngine("sqlite", {}, 1);
    } else if (engine === "postgres") {
      if (!values.postgres) throw new Error("--postgres <server URL> is needed for the postgres engine");
      const database = await scratchDatabase(values.postgres);
      try {
        await runEngine("postgres", { ANCHORAGE_DATABASE_URL: database.url }, Number(values.nodes));
      } finally {
        await database.drop();
      }
    } else {
      throw new Error(`unknown engine ${engine}: sqlite or postgres`);
    }
  }
}

async function runEngine(engine: string, engineEnv: Record<string, string>, nodeCount: number): Promise<void> {
  // Each client's token asks for far more than a workload would: the bench measures throughput, not the limit.
  const env = { ...engineEnv, ANCHORAGE_WORKERS: String(values.workers), ANCHORAGE_RATE_LIMIT_ISSUANCES_PER_CREDENTIAL: "1000000" };
  const first = await startServiceProcess(env);
  const nodes = [first];
  const agent = new Agent({ keepAlive: true, maxSockets: clients });
  try {
    for (let index = 1; index < nodeCount; index++) nodes.push(await startServiceProcess(env, first));
    const service = first;
    const tokens: string[] = [];
    for (let client = 0; client < clients; client++) {
      const { json } = await post(
        service,
        agent,
        JSON.stringify({
          query: `mutation { createEnrollmentToken(input: { spiffeId: "spiffe://anchorage.test/bench/client-${client}", uses: 10000, expiresInSeconds: 3600 }) { token } }`,
        }),
        service.adminKey,
      );
      tokens.push(json.data.createEnrollmentToken.token);
    }
    const csrsByClient = tokens.map(() => [] as string[]);
    for (let index = 0; index < csrCount; index++) {
      (csrsByClient[index % clients] as string[]).push(p256WorkloadCsr(`spiffe://anchorage.test/bench/client-${index % clients}`));
    }
    const dir = mkdtempSync(join(tmpdir(), "anchorage-bench-issue-"));
    const singles = join(dir, "single.ndjson");
    const batches = join(dir, "batch.ndjson");
    const queries = join(dir, "query.ndjson");
    writeFileSync(singles, issuanceBodies(tokens, csrsByClient, 1));
    writeFileSync(batches, issuanceBodies(tokens, csrsByClient, batchSize));
    writeFileSync(queries, `${JSON.stringify({ query: "{ __typename }" })}\n`);
    console.log(`${engine}: ${nodes.length} node(s) of ${values.workers} worker(s); wrk: 2 threads, ${clients} connections in all; CSRs: ${csrCount}; ${seconds} s per mode`);

    try {
      const modes = (values.modes as string).split(",");
      // Warm-up (JIT, statement caches, session pool) with the first mode's own requests.
      if (modes[0] === "query") await load(nodes, queries, "query");
      else await load(nodes, modes[0] === "batch" ? batches : singles, "issue");
      const runs = [["single", "issueCertificate", singles], ["batch", `issueCertificates (batches of ${batchSize})`, batches]] as const;
      for (const [mode, name, bodies] of runs) {
        if (!modes.includes(mode)) continue;
        const result = await load(nodes, bodies, "issue");
        const perNode = nodes.length > 1 ? ` (per node: ${result.perNode.map((node) => (node.ok / (node.durationUs / 1e6)).toFixed(0)).join(", ")}/s)` : "";
        console.log(
          `${engine} ${name}: ${(result.ok / (result.durationUs / 1e6)).toFixed(0)} certificates/s${perNode}, ` +
            `p50 ${ms(result.p50Us)} ms, p99 ${ms(result.p99Us)} ms per request, ` +
            `${result.ok} issued, ${result.failed} refused, ${result.socketErrors} socket errors`,
        );
      }
      if (modes.includes("query")) {
        const result = await load(nodes, queries, "query");
        console.log(
          `{ __typename } (no issuance): ${(result.ok / (result.durationUs / 1e6)).toFixed(0)} requests/s, ` +
            `p50 ${ms(result.p50Us)} ms, p99 ${ms(result.p99Us)} ms, ${result.failed} failed`,
        );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    agent.destroy();
    for (const node of nodes.reverse()) await node.stop();
  }
}

await main();
