/**
 * Workload CSRs for benchmarks, made in-process with node:crypto and the @peculiar ASN.1 schemas
 * (spawning openssl 2,000 times would dominate a benchmark's set-up).
 */
import { generateKeyPairSync, sign } from "node:crypto";
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
import { encodePem } from "../../src/common/pem.js";

const EXTENSION_REQUEST = "1.2.840.113549.1.9.14";

/** A P-256 CSR with one SPIFFE ID and the given DNS names, PEM. */
export function p256WorkloadCsr(spiffeId: string, dnsNames: readonly string[] = []): string {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const san = new SubjectAlternativeName([
    new GeneralName({ uniformResourceIdentifier: spiffeId }),
    ...dnsNames.map((dNSName) => new GeneralName({ dNSName })),
  ]);
  const extensions = new Extensions([
    new Extension({ extnID: id_ce_subjectAltName, critical: false, extnValue: new OctetString(AsnConvert.serialize(san)) }),
  ]);
  const info = new CertificationRequestInfo({
    version: 0,
    subject: new Name(),
    subjectPKInfo: AsnConvert.parse(publicKey.export({ format: "der", type: "spki" }), SubjectPublicKeyInfo),
  });
  info.attributes.push(new Attribute({ type: EXTENSION_REQUEST, values: [AsnConvert.serialize(extensions)] }));
  const infoDer = Buffer.from(AsnConvert.serialize(info));
  const request = new CertificationRequest({
    certificationRequestInfo: info,
    signatureAlgorithm: new AlgorithmIdentifier({ algorithm: id_ecdsaWithSHA256 }),
    signature: new Uint8Array(sign("sha256", infoDer, privateKey)).buffer,
  });
  return encodePem(new Uint8Array(AsnConvert.serialize(request)), "CERTIFICATE REQUEST");
}
