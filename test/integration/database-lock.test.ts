/**
 * The database held by another process, against the real service (child process, SoftHSM, SQLite file,
 * HTTPS): while a foreign connection keeps SQLite's write lock, issuance answers UNAVAILABLE after a bounded
 * wait instead of hanging, reserves nothing (no row, no token use), and /readyz reports not ready; once the
 * lock is released, issuance and readiness come back without a restart.
 *
 * One service for the whole file; the tests run in order (the lock is taken in the second and released in
 * the third).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ok, refusal, type Issued } from "../support/graphql.js";
import { REPO_ROOT, makeCsr, requireTools, startService, type RunningService } from "../support/service.js";

const missing = requireTools(["softhsm2-util", "openssl"]);

const TRUST_DOMAIN = "anchorage.test";
const spiffe = (path: string): string => `spiffe://${TRUST_DOMAIN}/${path}`;
/** The service's bounded wait for the write lock, short so that the test does not idle. */
const BUSY_TIMEOUT_MS = 1_500;
/** Far above the bounded wait: a hang fails the request instead of being measured. */
const CLIENT_TIMEOUT_MS = 60_000;
/** /readyz may be computed in the background every few seconds: poll with a deadline. */
const READINESS_DEADLINE_MS = 30_000;

const CREATE_TOKEN = `mutation ($input: CreateEnrollmentTokenInput!) { createEnrollmentToken(input: $input) { id token } }`;
const ISSUE = `mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { serial certificatePem chainPem notBefore notAfter spiffeId dnsNames } }`;

/** A separate process (better-sqlite3, as any operator tool would use it) that holds the write lock until told to let go. */
const LOCK_HOLDER = `
const Database = require("better-sqlite3");
const db = new Database(process.argv[1]);
db.exec("BEGIN IMMEDIATE");
db.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (-1, 'held by a test')").run();
process.stdout.write("locked\\n");
process.stdin.once("data", () => {
  db.exec("ROLLBACK");
  db.close();
  process.stdout.write("released\\n");
  process.exit(0);
});
`;

async function waitForLine(child: ChildProcess, line: string): Promise<void> {
  let seen = "";
  await new Promise<void>((resolve, reject) => {
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (chunk: string) => {
      seen += chunk;
      if (seen.includes(line)) resolve();
    });
    child.once("exit", (code) => reject(new Error(`lock holder exited with ${code} before "${line}"`)));
  });
}

describe.skipIf(missing !== undefined)(`issuance while another process holds the database${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let service: RunningService;
  let holder: ChildProcess | undefined;

  const admin = (query: string, variables?: Record<string, unknown>) =>
    service.gql(query, variables, { bearer: service.adminKey, timeoutMs: CLIENT_TIMEOUT_MS, newConnection: true });
  const issue = (input: Record<string, unknown>) => service.gql(ISSUE, { input }, { timeoutMs: CLIENT_TIMEOUT_MS, newConnection: true });

  async function readinessBecomes(status: number): Promise<{ status: number; body: string }> {
    const deadline = Date.now() + READINESS_DEADLINE_MS;
    for (;;) {
      const answer = await service.http("/readyz");
      const seen = { status: answer.status, body: answer.body.toString("utf8") };
      if (seen.status === status || Date.now() > deadline) return seen;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  async function createToken(spiffeId: string, uses: number): Promise<{ id: string; token: string }> {
    return ok(await admin(CREATE_TOKEN, { input: { spiffeId, uses } })).createEnrollmentToken;
  }

  beforeAll(async () => {
    service = await startService({ env: { ANCHORAGE_TRUST_DOMAIN: TRUST_DOMAIN, ANCHORAGE_DB_BUSY_TIMEOUT_MS: String(BUSY_TIMEOUT_MS) } });
  }, 90_000);

  afterAll(async () => {
    if (holder && holder.exitCode === null) {
      holder.kill("SIGKILL");
      await once(holder, "exit");
    }
    if (service) {
      const code = await service.stop();
      await service.cleanup();
      expect(code).toBe(0);
    }
  }, 30_000);

  it("is ready and issues before the lock is taken", async () => {
    expect((await readinessBecomes(200)).status).toBe(200);
    const token = await createToken(spiffe("before"), 1);
    ok<{ issueCertificate: Issued }>(await issue({ csr: makeCsr({ spiffeId: spiffe("before") }).csrPem, token: token.token }));
  });

  let waiting: { id: string; token: string };
  const waitingSpiffeId = spiffe("while-locked");

  it("answers UNAVAILABLE after a bounded wait while another process holds the write lock, reserving nothing", async () => {
    waiting = await createToken(waitingSpiffeId, 2);
    const { csrPem } = makeCsr({ spiffeId: waitingSpiffeId });
    const rowsBefore = service.countCertificateRows();

    holder = spawn(process.execPath, ["-e", LOCK_HOLDER, join(service.dataDir, "anchorage.db")], {
      cwd: REPO_ROOT,
      stdio: ["pipe", "pipe", "inherit"],
    });
    await waitForLine(holder, "locked");

    const answer = refusal(await issue({ csr: csrPem, token: waiting.token }));
    expect(answer.code).toBe("UNAVAILABLE");
    expect(answer.message).toMatch(/retry/i);
    expect(service.countCertificateRows()).toBe(rowsBefore);
    expect(service.sqlValue("SELECT uses_left FROM enrollment_tokens WHERE id = ?", waiting.id)).toBe(2);

    // Writes outside issuance's group commit (here a token and its audit event) get the same answer.
    const tokensBefore = service.sqlValue("SELECT count(*) FROM enrollment_tokens");
    const creation = refusal(await admin(CREATE_TOKEN, { input: { spiffeId: waitingSpiffeId, uses: 1 } }));
    expect(creation.code).toBe("UNAVAILABLE");
    expect(service.sqlValue("SELECT count(*) FROM enrollment_tokens")).toBe(tokensBefore);

    const readiness = await readinessBecomes(503);
    expect(readiness.status, readiness.body).toBe(503);
    expect(JSON.parse(readiness.body)).toMatchObject({ database: false });
  }, 90_000);

  it("issues again and is ready once the lock is released, without a restart", async () => {
    const pid = service.pid;
    holder?.stdin?.write("release\n");
    await waitForLine(holder as ChildProcess, "released");

    const readiness = await readinessBecomes(200);
    expect(readiness.status, readiness.body).toBe(200);
    const issued = ok<{ issueCertificate: Issued }>(await issue({ csr: makeCsr({ spiffeId: waitingSpiffeId }).csrPem, token: waiting.token }));
    expect(issued.issueCertificate.spiffeId).toBe(waitingSpiffeId);
    expect(service.sqlValue("SELECT uses_left FROM enrollment_tokens WHERE id = ?", waiting.id)).toBe(1);
    expect(service.pid).toBe(pid);
    expect(service.sqlValue("SELECT count(*) FROM schema_migrations WHERE version = -1")).toBe(0);
  }, 90_000);
});
