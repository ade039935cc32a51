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
 */
import "reflect-metadata";
import { createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Pkcs11KeyStore } from "../src/signer/pkcs11/pkcs11-key-store.js";
import { opensslEcdsaP256Speed } from "./lib/calibration.js";
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

const format = (value: number, digits = 1): string => value.toLocaleString("en-US", { maximumFractionDigits: digits });

async function main(): Promise<void> {
  const cores = cpus().length;
  console.log(`machine: ${cores} cores; openssl speed ecdsap256: ${opensslEcdsaP256Speed()}`);

  const workload = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = workload.publicKey.export({ format: "jwk" });
  const signature = sign("sha256", TBS, workload.privateKey);
  const importMicros = await perCall(() => createPublicKey({ key: jwk, format: "jwk" }));
  console.log(`CSR key import (P-256 JWK, createPublicKey): ${format(importMicros)} µs/call`);
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
  } finally {
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
