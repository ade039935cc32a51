import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { initialiseToken } from "../../src/signer/pkcs11/token-initialisation.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The PKCS#11 module benchmarks load: SoftHSM2 from Debian unless ANCHORAGE_PKCS11_MODULE says otherwise. */
export const BENCH_PKCS11_MODULE = process.env.ANCHORAGE_PKCS11_MODULE ?? "/usr/lib/softhsm/libsofthsm2.so";

/**
 * Initialises a throw-away SoftHSM2 token "bench" (user PIN 1234) under `dir` with the project's own
 * template, through PKCS#11, and points this process's SoftHSM at it. The caller removes `dir`.
 */
export function initScratchToken(dir: string): { readonly tokenLabel: string; readonly pin: string } {
  mkdirSync(join(dir, "tokens"));
  const conf = join(dir, "softhsm2.conf");
  writeFileSync(conf, readFileSync(join(ROOT, "hsm", "softhsm2.conf.template"), "utf8").replaceAll("@TOKEN_DIR@", join(dir, "tokens")));
  process.env.SOFTHSM2_CONF = conf;
  initialiseToken({ modulePath: BENCH_PKCS11_MODULE, label: "bench", userPin: "1234", soPin: "5678" });
  return { tokenLabel: "bench", pin: "1234" };
}
