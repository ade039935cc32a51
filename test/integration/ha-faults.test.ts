/**
 * Faults against two real service nodes sharing one PostgreSQL database and, on this machine, one SoftHSM token
 * (node A made it with the development bootstrap; node B opens the same token files with
 * ANCHORAGE_BOOTSTRAP=none and the online token's label and PIN). The PostgreSQL server is this file's own,
 * started by scripts/test-postgres.sh, so that it can be stopped and started again under the running nodes.
 *
 * 1. A node killed with SIGKILL while clients issue through both: nothing a client was given is missing from
 *    the history, no serial is given twice, and the surviving node never fails a request.
 * 2. The database stopped for 20 s: the nodes fail closed (UNAVAILABLE in bounded time, /readyz 503) while
 *    OCSP and CRLs keep being served from memory, and they recover by themselves once it is back: ready
 *    again, issuing, hearing each other's revocations, one sweeper.
 *
 * The tests run in order on one set-up: the first restarts the node it killed before it ends.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { refusal } from "../support/graphql.js";
import { createScratchDatabase, postgresSkipReason, requirePostgres, type ScratchDatabase } from "../support/postgres.js";
import { REPO_ROOT, makeCsr, openssl, requireTools, scratchDir, startService, type GqlResponse, type RunningService } from "../support/service.js";

const missing = requireTools(["softhsm2-util", "openssl"]) ?? (requirePostgres() === undefined ? postgresSkipReason : undefined);

const TRUST_DOMAIN = "ha-faults.test";
const spiffe = (path: string): string => `spiffe://${TRUST_DOMAIN}/${path}`;
/** The nodes' database timeouts (connect, statement, lock): a request fails closed within this plus a margin. */
const DB_TIMEOUT_MS = 3_000;
const FAILS_WITHIN_MS = DB_TIMEOUT_MS + 4_000;
const READINESS_INTERVAL_MS = 500;
const OUTAGE_MS = 20_000;
/** How long a node may take to notice the database came back (the change feed's back-off is capped at 5 s). */
const RECOVERY_WITHIN_MS = 20_000;
/** A client request not answered by then counts as failed. */
const REQUEST_WITHIN_MS = 20_000;

const CREATE_TOKEN = `mutation ($input: CreateEnrollmentTokenInput!) { createEnrollmentToken(input: $input) { id token } }`;
const ISSUE = `mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { serial certificatePem } }`;
const REVOKE = `mutation ($input: RevokeCertificateInput!) { revokeCertificate(input: $input) { serial status } }`;
const CERTIFICATES = `query ($filter: CertificateFilter, $after: String) {
  certificates(filter: $filter, first: 100, after: $after) { edges { node { serial certificatePem } } pageInfo { hasNextPage endCursor } }
}`;
const AUTHORITIES = "{ authorities { id kind status certificatePem } }";

/** This file's own PostgreSQL server, which the tests stop and start (scripts/test-postgres.sh). */
class PostgresServer {
  readonly dir = join(tmpdir(), `anchorage-ha-faults-pg-${randomBytes(6).toString("hex")}`);
  url = "";

  private run(command: string): string {
    return execFileSync("bash", [join(REPO_ROOT, "scripts", "test-postgres.sh"), command, this.dir], { encoding: "utf8", timeout: 60_000 }).trim();
  }

  start(): void {
    this.url = this.run("start");
  }

  pause(): void {
    this.run("pause");
  }

  resume(): void {
    this.run("resume");
  }

  remove(): void {
    this.run("stop");
  }
}

interface Issued {
  readonly serial: string;
  readonly certificatePem: string;
}

/** Lines of a node's JSON log with the message `msg`, parsed. */
function logLines(node: RunningService, msg: string): Record<string, unknown>[] {
  return node
    .logs()
    .split("\n")
    .filter((line) => line.includes(`"msg":${JSON.stringify(msg)}`))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Whether the node's log says it holds the sweeper lease now: its last lease message is the taking one. */
function holdsSweeperLease(node: RunningService): boolean {
  const lines = node.logs().split("\n").filter((line) => line.includes('"msg":"sweeper lease taken: this node runs the sweeps"') || line.includes('"msg":"sweeper lease released"'));
  return lines.at(-1)?.includes("sweeper lease taken") ?? false;
}

async function waitFor<T>(what: string, withinMs: number, attempt: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + withinMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await attempt();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${withinMs} ms${last ? ` (last error: ${String(last)})` : ""}`);
    await sleep(100);
  }
}

describe.skipIf(missing !== undefined)(`two nodes on one PostgreSQL database under faults${missing ? ` (skipped: ${missing})` : ""}`, () => {
  const postgres = new PostgresServer();
  let database: ScratchDatabase | undefined;
  // Made in beforeAll, so that a skipped file leaves no folder behind.
  let scratch: ReturnType<typeof scratchDir>;
  let dataA: string;
  let dataB: string;
  let nodeA: RunningService;
  let nodeB: RunningService;
  const started: RunningService[] = [];
  let adminKey: string;
  let envA: Record<string, string>;
  let envB: Record<string, string>;
  let chainFile: string;
  let casFile: string;

  const admin = (node: RunningService, query: string, variables?: Record<string, unknown>): Promise<GqlResponse> =>
    node.gql(query, variables, { bearer: adminKey, timeoutMs: REQUEST_WITHIN_MS });

  const exitedNodes = new Set<RunningService>();

  async function start(dataDir: string, env: Record<string, string>): Promise<RunningService> {
    const node = await startService({ dataDir, env });
    started.push(node);
    void node.exited.then(() => exitedNodes.add(node));
    return node;
  }

  /** Fails, showing the end of its log, when a node has exited. */
  function expectRunning(...nodes: RunningService[]): void {
    for (const node of nodes) expect(exitedNodes.has(node), `node ${node.pid} exited:\n${node.logs().slice(-4_000)}`).toBe(false);
  }

  async function createToken(node: RunningService, spiffeId: string, uses: number): Promise<string> {
    const response = await admin(node, CREATE_TOKEN, { input: { spiffeId, uses, expiresInSeconds: 3600 } });
    expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
    return response.body.data.createEnrollmentToken.token as string;
  }

  async function issue(node: RunningService, spiffeId: string): Promise<Issued> {
    const token = await createToken(node, spiffeId, 1);
    const response = await node.gql(ISSUE, { input: { csr: makeCsr({ spiffeId }).csrPem, token } }, { timeoutMs: REQUEST_WITHIN_MS });
    expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
    return response.body.data.issueCertificate as Issued;
  }

  /** Every certificate under a SPIFFE ID prefix, as `node` reads the history, page by page. */
  async function history(node: RunningService, spiffeIdPrefix: string): Promise<Issued[]> {
    const all: Issued[] = [];
    let after: string | undefined;
    for (;;) {
      const response = await admin(node, CERTIFICATES, { filter: { spiffeIdPrefix }, ...(after ? { after } : {}) });
      expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
      const page = response.body.data.certificates as { edges: { node: Issued }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } };
      all.push(...page.edges.map((edge) => edge.node));
      if (!page.pageInfo.hasNextPage) return all;
      after = page.pageInfo.endCursor as string;
    }
  }

  /** `openssl ocsp` for one certificate against one node's responder: "good", "revoked", or the whole output when neither. */
  function ocspStatus(node: RunningService, certificate: Issued, name: string, { nonce = true }: { nonce?: boolean } = {}): string {
    const certFile = scratch.file(`${name}.pem`, certificate.certificatePem);
    const result = openssl([
      "ocsp",
      "-issuer",
      chainFile,
      "-cert",
      certFile,
      "-url",
      `http://127.0.0.1:${node.httpPort}/ocsp`,
      "-CAfile",
      casFile,
      "-timeout",
      "10",
      ...(nonce ? [] : ["-no_nonce"]),
    ]);
    const output = `${result.stdout}\n${result.stderr}`;
    if (result.status !== 0 || !output.includes("Response verify OK")) return output;
    if (output.includes(`${certFile}: good`)) return "good";
    if (output.includes(`${certFile}: revoked`)) return "revoked";
    return output;
  }

  async function readiness(node: RunningService): Promise<{ status: number; body: Record<string, unknown> }> {
    const response = await node.http("/readyz");
    return { status: response.status, body: JSON.parse(response.body.toString("utf8")) as Record<string, unknown> };
  }

  beforeAll(async () => {
    scratch = scratchDir("anchorage-ha-faults-");
    dataA = join(scratch.dir, "node-a");
    dataB = join(scratch.dir, "node-b");
    postgres.start();
    database = await createScratchDatabase(postgres.url);
    const common = {
      ANCHORAGE_DATABASE_URL: database.url,
      ANCHORAGE_TRUST_DOMAIN: TRUST_DOMAIN,
      ANCHORAGE_DB_BUSY_TIMEOUT_MS: String(DB_TIMEOUT_MS),
      ANCHORAGE_READINESS_INTERVAL_MS: String(READINESS_INTERVAL_MS),
    };
    envA = common;
    mkdirSync(dataA);
    nodeA = await start(dataA, envA);
    adminKey = nodeA.adminKey;
    // Node B: its own data folder with only what the harness reads (the root and the admin key, which the
    // shared database knows), and node A's token through A's SoftHSM configuration.
    mkdirSync(dataB);
    copyFileSync(join(dataA, "root.pem"), join(dataB, "root.pem"));
    writeFileSync(join(dataB, "admin-api-key"), `${adminKey}\n`);
    envB = {
      ...common,
      ANCHORAGE_BOOTSTRAP: "none",
      SOFTHSM2_CONF: join(dataA, "softhsm2.conf"),
      ANCHORAGE_HSM_TOKEN_LABEL: "anchorage-online",
      ANCHORAGE_HSM_PIN: readFileSync(join(dataA, "secrets", "online-token.pin"), "utf8").trim(),
    };
    nodeB = await start(dataB, envB);

    const authorities = await nodeA.gql(AUTHORITIES);
    expect(authorities.body.errors).toBeUndefined();
    const intermediate = (authorities.body.data.authorities as { kind: string; status: string; certificatePem: string }[]).find(
      (authority) => authority.kind === "INTERMEDIATE" && authority.status === "ACTIVE",
    );
    expect(intermediate).toBeDefined();
    chainFile = scratch.file("intermediate.pem", intermediate?.certificatePem);
    casFile = scratch.file("cas.pem", nodeA.rootPem + (intermediate?.certificatePem as string));
  }, 120_000);

  afterAll(async () => {
    for (const node of started) await node.cleanup();
    // The PostgreSQL server may have been left paused by a failed test.
    try {
      postgres.resume();
    } catch {
      // Running already.
    }
    await database?.drop().catch(() => undefined);
    postgres.remove();
    scratch?.remove();
  }, 60_000);

  it("starts both nodes on the shared database and token, with the sweeps on exactly one", async () => {
    expect((await readiness(nodeA)).status).toBe(200);
    expect((await readiness(nodeB)).status).toBe(200);
    expect(logLines(nodeB, "development root and intermediate created")).toHaveLength(0);
    await waitFor("one sweeper", 5_000, async () => ([nodeA, nodeB].filter(holdsSweeperLease).length === 1 ? true : undefined));
  });

  it("loses nothing a client was given when one node is killed with SIGKILL while both issue", async () => {
    const prefix = spiffe("ns/kill/");
    const spiffeId = spiffe("ns/kill/sa/load");
    const token = await createToken(nodeB, spiffeId, 10_000);
    // One key per client loop, reused for each of its requests (making a key per request would stall the loops).
    const csrs = Array.from({ length: 8 }, () => makeCsr({ spiffeId }).csrPem);

    type Outcome = { node: "A" | "B"; ok: true; certificate: Issued } | { node: "A" | "B"; ok: false; error: string };
    const outcomes: Outcome[] = [];
    let killed = false;
    let stopAt = Number.POSITIVE_INFINITY;
    const inFlightB = new Set<number>();
    let requestId = 0;
    let inFlightBAtKill: number[] = [];

    const loop = async (node: RunningService, name: "A" | "B", csr: string): Promise<void> => {
      while (Date.now() < stopAt) {
        const id = requestId++;
        if (name === "B") inFlightB.add(id);
        try {
          const response = await node.gql(ISSUE, { input: { csr, token } }, { newConnection: true, timeoutMs: REQUEST_WITHIN_MS });
          const certificate = response.body?.data?.issueCertificate as Issued | undefined;
          if (response.status === 200 && certificate && response.body.errors === undefined) outcomes.push({ node: name, ok: true, certificate });
          else outcomes.push({ node: name, ok: false, error: `HTTP ${response.status}: ${JSON.stringify(response.body)}` });
        } catch (error) {
          outcomes.push({ node: name, ok: false, error: String(error) });
          // A killed node refuses connections from now on.
          if (name === "A" && killed) return;
        } finally {
          inFlightB.delete(id);
        }
      }
    };

    const loops = [
      ...csrs.slice(0, 4).map((csr) => loop(nodeA, "A", csr)),
      ...csrs.slice(4).map((csr) => loop(nodeB, "B", csr)),
    ];
    await sleep(2_500);
    const issuedByABeforeKill = outcomes.filter((outcome) => outcome.node === "A" && outcome.ok).length;
    inFlightBAtKill = [...inFlightB];
    process.kill(nodeA.pid, "SIGKILL");
    killed = true;
    expect(await nodeA.exited).toBeNull();
    const killedAt = Date.now();
    stopAt = killedAt + 3_000;
    await Promise.all(loops);

    // Both nodes really were issuing when A died, and B had requests in flight then.
    expect(issuedByABeforeKill).toBeGreaterThan(0);
    expect(inFlightBAtKill.length).toBeGreaterThan(0);
    const fromB = outcomes.filter((outcome) => outcome.node === "B");
    expect(fromB.filter((outcome) => !outcome.ok), "every request to the surviving node succeeds").toEqual([]);
    expect(fromB.length).toBeGreaterThan(inFlightBAtKill.length);

    const received = outcomes.flatMap((outcome) => (outcome.ok ? [outcome.certificate] : []));
    const receivedSerials = received.map((certificate) => certificate.serial);
    expect(new Set(receivedSerials).size, "no serial is given to two clients").toBe(receivedSerials.length);

    const stored = await history(nodeB, prefix);
    const storedSerials = stored.map((certificate) => certificate.serial);
    expect(new Set(storedSerials).size, "no serial appears twice in the history").toBe(storedSerials.length);
    const storedBySerial = new Map(stored.map((certificate) => [certificate.serial, certificate.certificatePem]));
    for (const certificate of received) {
      expect(storedBySerial.get(certificate.serial), `certificate ${certificate.serial} a client received is in the history`).toBe(certificate.certificatePem);
    }

    // Node A comes back on its data folder for the next test.
    nodeA = await start(dataA, envA);
    expect((await readiness(nodeA)).status).toBe(200);
  }, 90_000);

  it("fails closed while PostgreSQL is down for 20 s, serving OCSP and CRLs from memory, and recovers without a restart", async () => {
    const nodes = [
      ["A", nodeA],
      ["B", nodeB],
    ] as const;
    const before = { A: await issue(nodeA, spiffe("ns/outage/sa/a")), B: await issue(nodeB, spiffe("ns/outage/sa/b")) };
    const authorityId = await (async () => {
      const response = await nodeA.gql(AUTHORITIES);
      return (response.body.data.authorities as { id: string; kind: string; status: string }[]).find((a) => a.kind === "INTERMEDIATE" && a.status === "ACTIVE")?.id as string;
    })();
    for (const [, node] of nodes) expect((await node.http(`/crl/${authorityId}.crl`)).status).toBe(200);
    const spareToken = { A: await createToken(nodeA, spiffe("ns/outage/sa/a2"), 5), B: await createToken(nodeB, spiffe("ns/outage/sa/b2"), 5) };

    // Each node answers OCSP for both certificates just before the outage, so that it holds the answers. Any
    // node's write of a stored OCSP response (each issuance makes one) empties every node's OCSP memory, so
    // the writes above are given time to be heard first.
    await sleep(1_000);
    for (const [name, node] of nodes) {
      for (const [owner, certificate] of Object.entries(before)) {
        expect(ocspStatus(node, certificate, `before-${name}-${owner}`), `node ${name} OCSP for ${owner}'s certificate before the outage`).toBe("good");
      }
    }

    postgres.pause();
    const pausedAt = Date.now();
    await sleep(200);
    expectRunning(nodeA, nodeB);

    // Readiness: 503 with database false on both nodes, soon (a probe is bounded by the database timeout).
    for (const [name, node] of nodes) {
      const state = await waitFor(`node ${name} reports the database down`, READINESS_INTERVAL_MS + FAILS_WITHIN_MS, async () => {
        const current = await readiness(node);
        return current.status === 503 ? current : undefined;
      });
      expect(state.body).toMatchObject({ database: false, hsm: true });
    }

    // Issuance and revocation fail closed, each within the database timeout plus a margin.
    for (const [name, node] of nodes) {
      const startedAt = Date.now();
      const response = await node.gql(ISSUE, { input: { csr: makeCsr({ spiffeId: spiffe(`ns/outage/sa/${name.toLowerCase()}2`) }).csrPem, token: spareToken[name] } }, { timeoutMs: REQUEST_WITHIN_MS });
      expect(Date.now() - startedAt, `node ${name} issuance answered in bounded time`).toBeLessThan(FAILS_WITHIN_MS);
      expect(refusal(response).code, `node ${name} issuance`).toBe("UNAVAILABLE");
    }
    {
      const startedAt = Date.now();
      const response = await admin(nodeB, REVOKE, { input: { serial: before.A.serial } });
      expect(Date.now() - startedAt, "revocation answered in bounded time").toBeLessThan(FAILS_WITHIN_MS);
      expect(refusal(response).code, "revocation").toBe("UNAVAILABLE");
    }

    // Served from memory throughout the outage: OCSP (good) and the CRL.
    let rounds = 0;
    do {
      for (const [name, node] of nodes) {
        // Asked as openssl asks by default (with a nonce, which a node cannot honour without the database: it
        // answers with the pre-signed response instead) and as RFC 5019 clients ask (without).
        for (const [owner, certificate] of Object.entries(before)) {
          expect(ocspStatus(node, certificate, `during-${name}-${owner}`), `node ${name} OCSP for ${owner}'s certificate during the outage`).toBe("good");
          expect(ocspStatus(node, certificate, `during-${name}-${owner}`, { nonce: false }), `node ${name} OCSP for ${owner}'s (no nonce) during the outage`).toBe(
            "good",
          );
        }
        const crl = await node.http(`/crl/${authorityId}.crl`);
        expect(crl.status, `node ${name} CRL during the outage`).toBe(200);
        const parsed = openssl(["crl", "-inform", "DER", "-noout", "-issuer"], crl.body);
        expect(parsed.status, parsed.stderr).toBe(0);
        expect((await readiness(node)).body).toMatchObject({ database: false });
      }
      expectRunning(nodeA, nodeB);
      rounds++;
      await sleep(1_000);
    } while (Date.now() - pausedAt < OUTAGE_MS);
    expect(rounds).toBeGreaterThan(3);
    // Nobody runs the sweeps against a database nobody can reach.
    expect([nodeA, nodeB].filter(holdsSweeperLease)).toHaveLength(0);

    postgres.resume();

    for (const [name, node] of nodes) {
      await waitFor(`node ${name} ready again`, RECOVERY_WITHIN_MS, async () => ((await readiness(node)).status === 200 ? true : undefined));
    }
    // Issuance works on both nodes again, on the first try.
    const after = { A: await issue(nodeA, spiffe("ns/outage/sa/a3")), B: await issue(nodeB, spiffe("ns/outage/sa/b3")) };
    expect(after.A.serial).not.toBe(after.B.serial);

    // A revocation through node B reaches node A's OCSP answer, which A held in memory: A's change feed is back.
    const revoked = await admin(nodeB, REVOKE, { input: { serial: before.A.serial } });
    expect(revoked.body.errors, JSON.stringify(revoked.body.errors)).toBeUndefined();
    expect(revoked.body.data.revokeCertificate.status).toBe("REVOKED");
    await waitFor("node A answers revoked", RECOVERY_WITHIN_MS, async () => (ocspStatus(nodeA, before.A, "after-A") === "revoked" ? true : undefined));
    expect(ocspStatus(nodeB, before.A, "after-A-on-B")).toBe("revoked");
    expect(ocspStatus(nodeB, before.B, "after-B")).toBe("good");

    // Exactly one node took the sweeper lease back, and it keeps it.
    await waitFor("a node takes the sweeper lease", RECOVERY_WITHIN_MS, async () => ([nodeA, nodeB].some(holdsSweeperLease) ? true : undefined));
    await sleep(3_000);
    expect([nodeA, nodeB].filter(holdsSweeperLease)).toHaveLength(1);
    expectRunning(nodeA, nodeB);
  }, 90_000);
});
