/**
 * A throw-away SoftHSM2 for one test file.
 *
 * SoftHSM reads the file named by SOFTHSM2_CONF once, at C_Initialize, and the module's state is global to
 * the process. So: one test file = one process (vitest `pool: "forks"`) = one SoftHSM config. Call
 * `createSoftHsm` in the file's `beforeAll`, before any key store opens, and `cleanup` in `afterAll` after
 * every key store is closed.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { initialiseToken } from "../../src/signer/pkcs11/token-initialisation.js";

const TEMPLATE = fileURLToPath(new URL("../../hsm/softhsm2.conf.template", import.meta.url));

export interface SoftHsmToken {
  label: string;
  /** User PIN. The SO PIN is random and not kept: tests never need it. */
  pin: string;
}

export interface SoftHsm {
  /** Temporary directory holding the config and the token store. */
  dir: string;
  /** The softhsm2.conf written for this instance; also in `process.env.SOFTHSM2_CONF`. */
  confPath: string;
  /** PKCS#11 module to load. */
  modulePath: string;
  /** Removes the directory and restores SOFTHSM2_CONF. Call after every key store is closed. */
  cleanup(): Promise<void>;
}

/** `ANCHORAGE_PKCS11_MODULE`, or SoftHSM2's library where Debian and Ubuntu install it. */
export function softHsmModulePath(): string {
  return process.env.ANCHORAGE_PKCS11_MODULE ?? "/usr/lib/softhsm/libsofthsm2.so";
}

/**
 * Why SoftHSM cannot be used here, or undefined when it can. In CI (`CI` or `REQUIRE_SOFTHSM` set) a missing
 * SoftHSM throws instead, so that integration tests fail rather than silently skip.
 */
export function softHsmUnavailableReason(): string | undefined {
  const missing: string[] = [];
  if (spawnSync("softhsm2-util", ["--version"], { stdio: "ignore" }).error !== undefined) missing.push("softhsm2-util");
  if (!existsSync(softHsmModulePath())) missing.push(`the PKCS#11 module ${softHsmModulePath()}`);
  if (missing.length === 0) return undefined;
  const reason = `SoftHSM2 is not installed (missing ${missing.join(" and ")}; run scripts/ensure-system-deps.sh)`;
  if (process.env.CI || process.env.REQUIRE_SOFTHSM) throw new Error(`${reason}; CI/REQUIRE_SOFTHSM forbids skipping`);
  return reason;
}

/**
 * True when SoftHSM can be used; throws in CI when it cannot. For `describe.skipIf(!softHsmAvailable())`,
 * with `softHsmUnavailableReason()` in the suite name so the skip says why.
 */
export function softHsmAvailable(): boolean {
  return softHsmUnavailableReason() === undefined;
}

/**
 * Writes a fresh softhsm2.conf into a temporary directory, points SOFTHSM2_CONF at it and initialises one
 * token per entry through PKCS#11, as the development bootstrap does (no PIN on any command line).
 */
export async function createSoftHsm(tokens: SoftHsmToken[]): Promise<SoftHsm> {
  const reason = softHsmUnavailableReason();
  if (reason !== undefined) throw new Error(reason);

  const dir = await mkdtemp(join(tmpdir(), "anchorage-softhsm-"));
  const previousConf = process.env.SOFTHSM2_CONF;
  const cleanup = async (): Promise<void> => {
    if (previousConf === undefined) delete process.env.SOFTHSM2_CONF;
    else process.env.SOFTHSM2_CONF = previousConf;
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const tokenDir = join(dir, "tokens");
    await mkdir(tokenDir, { mode: 0o700 });
    const confPath = join(dir, "softhsm2.conf");
    const template = await readFile(TEMPLATE, "utf8");
    await writeFile(confPath, template.replaceAll("@TOKEN_DIR@", tokenDir), { mode: 0o600 });
    process.env.SOFTHSM2_CONF = confPath;

    for (const token of tokens) {
      initialiseToken({ modulePath: softHsmModulePath(), label: token.label, userPin: token.pin, soPin: randomBytes(8).toString("hex") });
    }
    return { dir, confPath, modulePath: softHsmModulePath(), cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
