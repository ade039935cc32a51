/**
 * A full disk under the real service: its data folder is a small tmpfs of its own, which the test fills with
 * a file of zeros while the service runs. Issuance must then answer UNAVAILABLE (retryable) instead of
 * INTERNAL or hanging, keep nothing of the refused request (no certificate row, no token use), and /readyz
 * must say not ready; once the file is gone, both come back without a restart.
 *
 * Mounting needs root (CI runs as root); outside CI a developer without root skips this file.
 */
import { spawnSync } from "node:child_process";
import { appendFileSync, mkdtempSync, rmSync, statfsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ok, refusal, type Issued } from "../support/graphql.js";
import { makeCsr, requireTools, startService, type RunningService } from "../support/service.js";

const missing = requireTools(["softhsm2-util", "openssl"]);

const TRUST_DOMAIN = "anchorage.test";
const spiffe = (path: string): string => `spiffe://${TRUST_DOMAIN}/${path}`;
/** Room for the tokens, the database and its WAL, and a few hundred certificates. */
const MOUNT_SIZE = "48m";
/** Far above any bounded wait: a hang fails the request instead of being measured. */
const CLIENT_TIMEOUT_MS = 60_000;
/** /readyz is computed in the background: poll with a deadline. */
const READINESS_DEADLINE_MS = 30_000;
/** Certificates still fit where SQLite finds free pages; the disk refuses one within this many. */
const MAX_ATTEMPTS_UNTIL_FULL = 200;

const CREATE_TOKEN = `mutation ($input: CreateEnrollmentTokenInput!) { createEnrollmentToken(input: $input) { id token } }`;
const ISSUE = `mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { serial spiffeId } }`;

/** Why this process cannot mount a tmpfs, or undefined when it can. In CI that is a failure, not a skip. */
function mountUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "mounting a tmpfs needs root";
  const probe = mkdtempSync(join(tmpdir(), "anchorage-mount-probe-"));
  try {
    const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", probe], { encoding: "utf8" });
    if (mounted.status !== 0) return `mount -t tmpfs failed: ${mounted.stderr.trim() || mounted.error?.message}`;
    spawnSync("umount", [probe]);
    return undefined;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

const unmountable = missing === undefined ? mountUnavailable() : undefined;
if (unmountable !== undefined && process.env.CI) {
  describe("full-disk prerequisites in CI", () => {
    it("can mount a tmpfs", () => {
      throw new Error(`CI must not skip the full-disk test: ${unmountable}`);
    });
  });
}

/** Appends zeros until the file system says ENOSPC: 1 MiB at a time, then 4 KiB, then single bytes. */
function fillUp(path: string): void {
  for (const size of [1 << 20, 4096, 1]) {
    const chunk = Buffer.alloc(size);
    for (;;) {
      try {
        appendFileSync(path, chunk);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOSPC") break;
        throw error;
      }
    }
  }
}

const skipReason = missing ?? unmountable;
describe.skipIf(skipReason !== undefined)(`issuance on a full disk${skipReason ? ` (skipped: ${skipReason})` : ""}`, () => {
  let mountPoint: string;
  let mounted = false;
  let service: RunningService | undefined;
  let token: { id: string; token: string };
  const filler = () => join(mountPoint, "filler");
  const usesLeft = () => Number(service?.sqlValue("SELECT uses_left FROM enrollment_tokens WHERE id = ?", token.id));

  const issue = (spiffeId: string) =>
    (service as RunningService).gql(ISSUE, { input: { csr: makeCsr({ spiffeId }).csrPem, token: token.token } }, { timeoutMs: CLIENT_TIMEOUT_MS, newConnection: true });

  async function readinessBecomes(status: number): Promise<{ status: number; body: string }> {
    const deadline = Date.now() + READINESS_DEADLINE_MS;
    for (;;) {
      const answer = await (service as RunningService).http("/readyz");
      const seen = { status: answer.status, body: answer.body.toString("utf8") };
      if (seen.status === status || Date.now() > deadline) return seen;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  beforeAll(async () => {
    mountPoint = mkdtempSync(join(tmpdir(), "anchorage-full-disk-"));
    const mount = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${MOUNT_SIZE},mode=0700`, "tmpfs", mountPoint], { encoding: "utf8" });
    expect(mount.status, mount.stderr).toBe(0);
    mounted = true;
    service = await startService({ dataDir: mountPoint, env: { ANCHORAGE_TRUST_DOMAIN: TRUST_DOMAIN, ANCHORAGE_READINESS_INTERVAL_MS: "500" } });
    token = ok<{ createEnrollmentToken: { id: string; token: string } }>(
      await service.gql(CREATE_TOKEN, { input: { spiffeId: spiffe("full-disk"), uses: MAX_ATTEMPTS_UNTIL_FULL + 10 } }, { bearer: service.adminKey }),
    ).createEnrollmentToken;
  }, 90_000);

  afterAll(async () => {
    if (service) {
      const code = await service.stop();
      expect(code).toBe(0);
    }
    if (mounted) spawnSync("umount", [mountPoint]);
    rmSync(mountPoint, { recursive: true, force: true });
  }, 30_000);

  it("issues while there is room", async () => {
    expect((await readinessBecomes(200)).status).toBe(200);
    ok<{ issueCertificate: Issued }>(await issue(spiffe("full-disk")));
  });

  it("answers UNAVAILABLE once the disk refuses a write, keeps nothing of that request, and is not ready", async () => {
    fillUp(filler());
    expect(statfsSync(mountPoint).bavail).toBe(0);

    let refused: { code: string; message: string } | undefined;
    for (let attempt = 0; attempt < MAX_ATTEMPTS_UNTIL_FULL && refused === undefined; attempt++) {
      const rowsBefore = service?.countCertificateRows();
      const usesBefore = usesLeft();
      const answer = await issue(spiffe("full-disk"));
      if (answer.body.errors) {
        refused = refusal(answer);
        expect(service?.countCertificateRows()).toBe(rowsBefore);
        expect(usesLeft()).toBe(usesBefore);
      }
    }
    expect(refused, `no refusal within ${MAX_ATTEMPTS_UNTIL_FULL} issuances on a full disk`).toBeDefined();
    expect(refused?.code).toBe("UNAVAILABLE");
    expect(refused?.message).toMatch(/retry/i);

    const readiness = await readinessBecomes(503);
    expect(readiness.status, readiness.body).toBe(503);
    expect(JSON.parse(readiness.body)).toMatchObject({ database: false });
  }, 120_000);

  it("is ready and issues again once space is freed, without a restart", async () => {
    const pid = service?.pid;
    rmSync(filler());
    const readiness = await readinessBecomes(200);
    expect(readiness.status, readiness.body).toBe(200);
    const issued = ok<{ issueCertificate: Issued }>(await issue(spiffe("full-disk")));
    expect(issued.issueCertificate.spiffeId).toBe(spiffe("full-disk"));
    expect(service?.pid).toBe(pid);
  }, 60_000);
});
