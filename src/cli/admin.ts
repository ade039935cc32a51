/**
 * Operator tasks on the online side of the ceremony, run next to the service (same data folder and token):
 *
 *   npm run admin -- intermediate-csr --out intermediate.csr [--curve P-256] [--cn NAME] [--key-label LABEL]
 *       generates the intermediate key inside the online token and writes its CSR for the root ceremony
 *   npm run admin -- import --root root.pem --intermediate intermediate.pem --key-label LABEL [--root-crl root.crl]
 *       registers the root and the signed intermediate (active) and stores the root CRL
 *   npm run admin -- publish-intermediate --intermediate new.pem --key-label LABEL
 *       rotation, first step: registers a new intermediate signed by the registered root as published (in the
 *       trust bundle, not issuing); activate it with the activateAuthority mutation once consumers have it
 *   npm run admin -- import-root-crl --root-crl root.crl
 *       replaces the served root CRL with a newer one
 *   npm run admin -- create-api-key --name NAME [--role ADMIN|AUDITOR] [--expires-in-seconds N]
 *       creates an API key (the first admin key of a production install) and prints it once
 *
 * Configuration is the service's (ANCHORAGE_* variables, ANCHORAGE_CONFIG); the online token PIN comes from
 * ANCHORAGE_HSM_PIN (or the development data folder).
 */
import "reflect-metadata";
import { randomBytes } from "node:crypto";
import { userInfo } from "node:os";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { X509Crl } from "@peculiar/x509";
import { AuditLog } from "../audit/audit-log.js";
import { authorityRecordOf, AuthorityService } from "../ca/authority-service.js";
import { createIntermediateCsr } from "../ca/ceremony.js";
import { certificateFields } from "../ca/x509/ca-certificates.js";
import { readTlv } from "../ca/x509/der.js";
import { AnchorageError, ConfigError } from "../common/errors.js";
import { decodePem, encodePem } from "../common/pem.js";
import { systemClock } from "../common/clock.js";
import { silentLogger } from "../common/logger.js";
import { ApiKeyService } from "../policy/api-keys.js";
import { loadConfig, type Config } from "../config/config.js";
import { Pkcs11KeyStore } from "../signer/pkcs11/pkcs11-key-store.js";
import type { CurveName } from "../signer/signer.js";
import { openStore, type Store } from "../store/store.js";
import type { StoredCrl } from "../revocation/ports.js";
import { developmentHsmSettings } from "./development-bootstrap.js";

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    out: { type: "string" },
    curve: { type: "string", default: "P-256" },
    cn: { type: "string" },
    "key-label": { type: "string" },
    root: { type: "string" },
    intermediate: { type: "string" },
    "root-crl": { type: "string" },
    name: { type: "string" },
    role: { type: "string", default: "ADMIN" },
    "expires-in-seconds": { type: "string" },
  },
});

class UsageError extends Error {}

function required(name: "out" | "key-label" | "root" | "intermediate" | "root-crl"): string {
  const value = values[name];
  if (!value) throw new UsageError(`--${name} is required`);
  return value;
}

function readCertificate(path: string): Buffer {
  const text = readFileSync(path, "latin1");
  return text.includes("-----BEGIN") ? decodePem(text.trim() + "\n", "CERTIFICATE") : readFileSync(path);
}

function onlinePin(config: Config): string {
  const pin = config.bootstrap === "development" ? developmentHsmSettings(config).onlinePin : config.hsm.pin;
  if (!pin) throw new ConfigError("the online token PIN is needed: ANCHORAGE_HSM_PIN");
  return pin;
}


/** The store the service uses: PostgreSQL when ANCHORAGE_DATABASE_URL is set, else the SQLite file in the data folder. */
function openConfiguredStore(config: Config): Promise<Store> {
  return openStore({ dataDir: config.dataDir, ...config.database });
}

async function intermediateCsr(config: Config): Promise<void> {
  const out = required("out");
  const curve = values.curve as string;
  if (curve !== "P-256" && curve !== "P-384") throw new UsageError("--curve must be P-256 or P-384");
  const stamp = new Date().toISOString().slice(0, 10).replaceAll("-", "");
  const keyLabel = values["key-label"] ?? `anchorage-intermediate-${stamp}-${randomBytes(2).toString("hex")}`;
  const store = await Pkcs11KeyStore.open({ modulePath: config.hsm.modulePath, tokenLabel: config.hsm.tokenLabel, pin: onlinePin(config), sessionPoolSize: 1 });
  try {
    const signer = await store.generateKey(keyLabel, { type: "ec", curve: curve as CurveName });
    const csr = await createIntermediateCsr({ signer, subject: { commonName: values.cn ?? `Anchorage Intermediate CA ${stamp}`, organization: "Anchorage" } });
    writeFileSync(out, encodePem(csr, "CERTIFICATE REQUEST"));
    console.log(`intermediate key "${keyLabel}" generated on token "${config.hsm.tokenLabel}"; CSR written to ${out}`);
  } finally {
    await store.close();
  }
}

/** The root's CRL read from `path`, checked to be the root's and numbered, ready to store. */
function rootCrlOf(root: { id: string; certificateDer: Buffer }, path: string): StoredCrl {
  const der = readFileSync(path);
  const crl = new X509Crl(new Uint8Array(der));
  const issuer = certificateFields(root.certificateDer);
  if (!Buffer.from(crl.issuerName.toArrayBuffer()).equals(issuer.subjectNameDer)) {
    throw new UsageError("the CRL was not issued by this root");
  }
  const numberExtension = crl.extensions.find((extension) => extension.type === "2.5.29.20");
  if (!numberExtension) throw new UsageError("the CRL has no CRL number");
  const value = new Uint8Array(numberExtension.value);
  const element = readTlv(value, 0);
  const crlNumber = BigInt(`0x${Buffer.from(value.subarray(element.contentStart, element.end)).toString("hex") || "0"}`);
  return { authorityId: root.id, crlNumber, der, thisUpdate: crl.thisUpdate, nextUpdate: crl.nextUpdate ?? crl.thisUpdate };
}

async function importAuthorities(config: Config): Promise<void> {
  const keyLabel = required("key-label");
  const now = new Date();
  const root = authorityRecordOf(readCertificate(required("root")), { kind: "root", status: "active", keyLabel: null, parentId: null, createdAt: now });
  const intermediate = authorityRecordOf(readCertificate(required("intermediate")), { kind: "intermediate", status: "active", keyLabel, parentId: root.id, createdAt: now });
  const intermediateFields = certificateFields(intermediate.certificateDer);
  if (!intermediateFields.issuerNameDer.equals(certificateFields(root.certificateDer).subjectNameDer)) {
    throw new UsageError("the intermediate was not issued by this root");
  }
  await checkKeyMatches(config, keyLabel, intermediate.certificateDer);
  const store = await openConfiguredStore(config);
  try {
    // Read and checked before anything is written, so that a bad CRL file leaves the hierarchy as it was.
    const rootCrl = values["root-crl"] ? rootCrlOf(root, values["root-crl"]) : undefined;
    await store.authorities.importHierarchy(root, intermediate);
    if (rootCrl) await store.crls.save(rootCrl);
    console.log(`registered root ${root.id} and active intermediate ${intermediate.id}; restart the service to issue with it`);
  } finally {
    await store.close();
  }
}

async function publishIntermediate(config: Config): Promise<void> {
  const keyLabel = required("key-label");
  const certificateDer = readCertificate(required("intermediate"));
  const store = await openConfiguredStore(config);
  try {
    const authorities = new AuthorityService(store.authorities, config.trustDomain);
    const issuerName = certificateFields(certificateDer).issuerNameDer;
    const root = (await authorities.list()).find((authority) => authority.kind === "root" && authority.status !== "retired" && certificateFields(authority.certificateDer).subjectNameDer.equals(issuerName));
    if (!root) throw new UsageError("the intermediate was not issued by a registered root");
    const intermediate = authorityRecordOf(certificateDer, { kind: "intermediate", status: "published", keyLabel, parentId: root.id, createdAt: new Date() });
    if (await authorities.get(intermediate.id)) throw new UsageError(`intermediate ${intermediate.id} is already registered`);
    await checkKeyMatches(config, keyLabel, certificateDer);
    await store.authorities.insert(intermediate, {
      type: "authority.published",
      actor: `operator:${userInfo().username}`,
      outcome: "success",
      subject: intermediate.id,
      details: { keyLabel, parentId: root.id, notAfter: intermediate.notAfter.toISOString() },
    });
    console.log(`published intermediate ${intermediate.id} (in the trust bundle, not issuing); activate it with activateAuthority`);
  } finally {
    await store.close();
  }
}

/** The key must be on the online token and be the certificate's, or the service could not issue with it. */
async function checkKeyMatches(config: Config, keyLabel: string, certificateDer: Buffer): Promise<void> {
  const store = await Pkcs11KeyStore.open({ modulePath: config.hsm.modulePath, tokenLabel: config.hsm.tokenLabel, pin: onlinePin(config), sessionPoolSize: 1 });
  try {
    const signer = await store.openKey(keyLabel);
    if (!signer.publicKeySpki.equals(certificateFields(certificateDer).subjectPublicKeyInfo)) {
      throw new UsageError(`the key "${keyLabel}" is not the intermediate certificate's key`);
    }
  } finally {
    await store.close();
  }
}

async function importRootCrl(config: Config): Promise<void> {
  const path = required("root-crl");
  const store = await openConfiguredStore(config);
  try {
    const authorities = new AuthorityService(store.authorities, config.trustDomain);
    const crl = new X509Crl(new Uint8Array(readFileSync(path)));
    const root = (await authorities.list()).find((authority) => authority.kind === "root" && Buffer.from(crl.issuerName.toArrayBuffer()).equals(certificateFields(authority.certificateDer).subjectNameDer));
    if (!root) throw new UsageError("no registered root issued this CRL");
    await store.crls.save(rootCrlOf(root, path));
    console.log(`root CRL for ${root.id} stored`);
  } finally {
    await store.close();
  }
}

async function createApiKey(config: Config): Promise<void> {
  const name = values.name;
  if (!name) throw new UsageError("--name is required");
  const role = values.role;
  if (role !== "ADMIN" && role !== "AUDITOR") throw new UsageError("--role must be ADMIN or AUDITOR");
  const lifetime = values["expires-in-seconds"];
  if (lifetime !== undefined && !/^[0-9]+$/.test(lifetime)) throw new UsageError("--expires-in-seconds must be a whole number of seconds");
  const store = await openConfiguredStore(config);
  try {
    const audit = new AuditLog(store.auditEvents, systemClock, silentLogger);
    const created = await new ApiKeyService(store.apiKeys, audit, systemClock).create("bootstrap", {
      name,
      role,
      expiresInSeconds: lifetime === undefined ? null : Number(lifetime),
    });
    const expiry = created.expiresAt ? `, expires ${created.expiresAt.toISOString()}` : "";
    console.log(`API key ${created.id} (${role}${expiry}) created; it is shown once:\n${created.key}`);
  } finally {
    await store.close();
  }
}

const COMMANDS: Record<string, (config: Config) => Promise<void> | void> = {
  "intermediate-csr": intermediateCsr,
  import: importAuthorities,
  "publish-intermediate": publishIntermediate,
  "import-root-crl": importRootCrl,
  "create-api-key": createApiKey,
};

async function main(): Promise<void> {
  const command = COMMANDS[positionals[0] ?? ""];
  if (!command) throw new UsageError(`usage: admin <${Object.keys(COMMANDS).join("|")}> [options]`);
  await command(loadConfig());
}

main().catch((error: unknown) => {
  const known = error instanceof UsageError || error instanceof AnchorageError || error instanceof ConfigError || error instanceof RangeError;
  console.error(`admin: ${known ? (error as Error).message : String(error)}`);
  process.exitCode = error instanceof UsageError ? 2 : 1;
});
