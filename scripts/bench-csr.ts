/**
 * Micro benchmark of CSR parsing and checking, the first step of every issuance:
 *
 *   npx tsx scripts/bench-csr.ts [seconds] [--breakdown]
 *
 * Makes one P-256 CSR (SPIFFE ID + two DNS names) with node:crypto, then runs `parseCsr` on it in a loop for
 * ~3 s (after a short warm-up, so the JIT has settled) and prints CSRs per second. Measured here rather than
 * asserted in a test, because timings in tests only make them flaky (DESIGN.md, "Non-negotiables").
 * `--breakdown` also times the expensive stages on their own, to show where a CSR's time goes.
 */
import { createPublicKey, generateKeyPairSync, sign, verify } from "node:crypto";

import { CertificationRequest, CertificationRequestInfo } from "@peculiar/asn1-csr";
import { id_ecdsaWithSHA256 } from "@peculiar/asn1-ecc";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import {
  AlgorithmIdentifier,
  Attribute,
  Extension,
  Extensions,
  GeneralName,
  Name,
  SubjectAlternativeName,
  SubjectPublicKeyInfo,
  id_ce_subjectAltName,
} from "@peculiar/asn1-x509";

import { decodePem, encodePem } from "../src/common/pem.js";
import { parseCsr } from "../src/ca/csr.js";

/** A signed P-256 CSR shaped like what a workload agent sends. */
function makeCsr(): string {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const san = new SubjectAlternativeName([
    new GeneralName({ uniformResourceIdentifier: "spiffe://anchorage.test/ns/payments/sa/api" }),
    new GeneralName({ dNSName: "api.payments.svc" }),
    new GeneralName({ dNSName: "api.payments.svc.cluster.local" }),
  ]);
  const extensions = new Extensions([
    new Extension({ extnID: id_ce_subjectAltName, critical: false, extnValue: new OctetString(AsnConvert.serialize(san)) }),
  ]);
  const info = new CertificationRequestInfo({
    version: 0,
    subject: new Name(),
    subjectPKInfo: AsnConvert.parse(publicKey.export({ format: "der", type: "spki" }), SubjectPublicKeyInfo),
  });
  info.attributes.push(
    new Attribute({ type: "1.2.840.113549.1.9.14", values: [AsnConvert.serialize(extensions)] }),
  );
  const infoDer = Buffer.from(AsnConvert.serialize(info));
  const signature = sign("sha256", infoDer, privateKey);
  const request = new CertificationRequest({
    certificationRequestInfo: info,
    signatureAlgorithm: new AlgorithmIdentifier({ algorithm: id_ecdsaWithSHA256 }),
    signature: new Uint8Array(signature).buffer,
  });
  return encodePem(new Uint8Array(AsnConvert.serialize(request)), "CERTIFICATE REQUEST");
}

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
