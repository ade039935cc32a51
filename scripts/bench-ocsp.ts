/**
 * OCSP throughput from storage, GET and POST, with wrk (Debian's `wrk` package) as the load generator:
 *
 *   npx tsx scripts/bench-ocsp.ts [--seconds 10] [--connections 32] [--workers 2]
 *
 * Starts the service on a fresh data folder, issues one certificate, waits for its pre-signed response, then
 * runs wrk against 127.0.0.1 for a bounded time per method and prints requests per second and p50/p99
 * latency, with the same run's `openssl speed ecdsap256` figure. A no-nonce request for a certificate we
 * issued is served from storage, so this measures the lookup path, not the HSM.
 */
import "reflect-metadata";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { Agent, request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { opensslEcdsaP256Speed } from "./lib/calibration.js";
import { startServiceProcess, type ServiceProcess } from "./lib/service-process.js";
import { p256WorkloadCsr } from "./lib/workload-csr.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    connections: { type: "string", default: "32" },
    workers: { type: "string", default: "2" },
  },
});

function graphql(service: ServiceProcess, agent: Agent, body: object, bearer?: string): Promise<any> {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: service.graphqlPort,
        path: "/graphql",
        method: "POST",
        agent,
        ca: service.rootPem,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload), ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => resolve(JSON.parse(Buffer.concat(chunks).toString())));
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}


function wrk(args: string[]): string {
  const result = spawnSync("wrk", args, { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`wrk failed: ${result.stderr || result.error}`);
  return result.stdout;
}

function summarise(name: string, output: string): void {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(output)?.[1] ?? "?";
  const p50 = /\s50%\s+([\d.]+\w+)/.exec(output)?.[1] ?? "?";
  const p99 = /\s99%\s+([\d.]+\w+)/.exec(output)?.[1] ?? "?";
  const errors = /Non-2xx or 3xx responses:\s+(\d+)/.exec(output)?.[1] ?? "0";
  const socketErrors = /Socket errors:.*/.exec(output)?.[0] ?? "no socket errors";
  console.log(`${name}: ${Number(rps).toFixed(0)} responses/s, p50 ${p50}, p99 ${p99}, non-2xx ${errors}, ${socketErrors}`);
}

async function main(): Promise<void> {
  if (spawnSync("wrk", ["--version"]).error) throw new Error("wrk is needed: apt-get install wrk");
  console.log(`openssl speed ecdsap256: ${opensslEcdsaP256Speed()}`);
  const service = await startServiceProcess({ ANCHORAGE_WORKERS: String(values.workers) });
  const agent = new Agent({ keepAlive: true });
  const dir = mkdtempSync(join(tmpdir(), "anchorage-bench-ocsp-"));
  try {
    const token = (
      await graphql(service, agent, { query: 'mutation { createEnrollmentToken(input: { spiffeId: "spiffe://anchorage.test/bench/ocsp" }) { token } }' }, service.adminKey)
    ).data.createEnrollmentToken.token;
    const issued = (
      await graphql(service, agent, {
        query: "mutation($i: IssueCertificateInput!){ issueCertificate(input:$i){ certificatePem chainPem } }",
        variables: { i: { csr: p256WorkloadCsr("spiffe://anchorage.test/bench/ocsp"), token } },
      })
    ).data.issueCertificate;
    writeFileSync(join(dir, "leaf.pem"), issued.certificatePem);
    writeFileSync(join(dir, "chain.pem"), issued.chainPem);
    execFileSync("openssl", ["ocsp", "-issuer", join(dir, "chain.pem"), "-cert", join(dir, "leaf.pem"), "-no_nonce", "-reqout", join(dir, "req.der")], { stdio: "ignore" });
    const requestDer = readFileSync(join(dir, "req.der"));
    const base = `http://127.0.0.1:${service.httpPort}`;
    // One lookup first, so the response is in storage whatever the pre-signing queue is doing.
    await fetch(`${base}/ocsp`, { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: new Uint8Array(requestDer) });

    const common = ["-t", "2", "-c", String(values.connections), "-d", `${values.seconds}s`, "--latency"];
    console.log(`service workers: ${values.workers}; wrk: 2 threads, ${values.connections} connections, ${values.seconds} s per method`);
    summarise("GET ", wrk([...common, `${base}/ocsp/${encodeURIComponent(requestDer.toString("base64"))}`]));
    const bodyLiteral = [...requestDer].map((byte) => `\\${byte}`).join("");
    writeFileSync(
      join(dir, "post.lua"),
      `wrk.method = "POST"\nwrk.body = "${bodyLiteral}"\nwrk.headers["Content-Type"] = "application/ocsp-request"\n`,
    );
    summarise("POST", wrk([...common, "-s", join(dir, "post.lua"), `${base}/ocsp`]));
  } finally {
    agent.destroy();
    await service.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
