/**
 * Micro benchmark of CSR parsing and checking, the first step of every issuance:
 *
 *   npx tsx scripts/bench-csr.ts [seconds] [--breakdown]
 *
 * Makes one P-256 CSR (SPIFFE ID + two DNS names) with node:crypto, then runs `parseCsr` on it in a loop for
 * ~3 s (after a short warm-up, so the JIT has settled) and prints CSRs per second. Measured here rather than
 * asserted in a test, because timings in tests only make them flaky.
 * `--breakdown` also times, on their own, the signature check and the library steps the parser avoids (the
 * schema parse, the re-serialisation DER check and the DER key import), to show what hand-walking saves.
 */
import { createPublicKey, verify } from "node:crypto";

import { CertificationRequest } from "@peculiar/asn1-csr";
import { AsnConvert } from "@peculiar/asn1-schema";

import { decodePem } from "../src/common/pem.js";
import { parseCsr } from "../src/ca/csr.js";
import { p256WorkloadCsr } from "./lib/workload-csr.js";

/** A signed P-256 CSR shaped like what a workload agent sends. */
const makeCsr = (): string =>
  p256WorkloadCsr("spiffe://anchorage.test/ns/payments/sa/api", ["api.payments.svc", "api.payments.svc.cluster.local"]);

/** Calls `fn` in a loop for about `milliseconds` and returns how many calls it made and the time they took. */
function run(fn: () => unknown, milliseconds: number): { count: number; elapsed: number } {
  let count = 0;
  const start = performance.now();
  let elapsed = 0;
  // Check the clock every 100 iterations so that reading it does not dominate the loop.
  while (elapsed < milliseconds) {
    for (let i = 0; i < 100; i++) fn();
    count += 100;
    elapsed = performance.now() - start;
  }
  return { count, elapsed };
}

function report(label: string, fn: () => unknown, milliseconds: number): void {
  run(fn, Math.min(300, milliseconds)); // warm-up
  const { count, elapsed } = run(fn, milliseconds);
  const perSecond = Math.round((count / elapsed) * 1000);
  console.log(`${label}: ${count} in ${(elapsed / 1000).toFixed(2)} s = ${perSecond}/s (${((elapsed / count) * 1000).toFixed(1)} µs each)`);
}

const args = process.argv.slice(2);
const seconds = Number(args.find((arg) => !arg.startsWith("--")) ?? 3);
const pem = makeCsr();
const parsed = parseCsr(pem); // fails loudly if the benchmark input itself is refused
report(`parseCsr (${parsed.keyDescription}, ${parsed.dnsNames.length} DNS names, ${pem.length} bytes of PEM), CSRs`, () => parseCsr(pem), seconds * 1000);

if (args.includes("--breakdown")) {
  const der = decodePem(pem, "CERTIFICATE REQUEST");
  const request = AsnConvert.parse(der, CertificationRequest);
  const info = Buffer.from(AsnConvert.serialize(request.certificationRequestInfo));
  const signature = new Uint8Array(request.signature);
  const stage = 1000;
  report("  PEM decode", () => decodePem(pem, "CERTIFICATE REQUEST"), stage);
  report("  AsnParser.parse (CertificationRequest)", () => AsnConvert.parse(der, CertificationRequest), stage);
  report("  AsnConvert.serialize (DER check)", () => AsnConvert.serialize(request), stage);
  report("  createPublicKey (SPKI DER)", () => createPublicKey({ key: parsed.subjectPublicKeyInfo, format: "der", type: "spki" }), stage);
  report("  verify (ecdsa-with-SHA256)", () => verify("sha256", info, parsed.publicKey, signature), stage);
}
