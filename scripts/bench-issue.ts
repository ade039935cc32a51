/**
 * Issuance throughput and latency over HTTPS, end to end (GraphQL, CSR checks, SoftHSM signing, durable
 * SQLite records):
 *
 *   npx tsx scripts/bench-issue.ts [--seconds 10] [--clients 32] [--csrs 2000] [--batch 16] [--workers N]
 *                                  [--modes single,batch,query]
 *
 * Starts the service on a fresh data folder (ANCHORAGE_WORKERS=N), creates one enrollment token per client,
 * pre-generates the P-256 CSRs, then drives `issueCertificate` (one CSR per request) and `issueCertificates`
 * (batches) with wrk (Debian's `wrk` package: 2 threads, `--clients` keep-alive connections) for a bounded
 * time each, and prints certificates per second and p50/p99 latency, with the machine's `openssl speed
 * ecdsap256` figure from the same run for comparison. The load generator shares the machine's cores with the
 * service, which is why it is wrk (C, a few percent of one core) rather than a Node client (about 12 %).
 * Mode `query` sends `{ __typename }` the same way: the per-request ceiling of GraphQL over HTTPS here,
 * with no issuance work at all.
 * All traffic goes to 127.0.0.1.
 */
import "reflect-metadata";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { Agent, request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
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
function load(service: ServiceProcess, bodiesFile: string, mode: "issue" | "query"): LoadResult {
  const result = spawnSync(
    "wrk",
    ["-t", "2", "-c", String(clients), "-d", `${seconds}s`, "--timeout", "30s", "-s", LOAD_SCRIPT,
      `https://127.0.0.1:${service.graphqlPort}/graphql`, "--", bodiesFile, mode],
    { encoding: "utf8" },
  );
  if (result.status !== 0) throw new Error(`wrk failed: ${result.stderr || result.error}`);
  const summary = result.stdout.split("\n").find((line) => line.startsWith('{"requests"'));
  if (!summary) throw new Error(`wrk printed no summary:\n${result.stdout}`);
  return JSON.parse(summary) as LoadResult;
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

async function main(): Promise<void> {
  if (spawnSync("wrk", ["--version"]).error) throw new Error("wrk is needed: apt-get install wrk");
  console.log(`machine: ${(await import("node:os")).cpus().length} cores; openssl speed ecdsap256: ${opensslEcdsaP256Speed()}`);
  // Each client's token asks for far more than a workload would: the bench measures throughput, not the limit.
  const service = await startServiceProcess({ ANCHORAGE_WORKERS: String(values.workers), ANCHORAGE_RATE_LIMIT_ISSUANCES_PER_CREDENTIAL: "1000000" });
  const agent = new Agent({ keepAlive: true, maxSockets: clients });
  try {
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
    console.log(`service workers: ${values.workers}; wrk: 2 threads, ${clients} connections; CSRs: ${csrCount}; ${seconds} s per mode`);

    try {
      const modes = (values.modes as string).split(",");
      // Warm-up (JIT, statement caches, session pool) with the first mode's own requests.
      if (modes[0] === "query") load(service, queries, "query");
      else load(service, modes[0] === "batch" ? batches : singles, "issue");
      const runs = [["single", "issueCertificate", singles], ["batch", `issueCertificates (batches of ${batchSize})`, batches]] as const;
      for (const [mode, name, bodies] of runs) {
        if (!modes.includes(mode)) continue;
        const result = load(service, bodies, "issue");
        console.log(
          `${name}: ${(result.ok / (result.durationUs / 1e6)).toFixed(0)} certificates/s, ` +
            `p50 ${ms(result.p50Us)} ms, p99 ${ms(result.p99Us)} ms per request, ` +
            `${result.ok} issued, ${result.failed} refused, ${result.socketErrors} socket errors`,
        );
      }
      if (modes.includes("query")) {
        const result = load(service, queries, "query");
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
    await service.stop();
  }
}

await main();
