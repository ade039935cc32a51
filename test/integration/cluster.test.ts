import "reflect-metadata";
/**
 * The real service with ANCHORAGE_WORKERS=2 (node:cluster): one primary that prepares the data folder and two
 * workers that share the listeners, the SQLite file and the SoftHSM token. Checked from outside, as an
 * operator would: the process tree (ps), one "listening" line, issuance spread over both workers and all of
 * it stored, a token's uses counted exactly when both processes race for it, one worker running the sweeps
 * over shared state (and its replacement after it is killed), and a clean stop on SIGTERM.
 *
 * One service for the file; the tests run in order and the last one stops it.
 */
import { spawnSync } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeCsr, requireTools, openssl, scratchDir, startService, type RunningService } from "../support/service.js";

const missing = requireTools(["softhsm2-util", "openssl"]);

const TRUST_DOMAIN = "cluster.test";
const spiffe = (path: string): string => `spiffe://${TRUST_DOMAIN}/${path}`;
const STOP_WITHIN_MS = 15_000;
/** A request the service has not answered by then counts as a failure (rather than running into the test timeout). */
const REQUEST_WITHIN_MS = 10_000;

const CREATE_TOKEN = `mutation ($input: CreateEnrollmentTokenInput!) { createEnrollmentToken(input: $input) { id token usesLeft } }`;
const ISSUE = `mutation ($input: IssueCertificateInput!) {
  issueCertificate(input: $input) { serial certificatePem chainPem spiffeId }
}`;

interface ProcessInfo {
  readonly pid: number;
  readonly ppid: number;
  readonly command: string;
}

/** `promise`, or a rejection naming `what` once `ms` have passed. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** `ps` for the direct children of `pid`: their pids and command names. */
function childrenOf(pid: number): ProcessInfo[] {
  const result = spawnSync("ps", ["-o", "pid=,ppid=,comm=", "--ppid", String(pid)], { encoding: "utf8" });
  // ps exits 1 when nothing matches.
  return (result.stdout ?? "")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "")
    .map((line) => {
      const [childPid, parentPid, ...command] = line.split(/\s+/);
      return { pid: Number(childPid), ppid: Number(parentPid), command: command.join(" ") };
    });
}

/** `ps` for one pid; undefined once the process is gone (a zombie counts as gone: it has exited). */
function processInfo(pid: number): { command: string; state: string } | undefined {
  const result = spawnSync("ps", ["-o", "stat=,comm=", "-p", String(pid)], { encoding: "utf8" });
  const line = (result.stdout ?? "").trim();
  if (line === "") return undefined;
  const [state = "", ...command] = line.split(/\s+/);
  if (state.startsWith("Z")) return undefined;
  return { state, command: command.join(" ") };
}

/** Every process below `pid`, depth first. */
function descendantsOf(pid: number): ProcessInfo[] {
  return childrenOf(pid).flatMap((child) => [child, ...descendantsOf(child.pid)]);
}

/** A GraphQL response and the serial of the TLS certificate the answering worker presented. */
interface Answer {
  readonly status: number;
  readonly body: any;
  /** Lower-case hex without leading zeros. Each worker issues its own HTTPS certificate at start-up. */
  readonly serverSerial: string;
}

const normalSerial = (hex: string): string => hex.toLowerCase().replace(/^0+/, "");

describe.skipIf(missing !== undefined)(`the service with two worker processes${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let service: RunningService;
  let workerPids: number[] = [];
  const scratch = scratchDir("anchorage-cluster-");

  const admin = (query: string, variables?: Record<string, unknown>) => service.gql(query, variables, { bearer: service.adminKey });

  /** The service's JSON log lines (primary and workers) with the message `msg`, parsed. */
  const logLines = (msg: string): ({ pid: number } & Record<string, unknown>)[] =>
    service
      .logs()
      .split("\n")
      .filter((line) => line.includes(`"msg":${JSON.stringify(msg)}`))
      .map((line) => JSON.parse(line) as { pid: number } & Record<string, unknown>);

  async function createToken(spiffeId: string, uses: number): Promise<{ id: string; token: string }> {
    const response = await within(admin(CREATE_TOKEN, { input: { spiffeId, uses } }), REQUEST_WITHIN_MS, "createEnrollmentToken");
    expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
    expect(response.body.data.createEnrollmentToken.usesLeft).toBe(uses);
    return response.body.data.createEnrollmentToken as { id: string; token: string };
  }

  /**
   * One GraphQL POST on a connection of its own (the primary hands each new connection to the next worker),
   * noting which worker answered by the HTTPS certificate it presented.
   */
  async function gqlOnNewConnection(query: string, variables: Record<string, unknown>): Promise<Answer> {
    const answer = await service.gql(query, variables, { newConnection: true, timeoutMs: REQUEST_WITHIN_MS });
    return { status: answer.status, body: answer.body, serverSerial: normalSerial(answer.serverCertificateSerial) };
  }

  /** Serials of the workers' own HTTPS certificates, as the database recorded them. */
  function serviceCertificateSerials(): string[] {
    const rows = Number(service.sqlValue("SELECT count(*) FROM certificates WHERE requester = 'system:anchorage' AND state = 'issued'"));
    return Array.from({ length: rows }, (_, index) =>
      normalSerial(
        String(
          service.sqlValue("SELECT serial FROM certificates WHERE requester = 'system:anchorage' AND state = 'issued' ORDER BY rowid LIMIT 1 OFFSET ?", index),
        ),
      ),
    );
  }

  beforeAll(async () => {
    service = await startService({ env: { ANCHORAGE_WORKERS: "2", ANCHORAGE_TRUST_DOMAIN: TRUST_DOMAIN } });
  }, 60_000);

  afterAll(async () => {
    scratch.remove();
    await service?.cleanup();
    // Whatever happened above, no worker may outlive the file.
    for (const pid of workerPids) {
      if (processInfo(pid) !== undefined) process.kill(pid, "SIGKILL");
    }
  }, 30_000);

  it("runs as a primary and two node workers, and says it is listening exactly once", async () => {
    // Only node processes count: the development runner (tsx) may keep an esbuild helper beside each of them.
    const isNode = (entry: { command: string }): boolean => entry.command === "node";
    expect(processInfo(service.pid)?.command).toBe("node");
    const workers = childrenOf(service.pid).filter(isNode);
    expect(workers, JSON.stringify(childrenOf(service.pid))).toHaveLength(2);
    workerPids = workers.map((worker) => worker.pid);
    const tree = [{ pid: service.pid, command: "node" }, ...descendantsOf(service.pid)].filter(isNode);
    expect(tree, JSON.stringify(descendantsOf(service.pid))).toHaveLength(3);

    // Both workers reported in before the primary's announcement; give a duplicate time to show up.
    await sleep(500);
    const listening = service.logs().split("\n").filter((line) => line.includes('"msg":"listening"'));
    expect(listening, service.logs()).toHaveLength(1);
    const announcement = JSON.parse(listening[0] as string) as { pid: number; workers: number; graphqlPort: number; httpPort: number };
    expect(announcement).toMatchObject({ pid: service.pid, workers: 2, graphqlPort: service.graphqlPort, httpPort: service.httpPort });
    // Each worker started its own listeners (shared through the primary) and said so once.
    const workerLines = logLines("listeners up").map((line) => line.pid);
    expect(workerLines.sort()).toEqual([...workerPids].sort());

    const ready = await service.http("/readyz");
    expect(ready.status).toBe(200);
  });

  it("serves 20 parallel issuances from both workers, and stores every one", async () => {
    // Each worker certified its own HTTPS key through the normal issuance path at start-up.
    const workerCertificates = serviceCertificateSerials();
    expect(workerCertificates).toHaveLength(2);
    const rowsBefore = service.countCertificateRows();
    const spiffeIds = Array.from({ length: 20 }, (_, index) => spiffe(`ns/parallel/sa/app-${index}`));
    const tokens = await Promise.all(spiffeIds.map((spiffeId) => createToken(spiffeId, 1)));
    const csrs = spiffeIds.map((spiffeId) => makeCsr({ spiffeId }).csrPem);

    const answers = await Promise.all(csrs.map((csr, index) => gqlOnNewConnection(ISSUE, { input: { csr, token: tokens[index]?.token } })));
    for (const answer of answers) {
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      expect(answer.body.errors, JSON.stringify(answer.body.errors)).toBeUndefined();
    }
    const issued = answers.map((answer) => answer.body.data.issueCertificate as { serial: string; certificatePem: string; chainPem: string; spiffeId: string });
    expect(issued.map((certificate) => certificate.spiffeId)).toEqual(spiffeIds);
    const serials = issued.map((certificate) => certificate.serial);
    expect(new Set(serials).size).toBe(20);

    // Both workers answered some of them (the primary hands connections out round-robin).
    expect([...new Set(answers.map((answer) => answer.serverSerial))].sort()).toEqual([...workerCertificates].sort());

    // All stored, each as issued, with the DER that was returned.
    expect(service.countCertificateRows()).toBe(rowsBefore + 20);
    for (const certificate of issued) {
      expect(service.sqlValue("SELECT state FROM certificates WHERE serial = ?", certificate.serial)).toBe("issued");
      const der = service.sqlValue("SELECT der FROM certificates WHERE serial = ?", certificate.serial) as Buffer;
      expect(der.equals(Buffer.from(certificate.certificatePem.replace(/-----[^-]+-----|\s/g, ""), "base64"))).toBe(true);
    }

    // A sample checked by openssl: both workers sign with the same intermediate, up to the same root.
    const root = scratch.file("root.pem", service.rootPem);
    const oneFromEach = [...new Set(answers.map((answer) => answer.serverSerial))].map(
      (worker) => issued[answers.findIndex((answer) => answer.serverSerial === worker)],
    );
    for (const [index, certificate] of oneFromEach.entries()) {
      const chain = scratch.file(`chain-${index}.pem`, certificate?.chainPem);
      const leaf = scratch.file(`leaf-${index}.pem`, certificate?.certificatePem);
      const verified = openssl(["verify", "-x509_strict", "-CAfile", root, "-untrusted", chain, leaf]);
      expect(verified.status, `${verified.stdout}${verified.stderr}`).toBe(0);
    }
  });

  it("gives a token with 5 uses exactly 5 certificates when 12 requests race for it across both workers", async () => {
    const spiffeId = spiffe("ns/race/sa/shared");
    const token = await createToken(spiffeId, 5);
    const rowsBefore = service.countCertificateRows();
    const csrs = Array.from({ length: 12 }, () => makeCsr({ spiffeId }).csrPem);

    const answers = await Promise.all(csrs.map((csr) => gqlOnNewConnection(ISSUE, { input: { csr, token: token.token } })));
    // The race really was between the two processes.
    expect([...new Set(answers.map((answer) => answer.serverSerial))].sort()).toEqual([...serviceCertificateSerials()].sort());

    const succeeded = answers.filter((answer) => answer.body.data?.issueCertificate);
    const refused = answers.filter((answer) => answer.body.errors);
    expect(succeeded, JSON.stringify(answers.map((answer) => answer.body))).toHaveLength(5);
    expect(refused).toHaveLength(7);
    for (const answer of refused) {
      expect(answer.body.errors).toHaveLength(1);
      expect(answer.body.errors[0].extensions?.code).toBe("UNAUTHENTICATED");
      expect(answer.body.errors[0].message).toMatch(/used up|expired|unknown/);
    }
    expect(new Set(succeeded.map((answer) => answer.body.data.issueCertificate.serial)).size).toBe(5);

    expect(service.countCertificateRows()).toBe(rowsBefore + 5);
    expect(service.sqlValue("SELECT count(*) FROM certificates WHERE spiffe_id = ? AND state = 'issued'", spiffeId)).toBe(5);
    expect(service.sqlValue("SELECT count(*) FROM certificates WHERE spiffe_id = ?", spiffeId)).toBe(5);
    expect(service.sqlValue("SELECT uses_left FROM enrollment_tokens WHERE id = ?", token.id)).toBe(0);
  });

  it("makes one OCSP responder certificate per intermediate, though both workers started at once", () => {
    const intermediates = service.sqlValue("SELECT count(*) FROM authorities WHERE kind = 'intermediate'");
    expect(intermediates).toBeGreaterThan(0);
    expect(service.sqlValue("SELECT count(*) FROM ocsp_signers")).toBe(intermediates);
    expect(service.sqlValue("SELECT count(DISTINCT authority_id) FROM ocsp_signers")).toBe(intermediates);
  });

  it("gives the sweeps over shared state to exactly one worker, and to its replacement when that worker dies", async () => {
    const started = (): ({ pid: number } & Record<string, unknown>)[] => logLines("listeners up");
    const sweepers = started().filter((line) => line.runsSweeps);
    expect(sweepers, service.logs()).toHaveLength(1);
    const sweeper = sweepers[0]?.pid;
    expect(started().find((line) => !line.runsSweeps)?.pid).toBe(workerPids.find((pid) => pid !== sweeper));
    // The workers' own certificates and the issuances above have been sequenced, by the sweeper alone.
    expect(new Set(logLines("transparency log checkpoint signed").map((line) => line.pid))).toEqual(new Set([sweeper]));

    process.kill(sweeper as number, "SIGKILL");
    const replacedBy = Date.now() + 30_000;
    let replacement: number | undefined;
    while (replacement === undefined && Date.now() < replacedBy) {
      await sleep(100);
      replacement = started().find((line) => line.runsSweeps && line.pid !== sweeper)?.pid;
    }
    expect(replacement, service.logs().slice(-4000)).toBeDefined();
    expect(started().filter((line) => line.runsSweeps)).toHaveLength(2);
    workerPids = [...workerPids.filter((pid) => pid !== sweeper), replacement as number];

    // The replacement sequences the log: a certificate issued now reaches it.
    const spiffeId = spiffe("ns/after-failover/sa/app");
    const token = await createToken(spiffeId, 1);
    const issued = await gqlOnNewConnection(ISSUE, { input: { csr: makeCsr({ spiffeId }).csrPem, token: token.token } });
    expect(issued.body.errors, JSON.stringify(issued.body.errors)).toBeUndefined();
    const serial = issued.body.data.issueCertificate.serial as string;
    let proof: any;
    const sequencedBy = Date.now() + 10_000;
    while (Date.now() < sequencedBy) {
      proof = await within(admin(`query ($serial: String!) { inclusionProof(serial: $serial) { leafIndex treeSize } }`, { serial }), REQUEST_WITHIN_MS, "inclusionProof");
      if (!proof.body.errors) break;
      expect(proof.body.errors[0].extensions?.code).toBe("NOT_FOUND");
      await sleep(200);
    }
    expect(proof.body.errors, JSON.stringify(proof.body.errors)).toBeUndefined();
    expect(proof.body.data.inclusionProof.leafIndex).toBeLessThan(proof.body.data.inclusionProof.treeSize);
    expect(new Set(logLines("transparency log checkpoint signed").map((line) => line.pid))).toEqual(new Set([sweeper, replacement]));
  }, 60_000);

  it("stops the primary and both workers with exit code 0 within 15 s of SIGTERM", async () => {
    expect(workerPids).toHaveLength(2);
    for (const pid of workerPids) expect(processInfo(pid), `worker ${pid} should be running`).toBeDefined();

    const startedAt = Date.now();
    const code = await service.stop();
    const took = Date.now() - startedAt;
    expect(code, service.logs().slice(-4000)).toBe(0);
    expect(took).toBeLessThan(STOP_WITHIN_MS);

    // The primary waits for its workers before it exits; allow a moment for ps to catch up all the same.
    const deadline = Date.now() + 2_000;
    while (workerPids.some((pid) => processInfo(pid) !== undefined) && Date.now() < deadline) await sleep(50);
    for (const pid of workerPids) expect(processInfo(pid), `worker ${pid} outlived the primary`).toBeUndefined();

    // Each worker shut down its own listeners, HSM sessions and database, and said so.
    const stopped = logLines("stopped").map((line) => line.pid);
    expect(stopped.sort()).toEqual([...workerPids].sort());
  });
});
