/**
 * Micro benchmark of workload-certificate TBS construction: the pre-encoded WorkloadCertificateTemplate
 * against @peculiar/x509's generic generator (given a ready-made signature, so neither side signs).
 *
 *   npx tsx scripts/bench-template.ts [seconds per case, default 1.5]
 *
 * Numbers are single-threaded and exclude signing, storage and GraphQL; they show the TBS builder's share
 * of the issuance budget, not end-to-end throughput.
 */
import "reflect-metadata";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import {
  AuthorityInfoAccessExtension,
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  CRLDistributionPointsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  Name,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
  X509CertificateGenerator,
} from "@peculiar/x509";
import { buildName, subjectKeyIdentifier } from "../src/ca/x509/ca-certificates.js";
import { assembleSignedStructure } from "../src/ca/x509/signed.js";
import { WorkloadCertificateTemplate } from "../src/ca/x509/workload-template.js";

const secondsPerCase = Number(process.argv[2] ?? 1.5);
if (!(secondsPerCase > 0 && secondsPerCase <= 30)) throw new RangeError("seconds per case must be in (0, 30]");

const issuerNameDer = buildName({ commonName: "Anchorage Bench Intermediate", organization: "Anchorage" });
const issuerSubjectKeyIdentifier = randomBytes(20);
const urls = {
  crlDistributionPointUrl: "http://ca.anchorage.test:8080/crl/intermediate-1.crl",
  ocspUrl: "http://ca.anchorage.test:8080/ocsp",
  caIssuersUrl: "http://ca.anchorage.test:8080/ca/intermediate-1.crt",
};
const spki = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "der" });
const spiffeId = "spiffe://anchorage.test/ns/default/sa/web";
const dnsNames = ["web.default.svc", "web.default.svc.cluster.local"];
// A pool of serials so every iteration encodes a different certificate without paying for the CSPRNG.
const serials = Array.from({ length: 1024 }, () => randomBytes(16));
const notBefore = new Date(Date.UTC(2026, 2, 1, 11, 55, 0));
const notAfter = new Date(Date.UTC(2026, 2, 1, 13, 0, 0));
const fakeSignature = Buffer.alloc(72, 0x01); // about the size of a DER P-256 signature
let sink = 0; // keeps results observable so the work cannot be optimised away

async function measure(label: string, once: (i: number) => unknown): Promise<number> {
  for (let i = 0; i < 200; i++) await once(i); // warm-up
  const budget = BigInt(Math.round(secondsPerCase * 1e9));
  const start = process.hrtime.bigint();
  let elapsed = 0n;
  let count = 0;
  while (elapsed < budget) {
    for (let i = 0; i < 64; i++) {
      const result = await once(count + i);
      if (Buffer.isBuffer(result)) sink += result.length;
    }
    count += 64;
    elapsed = process.hrtime.bigint() - start;
  }
  const perSecond = count / (Number(elapsed) / 1e9);
  const rate = Math.round(perSecond).toLocaleString("en-US").padStart(10);
  console.log(`${label.padEnd(52)} ${rate} /s  (${count} in ${(Number(elapsed) / 1e9).toFixed(2)} s)`);
  return perSecond;
}

const template = new WorkloadCertificateTemplate({
  issuerNameDer,
  issuerSubjectKeyIdentifier,
  signatureAlgorithm: "ecdsa-with-SHA256",
  ...urls,
});
const fields = (i: number) => ({
  serialNumber: serials[i % serials.length] as Buffer,
  notBefore,
  notAfter,
  subjectPublicKeyInfo: spki,
  keyType: "ec" as const,
  spiffeId,
  dnsNames,
});

const fast = await measure("WorkloadCertificateTemplate.buildTbs", (i) => template.buildTbs(fields(i)));
await measure("  + assembleSignedStructure (signature given)", (i) =>
  assembleSignedStructure(template.buildTbs(fields(i)), "ecdsa-with-SHA256", fakeSignature),
);

// The same profile through @peculiar/x509, with the constant extensions built once as the template does.
const issuerName = new Name(new Uint8Array(issuerNameDer));
const constantExtensions = [
  new BasicConstraintsExtension(false, undefined, true),
  new KeyUsagesExtension(KeyUsageFlags.digitalSignature, true),
  new ExtendedKeyUsageExtension([ExtendedKeyUsage.serverAuth, ExtendedKeyUsage.clientAuth]),
];
const authorityKeyIdentifier = new AuthorityKeyIdentifierExtension(issuerSubjectKeyIdentifier.toString("hex"));
const trailingExtensions = [
  new CRLDistributionPointsExtension([urls.crlDistributionPointUrl]),
  new AuthorityInfoAccessExtension({ ocsp: urls.ocspUrl, caIssuers: urls.caIssuersUrl }),
];
const rawSignature = Buffer.alloc(64, 0x01); // WebCrypto-style r||s; the generator converts it to DER
const reference = await measure("@peculiar/x509 X509CertificateGenerator.create", async (i) => {
  const certificate = await X509CertificateGenerator.create({
    serialNumber: (serials[i % serials.length] as Buffer).toString("hex"),
    notBefore,
    notAfter,
    issuer: issuerName,
    publicKey: spki,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" } as EcdsaParams,
    signature: rawSignature,
    extensions: [
      ...constantExtensions,
      new SubjectKeyIdentifierExtension(subjectKeyIdentifier(spki).toString("hex")),
      authorityKeyIdentifier,
      new SubjectAlternativeNameExtension(
        [{ type: "url", value: spiffeId }, ...dnsNames.map((value) => ({ type: "dns" as const, value }))],
        true,
      ),
      ...trailingExtensions,
    ],
  });
  return Buffer.from(certificate.rawData);
});

console.log(`\ntemplate / @peculiar/x509: ${(fast / reference).toFixed(1)}x   (sink ${sink > 0 ? "ok" : "empty"})`);
