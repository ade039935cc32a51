/**
 * The embedded development default: everything under the data folder, created on first start and reused
 * afterwards. SoftHSM tokens (root and online, each with its own PINs, initialised through PKCS#11), the
 * root made by the ceremony CLI in a child process (the service process never opens the root token), an
 * intermediate whose key is generated in the online token, and a first admin API key.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { X509Crl } from "@peculiar/x509";
import { authorityRecordOf, type AuthorityService } from "../ca/authority-service.js";
import { createIntermediateCsr } from "../ca/ceremony.js";
import type { Clock } from "../common/clock.js";
import { ConfigError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import { decodePem, encodePem } from "../common/pem.js";
import type { Config } from "../config/config.js";
import type { ApiKeyService } from "../policy/api-keys.js";
import type { CrlRepository } from "../revocation/ports.js";
import { initialiseToken } from "../signer/pkcs11/token-initialisation.js";
import type { KeyStore } from "../signer/signer.js";

const PROJECT_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CEREMONY_CLI = fileURLToPath(new URL("./ceremony.ts", import.meta.url));

export const ROOT_TOKEN_LABEL = "anchorage-root";
export const ROOT_KEY_LABEL = "anchorage-root";

export interface DevelopmentHsm {
  readonly onlinePin: string;
  readonly rootPinFile: string;
  readonly softhsmConf: string;
}

function secretFile(path: string): string {
  if (!existsSync(path)) writeFileSync(path, `${randomBytes(16).toString("hex")}\n`, { mode: 0o600 });
  return readFileSync(path, "utf8").trim();
}

function run(command: string, args: string[], what: string): string {
  const result = spawnSync(command, args, { encoding: "utf8", env: process.env });
  if (result.status !== 0) {
    throw new Error(`${what} failed: ${(result.stderr || result.stdout || String(result.error)).trim()}`);
  }
  return result.stdout;
}

/**
 * Creates the data folder, its SoftHSM configuration and the two tokens, once. Points SoftHSM at that
 * configuration for this process and its children (SoftHSM reads SOFTHSM2_CONF when the module starts).
 */
export function prepareDevelopmentHsm(config: Config, logger: Logger): DevelopmentHsm {
  const { dataDir } = config;
  const secrets = join(dataDir, "secrets");
  const tokens = join(dataDir, "tokens");
  mkdirSync(secrets, { recursive: true, mode: 0o700 });
  mkdirSync(tokens, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
  const softhsmConf = join(dataDir, "softhsm2.conf");
  if (!existsSync(softhsmConf)) {
    const template = readFileSync(join(PROJECT_ROOT, "hsm", "softhsm2.conf.template"), "utf8");
    writeFileSync(softhsmConf, template.replaceAll("@TOKEN_DIR@", tokens), { mode: 0o600 });
  }
  process.env.SOFTHSM2_CONF = softhsmConf;
  // Through PKCS#11 in this process, never a tool's command line, where every local user could read the PINs.
  const initialise = (label: string, userPin: string, soPin: string): void => {
    if (initialiseToken({ modulePath: config.hsm.modulePath, label, userPin, soPin })) logger.info({ tokenLabel: label }, "token initialised");
  };
  const onlinePin = secretFile(join(secrets, "online-token.pin"));
  initialise(config.hsm.tokenLabel, onlinePin, secretFile(join(secrets, "online-token.so-pin")));
  // The root token is made once, before the first ceremony. Afterwards the service never touches its PIN
  // (an operator may well have moved the file offline), so the running service holds no root secret.
  const rootPinFile = join(secrets, "root-token.pin");
  if (!existsSync(join(dataDir, "root.pem"))) {
    initialise(ROOT_TOKEN_LABEL, secretFile(rootPinFile), secretFile(join(secrets, "root-token.so-pin")));
  }
  logger.info({ dataDir, softhsmConf }, "development HSM ready");
  return { onlinePin, rootPinFile, softhsmConf };
}

/**
 * The development HSM settings for a worker process, after the primary prepared the data folder: points
 * SoftHSM at the data folder's configuration and reads the online PIN. Creates nothing.
 */
export function developmentHsmSettings(config: Config): { onlinePin: string } {
  const softhsmConf = join(config.dataDir, "softhsm2.conf");
  const pinFile = join(config.dataDir, "secrets", "online-token.pin");
  if (!existsSync(softhsmConf) || !existsSync(pinFile)) {
    throw new ConfigError(`the development data folder ${config.dataDir} is not prepared`);
  }
  process.env.SOFTHSM2_CONF = softhsmConf;
  return { onlinePin: readFileSync(pinFile, "utf8").trim() };
}

function ceremony(args: string[], hsm: DevelopmentHsm, config: Config): void {
  const tsxLoader = import.meta.resolve("tsx");
  run(
    process.execPath,
    ["--import", tsxLoader, CEREMONY_CLI, ...args, "--module", config.hsm.modulePath, "--token-label", ROOT_TOKEN_LABEL, "--key-label", ROOT_KEY_LABEL, "--pin-file", hsm.rootPinFile],
    `ceremony ${args[0]}`,
  );
}

/**
 * On first start: the root ceremony (init-root, sign-intermediate, root-crl) through the ceremony CLI,
 * with the intermediate key generated in the online token; the results are registered as authorities.
 * Later starts find them and do nothing.
 */
export async function ensureDevelopmentAuthorities(deps: {
  readonly config: Config;
  readonly hsm: DevelopmentHsm;
  readonly keyStore: KeyStore;
  readonly authorities: AuthorityService;
  readonly crls: CrlRepository;
  readonly clock: Clock;
  readonly logger: Logger;
}): Promise<void> {
  const { config, hsm, keyStore, authorities, crls, clock, logger } = deps;
  if ((await authorities.list()).length > 0) return;
  if (!existsSync(hsm.rootPinFile)) {
    throw new ConfigError(`no authorities are registered and the root token PIN (${hsm.rootPinFile}) is gone: start from an empty data folder`);
  }
  const ceremonyDir = join(config.dataDir, "ceremony");
  mkdirSync(ceremonyDir, { recursive: true, mode: 0o700 });
  const rootPem = join(config.dataDir, "root.pem");
  if (!existsSync(rootPem)) ceremony(["init-root", "--out", rootPem, "--cn", "Anchorage Development Root CA"], hsm, config);

  const now = clock.now();
  const stamp = now.toISOString().slice(0, 10).replaceAll("-", "");
  const keyLabel = `anchorage-intermediate-${stamp}-${randomBytes(2).toString("hex")}`;
  const signer = await keyStore.generateKey(keyLabel, { type: "ec", curve: "P-256" });
  const csrDer = await createIntermediateCsr({
    signer,
    subject: { commonName: `Anchorage Development Intermediate CA ${stamp}`, organization: "Anchorage" },
  });
  const csrPath = join(ceremonyDir, `${keyLabel}.csr`);
  const certificatePath = join(ceremonyDir, `${keyLabel}.pem`);
  const crlPath = join(ceremonyDir, "root-crl-1.crl");
  writeFileSync(csrPath, encodePem(csrDer, "CERTIFICATE REQUEST"));
  ceremony(["sign-intermediate", "--root-cert", rootPem, "--csr", csrPath, "--out", certificatePath, "--days", "365", "--trust-domain", config.trustDomain], hsm, config);
  ceremony(["root-crl", "--root-cert", rootPem, "--out", crlPath, "--crl-number", "1", "--days", "365"], hsm, config);

  const root = authorityRecordOf(decodePem(readFileSync(rootPem, "utf8"), "CERTIFICATE"), {
    kind: "root",
    status: "active",
    keyLabel: null,
    parentId: null,
    createdAt: now,
  });
  const intermediate = authorityRecordOf(decodePem(readFileSync(certificatePath, "utf8"), "CERTIFICATE"), {
    kind: "intermediate",
    status: "active",
    keyLabel,
    parentId: root.id,
    createdAt: now,
  });
  await authorities.register(root);
  await authorities.register(intermediate);
  const crlDer = readFileSync(crlPath);
  const crl = new X509Crl(new Uint8Array(crlDer));
  await crls.save({
    authorityId: root.id,
    crlNumber: 1n,
    der: crlDer,
    thisUpdate: crl.thisUpdate,
    nextUpdate: crl.nextUpdate ?? new Date(crl.thisUpdate.getTime() + 365 * 86_400_000),
  });
  logger.info({ rootId: root.id, intermediateId: intermediate.id, keyLabel, rootPem }, "development root and intermediate created");
}

/** The first admin API key, written once to `<data>/admin-api-key` (mode 0600); the database keeps its hash. */
export async function ensureAdminKey(apiKeys: ApiKeyService, dataDir: string, logger: Logger): Promise<void> {
  if ((await apiKeys.count()) > 0) return;
  const created = await apiKeys.create("bootstrap", { name: "bootstrap admin", role: "ADMIN" });
  const path = join(dataDir, "admin-api-key");
  writeFileSync(path, `${created.key}\n`, { mode: 0o600 });
  logger.info({ path, keyId: created.id }, "admin API key written (shown once; only its hash is stored)");
}
