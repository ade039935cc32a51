/**
 * The fixed cryptographic cost of one workload certificate on this machine, measured piece by piece, and
 * the issuance rate it alone allows: whatever else the service does, it cannot issue faster than this.
 *
 *   npx tsx scripts/bench-floor.ts [--seconds 2]
 *
 * Every certificate costs one import of the CSR's public key (node:crypto, JWK), two ECDSA P-256
 * verifications (the CSR's proof of possession, and the check of the HSM's signature before the certificate
 * leaves) and two HSM signatures (the certificate, and its OCSP response signed ahead of time). The HSM part
 * runs through the service's own `Pkcs11KeyStore` on a fresh SoftHSM2 token (scripts/ensure-system-deps.sh),
 * in a temporary folder removed at the end.
 *
 * Two figures are lower bounds that no code of ours can beat: the same key signing through pkcs11js called
 * synchronously on one session (the least any caller can do: C_SignInit, C_Sign), and node:crypto's own
 * verification and key import. Their sum, and then that plus the durable records every certificate needs
 * (scripts/lib/records-floor.ts), is compared with the budget the issuance targets leave per certificate
 * on this machine's cores.
 */
import "reflect-metadata";
import { createHash, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, webcrypto, type KeyObject } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import pkcs11js from "pkcs11js";
import { Pkcs11KeyStore } from "../src/signer/pkcs11/pkcs11-key-store.js";
import { opensslEcdsaP256Speed } from "./lib/calibration.js";
import { durableRecordsCost } from "./lib/records-floor.js";
import { BENCH_PKCS11_MODULE, initScratchToken } from "./lib/scratch-token.js";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "2" } } });
const seconds = Number(values.seconds);
/** About the size of a workload certificate's TBS. */
const TBS = randomBytes(600);

/** Runs `operation` one call after another for the configured time; microseconds per call. */
async function perCall(operation: () => unknown): Promise<number> {
  const warmUpUntil = performance.now() + 200;
  while (performance.now() < warmUpUntil) await operation();
  let calls = 0;
  const started = performance.now();
  const until = started + seconds * 1000;
  while (performance.now() < until) {
    await operation();
    calls++;
  }
  return ((performance.now() - started) * 1000) / calls;
}

/**
 * Keeps `inFlight` calls of `operation` running for the configured time: completed calls per second, and
 * the CPU time of the whole process (every thread: the event loop, libuv's pool, the module's) per call.
 */
async function throughput(inFlight: number, operation: () => Promise<unknown>): Promise<{ perSecond: number; cpuMicros: number }> {
  let completed = 0;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const until = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < until) {
        await operation();
        completed++;
      }
    }),
  );
  const cpu = process.cpuUsage(cpuBefore);
  return { perSecond: completed / ((performance.now() - started) / 1000), cpuMicros: (cpu.user + cpu.system) / completed };
}

function verifyOnThreadPool(key: KeyObject, signature: Buffer): Promise<boolean> {
  return new Promise((resolve, reject) => verify("sha256", TBS, key, signature, (error, ok) => (error ? reject(error) : resolve(ok))));
}

/**
 * Microseconds per signature when nothing but the module works: one logged-in session, the key found once,
 * C_SignInit and C_Sign called back to back on this thread (SoftHSM 2.6 has no CKM_ECDSA_SHA256, so the
 * digest is computed here, as the service does).
 */
function rawSoftHsmSignature(tokenLabel: string, pin: string, keyLabel: string): number {
  const module = new pkcs11js.PKCS11();
  module.load(BENCH_PKCS11_MODULE);
  module.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  try {
    const slot = module.C_GetSlotList(true).find((candidate) => module.C_GetTokenInfo(candidate).label.trim() === tokenLabel);
    if (slot === undefined) throw new Error(`no token "${tokenLabel}"`);
    const session = module.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    module.C_Login(session, pkcs11js.CKU_USER, pin);
    module.C_FindObjectsInit(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_LABEL, value: keyLabel },
    ]);
    const [key] = module.C_FindObjects(session, 1);
    module.C_FindObjectsFinal(session);
    if (key === undefined) throw new Error(`no private key "${keyLabel}"`);
    const signature = Buffer.alloc(64);
    const once = (): void => {
      module.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, key);
      module.C_Sign(session, createHash("sha256").update(TBS).digest(), signature);
    };
    for (let i = 0; i < 500; i++) once();
    let calls = 0;
    const started = performance.now();
    while (performance.now() - started < seconds * 1000) {
      once();
      calls++;
    }
    return ((performance.now() - started) * 1000) / calls;
  } finally {
    module.C_Finalize();
  }
}

const format = (value: number, digits = 1): string => value.toLocaleString("en-US", { maximumFractionDigits: digits });

async function main(): Promise<void> {
  const cores = cpus().length;
  console.log(`machine: ${cores} cores; openssl speed ecdsap256: ${opensslEcdsaP256Speed()}`);

  const workload = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = workload.publicKey.export({ format: "jwk" });
  const signature = sign("sha256", TBS, workload.privateKey);
  const jwkImportMicros = await perCall(() => createPublicKey({ key: jwk, format: "jwk" }));
  console.log(`CSR key import (P-256 JWK, createPublicKey): ${format(jwkImportMicros)} µs/call`);
  const point = workload.publicKey.export({ format: "der", type: "spki" }).subarray(-65);
  const importMicros = await perCall(() => webcrypto.subtle.importKey("raw", point, { name: "ECDSA", namedCurve: "P-256" }, true, ["verify"]));
  console.log(`CSR key import (P-256 raw point, WebCrypto; what issuance uses): ${format(importMicros)} µs/call`);
  const verifyMicros = await perCall(() => verify("sha256", TBS, workload.publicKey, signature));
  console.log(`ECDSA P-256 verification, calling thread: ${format(verifyMicros)} µs/call`);
  const pooledVerifications = await throughput(64, () => verifyOnThreadPool(workload.publicKey, signature));
  console.log(
    `ECDSA P-256 verification, libuv thread pool, 64 in flight: ${format(pooledVerifications.perSecond, 0)}/s, ` +
      `${format(pooledVerifications.cpuMicros)} µs CPU each`,
  );

  const dir = mkdtempSync(join(tmpdir(), "anchorage-bench-floor-"));
  let store: Pkcs11KeyStore | undefined;
  try {
    const token = initScratchToken(dir);
    store = await Pkcs11KeyStore.open({ modulePath: BENCH_PKCS11_MODULE, ...token, sessionPoolSize: 4 });
    const signer = await store.generateKey("intermediate", { type: "ec", curve: "P-256" });
    const signLatency = await perCall(() => signer.sign(TBS));
    console.log(`SoftHSM2 P-256 signature through Pkcs11KeyStore, one at a time: ${format(signLatency)} µs latency`);
    const pooledSignatures = await throughput(16, () => signer.sign(TBS));
    console.log(
      `SoftHSM2 P-256 signatures through Pkcs11KeyStore, 16 callers, 4 sessions: ${format(pooledSignatures.perSecond, 0)}/s, ` +
        `${format(pooledSignatures.cpuMicros)} µs CPU each`,
    );

    // CPU, not latency: the service keeps many of each in flight.
    const perCertificate = importMicros + 2 * pooledVerifications.cpuMicros + 2 * pooledSignatures.cpuMicros;
    console.log(
      `fixed crypto CPU per certificate ≈ ${format(perCertificate, 0)} µs (1 key import + 2 verifications + 2 HSM signatures: ` +
        `the certificate and its pre-signed OCSP response) → at most ${format((cores * 1e6) / perCertificate, 0)} certificates/s ` +
        `on ${cores} cores before any other work`,
    );
    await store.close();
    store = undefined;

    const rawSignMicros = rawSoftHsmSignature(token.tokenLabel, token.pin, "intermediate");
    console.log(`SoftHSM2 P-256 signature, pkcs11js called synchronously on one session (C_SignInit + C_Sign): ${format(rawSignMicros)} µs/call`);
    const floor = importMicros + 2 * verifyMicros + 2 * rawSignMicros;

    const records = await durableRecordsCost(seconds, 32);
    const recordsMicros = records.ledgerMicros + records.sequencingMicros;
    console.log(
      `durable records per certificate through the service's store (reservation + token use + 2 audit events, completion + ` +
        `DNS-name rows, OCSP response; group commits, synced), 32 in flight: ${format(records.ledgerMicros)} µs CPU; ` +
        `log sequencing of its 3 leaves: ${format(records.sequencingMicros)} µs CPU (${format(records.certificates, 0)} certificates)`,
    );
    for (const target of [1_500, 4_000]) {
      const budget = (cores * 1e6) / target;
      console.log(
        `${format(target, 0)} certificates/s on ${cores} cores leaves ${format(budget, 0)} µs of CPU per certificate for everything ` +
          `(TLS, HTTP, GraphQL, SQLite, audit, log, load generator); the required crypto alone, at the lowest prices above, ` +
          `takes ${format(floor, 0)} µs (${format((100 * floor) / budget, 0)} %), and with the durable records ` +
          `${format(floor + recordsMicros, 0)} µs (${format((100 * (floor + recordsMicros)) / budget, 0)} %)`,
      );
    }
  } finally {
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
