/**
 * Issuance throughput and latency over HTTPS, end to end (GraphQL, CSR checks, SoftHSM signing, durable
 * SQLite records):
 *
 *   npx tsx scripts/bench-issue.ts [--seconds 10] [--clients 32] [--csrs 2000] [--batch 16] [--workers N]
 *                                  [--modes single,batch,query]
 *
 * Starts the service on a fresh data folder (ANCHORAGE_WORKERS=N), creates one enrollment token per client,
 * pre-generates the P-256 CSRs, then drives `issueCertificate` (one CSR per request) and `issueCertificates`
 * (batches) with keep-alive connections for a bounded time each, and prints certificates per second and
 * p50/p99 latency, with the machine's `openssl speed ecdsap256` figure from the same run for comparison.
 * Mode `query` sends `{ __typename }` the same way: the per-request ceiling of GraphQL over HTTPS here,
 * with no issuance work at all.
 * All traffic goes to 127.0.0.1.
 */
import "reflect-metadata";
import { Agent, request } from "node:https";
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

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}


const ISSUE = "mutation($i: IssueCertificateInput!){ issueCertificate(input:$i){ serial } }";
const ISSUE_BATCH = "mutation($i: [IssueCertificateInput!]!){ issueCertificates(inputs:$i){ certificate { serial } error { code message } } }";

/** `{ __typename }` from every client for the configured time: requests/s and latency, nothing issued. */
async function driveQueries(service: ServiceProcess, agent: Agent): Promise<{ requests: number; latencies: number[]; elapsed: number }> {
  const deadline = Date.now() + seconds * 1000;
  const latencies: number[] = [];
  const body = JSON.stringify({ query: "{ __typename }" });
  const started = Date.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (Date.now() < deadline) {
        const begin = performance.now();
        const { json } = await post(service, agent, body);
        if (json.data?.__typename !== "Query") throw new Error(`unexpected answer ${JSON.stringify(json)}`);
        latencies.push(performance.now() - begin);
      }
    }),
  );
  return { requests: latencies.length, latencies: latencies.sort((a, b) => a - b), elapsed: (Date.now() - started) / 1000 };
}

async function drive(
  service: ServiceProcess,
  agent: Agent,
  tokens: string[],
  csrsByClient: string[][],
  perRequest: number,
): Promise<{ certificates: number; errors: number; latencies: number[]; elapsed: number }> {
  const deadline = Date.now() + seconds * 1000;
  const latencies: number[] = [];
  let certificates = 0;
  let errors = 0;
  const started = Date.now();
  await Promise.all(
    tokens.map(async (token, client) => {
      const csrs = csrsByClient[client] as string[];
      let next = 0;
      while (Date.now() < deadline) {
        const inputs = Array.from({ length: perRequest }, () => ({ csr: csrs[next++ % csrs.length], token }));
        const body = perRequest === 1
          ? JSON.stringify({ query: ISSUE, variables: { i: inputs[0] } })
          : JSON.stringify({ query: ISSUE_BATCH, variables: { i: inputs } });
        const begin = performance.now();
        const { json } = await post(service, agent, body);
        latencies.push(performance.now() - begin);
        if (perRequest === 1) {
          if (json.data?.issueCertificate?.serial) certificates++;
          else errors++;
        } else {
          for (const item of json.data?.issueCertificates ?? []) {
            if (item.certificate) certificates++;
            else errors++;
          }
          if (!json.data) errors += perRequest;
        }
      }
    }),
  );
  return { certificates, errors, latencies: latencies.sort((a, b) => a - b), elapsed: (Date.now() - started) / 1000 };
}

async function main(): Promise<void> {
  console.log(`machine: ${(await import("node:os")).cpus().length} cores; openssl speed ecdsap256: ${opensslEcdsaP256Speed()}`);
  const service = await startServiceProcess({ ANCHORAGE_WORKERS: String(values.workers) });
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
    console.log(`service workers: ${values.workers}; clients: ${clients}; CSRs: ${csrCount}; ${seconds} s per mode`);

    await drive(service, agent, tokens, csrsByClient, 1).catch(() => undefined); // warm-up is the first mode's first second
    const modes = (values.modes as string).split(",");
    const runs = [["single", "issueCertificate", 1], ["batch", `issueCertificates (batches of ${batchSize})`, batchSize]] as const;
    for (const [mode, name, perRequest] of runs) {
      if (!modes.includes(mode)) continue;
      const result = await drive(service, agent, tokens, csrsByClient, perRequest);
      console.log(
        `${name}: ${(result.certificates / result.elapsed).toFixed(0)} certificates/s, ` +
          `p50 ${percentile(result.latencies, 50).toFixed(1)} ms, p99 ${percentile(result.latencies, 99).toFixed(1)} ms per request, ` +
          `${result.certificates} issued, ${result.errors} errors`,
      );
    }
    if (modes.includes("query")) {
      const result = await driveQueries(service, agent);
      console.log(
        `{ __typename } (no issuance): ${(result.requests / result.elapsed).toFixed(0)} requests/s, ` +
          `p50 ${percentile(result.latencies, 50).toFixed(1)} ms, p99 ${percentile(result.latencies, 99).toFixed(1)} ms`,
      );
    }
  } finally {
    agent.destroy();
    await service.stop();
  }
}

await main();
