/**
 * Offline root ceremony. Run on the ceremony machine with the root token attached:
 *
 *   npm run ceremony -- init-root         --out root.pem [--curve P-384] [--days 3650] [--cn NAME] [--org NAME]
 *   npm run ceremony -- sign-intermediate --root-cert root.pem --csr intermediate.csr --out intermediate.pem
 *                                         [--days 365] [--trust-domain TD] [--permit-dns DOMAIN]... [--crl-url URL]
 *   npm run ceremony -- root-crl          --root-cert root.pem --out root.crl --crl-number N [--days 365]
 *                                         [--revoke SERIAL[:REASON]]...
 *
 * Token options (all commands): --module PATH (default SoftHSM2's library), --token-label LABEL (default
 * anchorage-root), --key-label LABEL (default anchorage-root), and the PIN from --pin-file FILE or the
 * ANCHORAGE_ROOT_PIN variable — never from the command line, where other users could read it.
 */
import "reflect-metadata";
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { createCrl, createRootCertificate, signIntermediate } from "../ca/ceremony.js";
import type { CrlEntry } from "../ca/x509/crl.js";
import { DEFAULT_SOFTHSM_MODULE } from "../config/config.js";
import { AnchorageError } from "../common/errors.js";
import { decodePem, encodePem } from "../common/pem.js";
import { Pkcs11KeyStore } from "../signer/pkcs11/pkcs11-key-store.js";
import type { CurveName, KeySpec } from "../signer/signer.js";

const DAY_MS = 86_400_000;
/** CA certificates start an hour in the past so relying parties with slow clocks accept them at once. */
const CA_BACKDATE_MS = 3_600_000;

/** RFC 5280 CRLReason codes we let operators record (certificateHold is deliberately not offered). */
const REASONS: Record<string, number> = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  privilegeWithdrawn: 9,
};

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    module: { type: "string", default: process.env.ANCHORAGE_PKCS11_MODULE ?? DEFAULT_SOFTHSM_MODULE },
    "token-label": { type: "string", default: "anchorage-root" },
    "key-label": { type: "string", default: "anchorage-root" },
    "pin-file": { type: "string" },
    out: { type: "string" },
    curve: { type: "string", default: "P-384" },
    days: { type: "string" },
    cn: { type: "string" },
    org: { type: "string", default: "Anchorage" },
    "root-cert": { type: "string" },
    csr: { type: "string" },
    "trust-domain": { type: "string" },
    "permit-dns": { type: "string", multiple: true },
    "crl-url": { type: "string" },
    "crl-number": { type: "string" },
    revoke: { type: "string", multiple: true },
  },
});

class UsageError extends Error {}

function required(name: keyof typeof values): string {
  const value = values[name];
  if (typeof value !== "string" || value === "") throw new UsageError(`--${name} is required`);
  return value;
}

function days(fallback: number): number {
  const text = values.days;
  if (text === undefined) return fallback;
  const parsed = Number(text);
  if (!Number.isInteger(parsed) || parsed <= 0) throw new UsageError("--days must be a positive integer");
  return parsed;
}

function readPin(): string {
  const file = values["pin-file"];
  const pin = file ? readFileSync(file, "utf8").trim() : process.env.ANCHORAGE_ROOT_PIN;
  if (!pin) throw new UsageError("the root token PIN is needed: --pin-file FILE or ANCHORAGE_ROOT_PIN");
  return pin;
}

/** Reads a certificate or CSR given as PEM or DER. */
function readDer(path: string, label: string): Buffer {
  const bytes = readFileSync(path);
  const text = bytes.toString("latin1");
  return text.includes("-----BEGIN") ? decodePem(text.trim() + "\n", label) : bytes;
}

async function openRootToken(): Promise<Pkcs11KeyStore> {
  return Pkcs11KeyStore.open({
    modulePath: values.module as string,
    tokenLabel: values["token-label"] as string,
    pin: readPin(),
    sessionPoolSize: 1,
  });
}

async function initRoot(): Promise<void> {
  const out = required("out");
  const curve = values.curve as string;
  if (curve !== "P-256" && curve !== "P-384") throw new UsageError("--curve must be P-256 or P-384");
  const spec: KeySpec = { type: "ec", curve: curve as CurveName };
  const store = await openRootToken();
  try {
    const signer = await store.generateKey(values["key-label"] as string, spec);
    const der = await createRootCertificate({
      signer,
      subject: { commonName: values.cn ?? "Anchorage Root CA", organization: values.org as string },
      notBefore: new Date(Date.now() - CA_BACKDATE_MS),
      validityDays: days(3650),
    });
    writeFileSync(out, encodePem(der, "CERTIFICATE"));
    console.log(`root certificate written to ${out}`);
  } finally {
    await store.close();
  }
}

async function signIntermediateCommand(): Promise<void> {
  const out = required("out");
  const rootCertificateDer = readDer(required("root-cert"), "CERTIFICATE");
  const csrDer = readDer(required("csr"), "CERTIFICATE REQUEST");
  const store = await openRootToken();
  try {
    const rootSigner = await store.openKey(values["key-label"] as string);
    const der = await signIntermediate({
      rootSigner,
      rootCertificateDer,
      csrDer,
      notBefore: new Date(Date.now() - CA_BACKDATE_MS),
      validityDays: days(365),
      ...(values["trust-domain"] ? { trustDomain: values["trust-domain"] } : {}),
      ...(values["permit-dns"] ? { permittedDnsDomains: values["permit-dns"] } : {}),
      ...(values["crl-url"] ? { crlDistributionPointUrl: values["crl-url"] } : {}),
    });
    writeFileSync(out, encodePem(der, "CERTIFICATE"));
    console.log(`intermediate certificate written to ${out}`);
  } finally {
    await store.close();
  }
}

function parseRevocation(text: string, now: Date): CrlEntry {
  const [serial = "", reasonName = "unspecified"] = text.split(":");
  if (!/^[0-9a-fA-F]{1,40}$/.test(serial)) throw new UsageError(`--revoke ${text}: serial must be hex`);
  const reason = REASONS[reasonName];
  if (reason === undefined) {
    throw new UsageError(`--revoke ${text}: reason must be one of ${Object.keys(REASONS).join(", ")}`);
  }
  const hex = serial.length % 2 === 1 ? `0${serial}` : serial;
  return { serialNumber: Buffer.from(hex, "hex"), revocationDate: now, ...(reason ? { reason } : {}) };
}

async function rootCrl(): Promise<void> {
  const out = required("out");
  const crlNumberText = required("crl-number");
  if (!/^\d{1,40}$/.test(crlNumberText)) throw new UsageError("--crl-number must be a non-negative integer");
  const issuerCertificateDer = readDer(required("root-cert"), "CERTIFICATE");
  const now = new Date();
  const entries = (values.revoke ?? []).map((text) => parseRevocation(text, now));
  const store = await openRootToken();
  try {
    const signer = await store.openKey(values["key-label"] as string);
    const der = await createCrl({
      signer,
      issuerCertificateDer,
      crlNumber: BigInt(crlNumberText),
      thisUpdate: now,
      nextUpdate: new Date(now.getTime() + days(365) * DAY_MS),
      entries,
    });
    writeFileSync(out, der);
    console.log(`root CRL number ${crlNumberText} written to ${out}`);
  } finally {
    await store.close();
  }
}

const COMMANDS: Record<string, () => Promise<void>> = {
  "init-root": initRoot,
  "sign-intermediate": signIntermediateCommand,
  "root-crl": rootCrl,
};

async function main(): Promise<void> {
  const command = COMMANDS[positionals[0] ?? ""];
  if (!command) throw new UsageError(`usage: ceremony <${Object.keys(COMMANDS).join("|")}> [options]`);
  await command();
}

main().catch((error: unknown) => {
  const message = error instanceof UsageError || error instanceof AnchorageError ? error.message : String(error);
  console.error(`ceremony: ${message}`);
  process.exitCode = error instanceof UsageError ? 2 : 1;
});
