/**
 * Secrets of the development bootstrap and API key lifetimes, against the real service. The bootstrap runs with
 * a stand-in `softhsm2-util` first on its PATH that records its arguments (and then runs the real one): token
 * PINs must never appear on a command line, where any local user can read them in /proc. API keys may carry an
 * expiry, after which they are refused.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ok, refusal } from "../support/graphql.js";
import { requireTools, startService, type RunningService } from "../support/service.js";

const missing = requireTools(["softhsm2-util", "openssl"]);

describe.skipIf(missing !== undefined)(`credentials${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let service: RunningService;
  const recorder = mkdtempSync(join(tmpdir(), "anchorage-recorder-"));
  const recorded = join(recorder, "invocations.log");

  beforeAll(async () => {
    const real = spawnSync("bash", ["-c", "command -v softhsm2-util"], { encoding: "utf8" }).stdout.trim();
    const standIn = join(recorder, "softhsm2-util");
    writeFileSync(standIn, `#!/usr/bin/env bash\nprintf '%s\\n' "$*" >> '${recorded}'\nexec '${real}' "$@"\n`);
    chmodSync(standIn, 0o755);
    service = await startService({ env: { PATH: `${recorder}:${process.env.PATH ?? ""}` } });
  }, 90_000);

  afterAll(async () => {
    await service?.cleanup();
    rmSync(recorder, { recursive: true, force: true });
  });

  it("initialises the development tokens without passing a PIN on any command line", async () => {
    const secrets = join(service.dataDir, "secrets");
    const pins = readdirSync(secrets)
      .filter((file) => /\.(so-)?pin$/.test(file))
      .map((file) => readFileSync(join(secrets, file), "utf8").trim());
    // The online and root tokens, each with a user and an SO PIN.
    expect(pins).toHaveLength(4);
    const invocations = existsSync(recorded) ? readFileSync(recorded, "utf8") : "";
    for (const pin of pins) expect(invocations).not.toContain(pin);
    // The tokens work: the root signed the bootstrap authorities and the online token issues.
    expect(readFileSync(join(service.dataDir, "root.pem"), "utf8")).toContain("BEGIN CERTIFICATE");
    expect(ok(await service.gql("{ authorities { kind status } }", undefined, { bearer: service.adminKey })).authorities).toHaveLength(2);
  });

  it("accepts an API key until its expiry and refuses it afterwards", async () => {
    const admin = (query: string, variables?: Record<string, unknown>) => service.gql(query, variables, { bearer: service.adminKey });
    const CREATE = `mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) { id key expiresAt } }`;
    expect(refusal(await admin(CREATE, { input: { name: "none", role: "ADMIN", expiresInSeconds: 0 } })).code).toBe("BAD_USER_INPUT");
    expect(refusal(await admin(CREATE, { input: { name: "forever", role: "ADMIN", expiresInSeconds: 10 * 366 * 86_400 } })).code).toBe("BAD_USER_INPUT");

    const created = ok(await admin(CREATE, { input: { name: "short-lived", role: "ADMIN", expiresInSeconds: 3 } })).createApiKey;
    const expiresAt = Date.parse(created.expiresAt);
    expect(expiresAt).toBeGreaterThan(Date.now() - 5_000);
    const listed = ok(await admin("{ apiKeys { id expiresAt } }")).apiKeys as { id: string; expiresAt: string | null }[];
    expect(listed.find((key) => key.id === created.id)?.expiresAt).toBe(created.expiresAt);
    // The bootstrap key has no expiry.
    expect(listed.filter((key) => key.expiresAt === null)).toHaveLength(1);

    const withKey = () => service.gql("{ apiKeys { id } }", undefined, { bearer: created.key, newConnection: true });
    ok(await withKey());
    while (Date.now() <= expiresAt + 250) await new Promise((resolve) => setTimeout(resolve, 100));
    const expired = refusal(await withKey());
    expect(expired.code).toBe("UNAUTHENTICATED");
    expect(expired.message).toMatch(/expired/);
  });
});
