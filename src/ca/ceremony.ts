/**
 * The CA-level signing operations of the key ceremony: the self-signed root, the intermediate's CSR, the
 * root's signature on it, and CRLs. Each is a pure TBS builder followed by one signature through a `Signer`
 * and a verification of the result, so a wrong key or a faulty HSM cannot produce a certificate silently.
 * Used by the ceremony CLI and by the development bootstrap alike.
 */
import { createPublicKey, verify, type KeyObject } from "node:crypto";
import { CertificationRequest } from "@peculiar/asn1-csr";
import { AsnConvert, AsnParser } from "@peculiar/asn1-schema";
import { Name } from "@peculiar/x509";
import { BadUserInputError, InternalError } from "../common/errors.js";
import type { Signer } from "../signer/signer.js";
import { generateSerial } from "./serial.js";
import { SIGNATURE_HASH_ALGORITHMS, signatureAlgorithmFromOid } from "./x509/algorithms.js";
import {
  buildCertificationRequestInfo,
  buildIntermediateTbs,
  buildName,
  buildRootTbs,
  certificateFields,
  type NameAttributes,
} from "./x509/ca-certificates.js";
import { buildCrlTbs, type CrlEntry, type EncodedCrlEntries } from "./x509/crl.js";
import { assembleSignedStructure } from "./x509/signed.js";

const DAY_MS = 86_400_000;

export const ROOT_DEFAULT_VALIDITY_DAYS = 3650;
export const INTERMEDIATE_MIN_VALIDITY_DAYS = 365;
export const INTERMEDIATE_MAX_VALIDITY_DAYS = 5 * 365 + 1;


async function signVerified(signer: Signer, tbs: Buffer, verifyWith: KeyObject): Promise<Buffer> {
  const signature = await signer.sign(tbs);
  const hash = SIGNATURE_HASH_ALGORITHMS[signer.signatureAlgorithm];
  if (!verify(hash, tbs, { key: verifyWith, dsaEncoding: "der" }, signature)) {
    throw new InternalError(`the signature of key "${signer.keyLabel}" does not verify`);
  }
  return assembleSignedStructure(tbs, signer.signatureAlgorithm, signature);
}

function publicKeyOf(spki: Buffer): KeyObject {
  return createPublicKey({ key: spki, format: "der", type: "spki" });
}

/** RFC 4514 text of a DER Name, for records and logs. */
export function nameToString(nameDer: Buffer): string {
  return new Name(new Uint8Array(nameDer)).toString();
}

/** Self-signed root certificate for the key behind `signer`, valid from `notBefore` for `validityDays`. */
export async function createRootCertificate(input: {
  readonly signer: Signer;
  readonly subject: NameAttributes;
  readonly notBefore: Date;
  readonly validityDays?: number;
}): Promise<Buffer> {
  const validityDays = input.validityDays ?? ROOT_DEFAULT_VALIDITY_DAYS;
  if (!Number.isInteger(validityDays) || validityDays < 365 || validityDays > 30 * 365) {
    throw new BadUserInputError("root validity must be 365 to 10950 days");
  }
  const tbs = buildRootTbs({
    subjectNameDer: buildName(input.subject),
    subjectPublicKeyInfo: input.signer.publicKeySpki,
    serialNumber: generateSerial(),
    notBefore: input.notBefore,
    notAfter: new Date(input.notBefore.getTime() + validityDays * DAY_MS),
    signatureAlgorithm: input.signer.signatureAlgorithm,
  });
  return signVerified(input.signer, tbs, publicKeyOf(input.signer.publicKeySpki));
}

/** PKCS#10 CSR for an intermediate whose key is behind `signer` (generated inside the online HSM). */
export async function createIntermediateCsr(input: { readonly signer: Signer; readonly subject: NameAttributes }): Promise<Buffer> {
  const info = buildCertificationRequestInfo({
    subjectNameDer: buildName(input.subject),
    subjectPublicKeyInfo: input.signer.publicKeySpki,
  });
  return signVerified(input.signer, info, publicKeyOf(input.signer.publicKeySpki));
}

/** The subject and key of a CA CSR whose signature verifies (proof of possession of the HSM key). */
export function parseCaCsr(der: Buffer): { subjectNameDer: Buffer; subjectPublicKeyInfo: Buffer } {
  let request: CertificationRequest;
  try {
    request = AsnParser.parse(der, CertificationRequest);
  } catch (error) {
    throw new BadUserInputError("the intermediate CSR is not a DER PKCS#10 request", { cause: error });
  }
  const info = Buffer.from(AsnConvert.serialize(request.certificationRequestInfo));
  const subjectPublicKeyInfo = Buffer.from(AsnConvert.serialize(request.certificationRequestInfo.subjectPKInfo));
  const algorithm = signatureAlgorithmFromOid(request.signatureAlgorithm.algorithm);
  if (!algorithm) throw new BadUserInputError("the intermediate CSR uses an unsupported signature algorithm");
  let key: KeyObject;
  try {
    key = publicKeyOf(subjectPublicKeyInfo);
  } catch (error) {
    throw new BadUserInputError("the intermediate CSR carries an unusable public key", { cause: error });
  }
  const details = key.asymmetricKeyDetails;
  const usable =
    (key.asymmetricKeyType === "ec" && (details?.namedCurve === "prime256v1" || details?.namedCurve === "secp384r1")) ||
    (key.asymmetricKeyType === "rsa" && (details?.modulusLength ?? 0) >= 2048 && (details?.modulusLength ?? 0) <= 4096);
  if (!usable) throw new BadUserInputError("the intermediate key must be EC P-256, P-384 or RSA 2048-4096");
  const signature = Buffer.from(request.signature);
  if (!verify(SIGNATURE_HASH_ALGORITHMS[algorithm], info, { key, dsaEncoding: "der" }, signature)) {
    throw new BadUserInputError("the intermediate CSR's signature does not verify");
  }
  return {
    subjectNameDer: Buffer.from(AsnConvert.serialize(request.certificationRequestInfo.subject)),
    subjectPublicKeyInfo,
  };
}

/**
 * The root's signature on an intermediate CSR: pathLen 0, optional name constraints that confine the
 * intermediate to one SPIFFE trust domain (URI host) and, optionally, DNS subtrees.
 */
export async function signIntermediate(input: {
  readonly rootSigner: Signer;
  readonly rootCertificateDer: Buffer;
  readonly csrDer: Buffer;
  readonly notBefore: Date;
  readonly validityDays: number;
  readonly trustDomain?: string;
  readonly permittedDnsDomains?: readonly string[];
  readonly crlDistributionPointUrl?: string;
}): Promise<Buffer> {
  const root = certificateFields(input.rootCertificateDer);
  if (!root.subjectPublicKeyInfo.equals(input.rootSigner.publicKeySpki)) {
    throw new BadUserInputError("the root key on the token is not the key of the given root certificate");
  }
  if (
    !Number.isInteger(input.validityDays) ||
    input.validityDays < INTERMEDIATE_MIN_VALIDITY_DAYS ||
    input.validityDays > INTERMEDIATE_MAX_VALIDITY_DAYS
  ) {
    throw new BadUserInputError("intermediate validity must be 1 to 5 years (365 to 1826 days)");
  }
  const notAfter = new Date(input.notBefore.getTime() + input.validityDays * DAY_MS);
  if (notAfter.getTime() > root.notAfter.getTime()) {
    throw new BadUserInputError("the intermediate would outlive the root; shorten its validity");
  }
  const csr = parseCaCsr(input.csrDer);
  const constraints =
    input.trustDomain || input.permittedDnsDomains?.length
      ? {
          ...(input.trustDomain ? { permittedUris: [input.trustDomain] } : {}),
          ...(input.permittedDnsDomains?.length ? { permittedDnsNames: input.permittedDnsDomains } : {}),
        }
      : undefined;
  const tbs = buildIntermediateTbs({
    subjectNameDer: csr.subjectNameDer,
    subjectPublicKeyInfo: csr.subjectPublicKeyInfo,
    serialNumber: generateSerial(),
    notBefore: input.notBefore,
    notAfter,
    signatureAlgorithm: input.rootSigner.signatureAlgorithm,
    issuerNameDer: root.subjectNameDer,
    issuerSubjectKeyIdentifier: root.subjectKeyIdentifier,
    pathLenConstraint: 0,
    ...(constraints ? { nameConstraints: constraints } : {}),
    ...(input.crlDistributionPointUrl ? { crlDistributionPointUrl: input.crlDistributionPointUrl } : {}),
  });
  return signVerified(input.rootSigner, tbs, publicKeyOf(root.subjectPublicKeyInfo));
}

/** A CRL signed by the CA whose certificate is `issuerCertificateDer` and whose key is behind `signer`. */
export async function createCrl(input: {
  readonly signer: Signer;
  readonly issuerCertificateDer: Buffer;
  readonly crlNumber: bigint;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  readonly entries: Iterable<CrlEntry> | EncodedCrlEntries;
}): Promise<Buffer> {
  const issuer = certificateFields(input.issuerCertificateDer);
  if (!issuer.subjectPublicKeyInfo.equals(input.signer.publicKeySpki)) {
    throw new BadUserInputError("the signing key is not the key of the CRL issuer's certificate");
  }
  const tbs = buildCrlTbs({
    issuerNameDer: issuer.subjectNameDer,
    issuerSubjectKeyIdentifier: issuer.subjectKeyIdentifier,
    signatureAlgorithm: input.signer.signatureAlgorithm,
    thisUpdate: input.thisUpdate,
    nextUpdate: input.nextUpdate,
    crlNumber: input.crlNumber,
    entries: input.entries,
  });
  return signVerified(input.signer, tbs, publicKeyOf(issuer.subjectPublicKeyInfo));
}
