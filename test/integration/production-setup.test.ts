/**
 * The production set-up from the README, end to end with real SoftHSM tokens: the offline ceremony and the
 * operator CLI prepare a data folder, and the service starts on it with ANCHORAGE_BOOTSTRAP=none, issuing
 * certificates that openssl verifies up to the ceremony's root.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT, makeCsr, openssl, requireTools, scratchDir, startService, type RunningService } from "../support/service.js";
import { createSoftHsm, type SoftHsm } from "../support/softhsm.js";

const missing = requireTools(["softhsm2-util", "openssl"]);

const ROOT_TOKEN = "prod-root";
const ROOT_PIN = "root-pin-1618";
const ONLINE_TOKEN = "prod-online";
const ONLINE_PIN = "online-pin-1414";

describe.skipIf(missing !== undefined)(`a production set-up through the ceremony and admin CLIs${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let hsm: SoftHsm;
  const scratch = scratchDir("anchorage-production-");
  const dataDir = join(scratch.dir, "data");
  let service: RunningService | undefined;

  function cli(tool: "ceremony" | "admin", args: readonly string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
    const base: Record<string, string> = {};
    for (const [name, value] of Object.entries(process.env)) {
      if (value !== undefined && !name.startsWith("ANCHORAGE_") && name !== "SOFTHSM2_CONF") base[name] = value;
    }
    const result = spawnSync(process.execPath, ["--import", "tsx", join("src", "cli", `${tool}.ts`), ...args], {
      cwd: REPO_ROOT,
      env: { ...base, SOFTHSM2_CONF: hsm.confPath, ANCHORAGE_PKCS11_MODULE: hsm.modulePath, ...env },
      encoding: "utf8",
      timeout: 60_000,
    });
    return { status: result.status, stdout: result.stdout ?? "", stderr: result.stderr ?? "" };
  }

  const operatorEnv = {
    ANCHORAGE_DATA_DIR: dataDir,
    ANCHORAGE_BOOTSTRAP: "none",
    ANCHORAGE_HSM_TOKEN_LABEL: ONLINE_TOKEN,
    ANCHORAGE_HSM_PIN: ONLINE_PIN,
  };

  beforeAll(async () => {
    hsm = await createSoftHsm([
      { label: ROOT_TOKEN, pin: ROOT_PIN },
      { label: ONLINE_TOKEN, pin: ONLINE_PIN },
    ]);
    mkdirSync(dataDir);
  }, 60_000);

  afterAll(async () => {
    await service?.cleanup();
    await hsm?.cleanup();
    scratch.remove();
  }, 40_000);

  it("prepares root, intermediate, root CRL and the first API key, then serves on them", async () => {
    const pinFile = scratch.file("root.pin", `${ROOT_PIN}\n`);
    const root = join(scratch.dir, "root.pem");
    const csr = join(scratch.dir, "intermediate.csr");
    const intermediate = join(scratch.dir, "intermediate.pem");
    const crl = join(scratch.dir, "root.crl");
    const rootToken = ["--token-label", ROOT_TOKEN, "--pin-file", pinFile];

    const steps = [
      cli("ceremony", ["init-root", "--out", root, ...rootToken]),
      cli("admin", ["intermediate-csr", "--out", csr, "--key-label", "online-int-1"], operatorEnv),
      cli("ceremony", ["sign-intermediate", "--root-cert", root, "--csr", csr, "--out", intermediate, "--trust-domain", "anchorage.test", ...rootToken]),
      cli("ceremony", ["root-crl", "--root-cert", root, "--out", crl, "--crl-number", "3", ...rootToken]),
      cli("admin", ["import", "--root", root, "--intermediate", intermediate, "--key-label", "online-int-1", "--root-crl", crl], operatorEnv),
    ];
    for (const step of steps) expect(step.status, `${step.stdout}${step.stderr}`).toBe(0);

    const created = cli("admin", ["create-api-key", "--name", "ops"], operatorEnv);
    expect(created.status, created.stderr).toBe(0);
    const adminKey = /^(anc_admin_\S+)$/m.exec(created.stdout)?.[1];
    expect(adminKey).toBeDefined();

    // The harness reads these two files; the operator would keep them wherever suits them.
    writeFileSync(join(dataDir, "root.pem"), readFileSync(root));
    writeFileSync(join(dataDir, "admin-api-key"), `${adminKey}\n`);
    service = await startService({
      dataDir,
      env: { ...operatorEnv, SOFTHSM2_CONF: hsm.confPath, ANCHORAGE_PKCS11_MODULE: hsm.modulePath },
    });
    expect(service.logs()).not.toContain("development root and intermediate created");
    expect(service.logs()).not.toContain(ONLINE_PIN);

    const token = await service.gql(
      `mutation { createEnrollmentToken(input: { spiffeId: "spiffe://anchorage.test/prod/web" }) { token } }`,
      undefined,
      { bearer: adminKey as string },
    );
    const leaf = makeCsr({ spiffeId: "spiffe://anchorage.test/prod/web" });
    const issued = await service.gql(
      `mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { certificatePem chainPem } }`,
      { input: { csr: leaf.csrPem, token: token.body.data.createEnrollmentToken.token } },
    );
    const { certificatePem, chainPem } = issued.body.data.issueCertificate;
    const verified = openssl(
      ["verify", "-x509_strict", "-CAfile", root, "-untrusted", scratch.file("chain.pem", chainPem), scratch.file("leaf.pem", certificatePem)],
    );
    expect(verified.stdout).toContain("OK");

    // The imported root CRL is served as it came from the ceremony.
    const authorities = await service.gql("{ authorities { id kind } }");
    const rootId = authorities.body.data.authorities.find((authority: { kind: string }) => authority.kind === "ROOT").id;
    const served = await service.http(`/crl/${rootId}.crl`);
    expect(served.status).toBe(200);
    expect(Buffer.compare(served.body, readFileSync(crl))).toBe(0);
  }, 180_000);

  it("refuses to import an intermediate under a key label that is not its key", () => {
    const refused = cli(
      "admin",
      ["import", "--root", join(scratch.dir, "root.pem"), "--intermediate", join(scratch.dir, "intermediate.pem"), "--key-label", "no-such-key"],
      operatorEnv,
    );
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toMatch(/^admin: /m);
    expect(refused.stderr).not.toContain(ONLINE_PIN);
  }, 60_000);
});
