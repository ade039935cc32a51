/**
 * TBSCertificate of the delegated OCSP responder certificate (RFC 6960 §4.2.2.2) that each intermediate
 * issues to the key that signs its OCSP responses. Built with the DER encoder: the layout is fixed.
 */
import type { SignatureAlgorithmName } from "../../signer/signer.js";
import { signatureAlgorithmIdentifier } from "./algorithms.js";
import {
  TAG,
  boolean,
  contextExplicit,
  contextImplicit,
  encodeTime,
  integer,
  namedBitString,
  nullValue,
  octetString,
  oid,
  readTlv,
  sequence,
  tlv,
} from "./der.js";
import { inspectSubjectPublicKeyInfo, serialNumberContent, subjectKeyIdentifier } from "./ca-certificates.js";

/** id-kp-OCSPSigning (RFC 5280 §4.2.1.12). */
export const ID_KP_OCSP_SIGNING = "1.3.6.1.5.5.7.3.9";
/** id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1). */
export const ID_PKIX_OCSP_NOCHECK = "1.3.6.1.5.5.7.48.1.5";

const ID_CE_SUBJECT_KEY_IDENTIFIER = "2.5.29.14";
const ID_CE_KEY_USAGE = "2.5.29.15";
const ID_CE_BASIC_CONSTRAINTS = "2.5.29.19";
const ID_CE_EXT_KEY_USAGE = "2.5.29.37";
const ID_CE_AUTHORITY_KEY_IDENTIFIER = "2.5.29.35";
const KEY_USAGE_DIGITAL_SIGNATURE = 0;

/** Fields of a delegated OCSP responder certificate. */
export interface OcspSignerTbsFields {
  /** DER Name of the responder (e.g. `buildName({ commonName: "Anchorage OCSP Responder 1" })`). */
  readonly subjectNameDer: Buffer;
  /** DER SubjectPublicKeyInfo of the responder key. */
  readonly subjectPublicKeyInfo: Buffer;
  /** Unsigned big-endian serial number; positive, at most 20 octets once encoded. */
  readonly serialNumber: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Algorithm the issuing intermediate signs with. */
  readonly signatureAlgorithm: SignatureAlgorithmName;
  /** The intermediate's subject Name, byte for byte as in its certificate. */
  readonly issuerNameDer: Buffer;
  /** The intermediate's SubjectKeyIdentifier, copied into the AuthorityKeyIdentifier. */
  readonly issuerSubjectKeyIdentifier: Buffer;
}

/**
 * DER TBSCertificate (RFC 5280 §4.1) of a delegated OCSP responder certificate (RFC 6960 §4.2.2.2) issued by
 * an intermediate: v3; basicConstraints critical cA FALSE (an empty SEQUENCE in DER); keyUsage critical
 * digitalSignature; extKeyUsage id-kp-OCSPSigning; id-pkix-ocsp-nocheck (NULL, not critical, RFC 6960
 * §4.2.2.2.1) so that clients do not ask for the responder's own status; SubjectKeyIdentifier (method 1);
 * AuthorityKeyIdentifier keyIdentifier. Throws `TypeError`/`RangeError` on malformed input.
 *
 * @example
 * const tbs = buildOcspSignerTbs({ ...fields, issuerNameDer: inter.subjectNameDer,
 *   issuerSubjectKeyIdentifier: inter.subjectKeyIdentifier, signatureAlgorithm: interSigner.signatureAlgorithm });
 * const certificate = assembleSignedStructure(tbs, interSigner.signatureAlgorithm, await interSigner.sign(tbs));
 */
export function buildOcspSignerTbs(fields: OcspSignerTbsFields): Buffer {
  assertSingleSequence(fields.subjectNameDer, "subjectNameDer");
  assertSingleSequence(fields.issuerNameDer, "issuerNameDer");
  inspectSubjectPublicKeyInfo(fields.subjectPublicKeyInfo);
  if (fields.issuerSubjectKeyIdentifier.length === 0) throw new TypeError("issuerSubjectKeyIdentifier is empty");
  if (!(fields.notBefore instanceof Date) || !(fields.notAfter instanceof Date)) {
    throw new TypeError("notBefore and notAfter must be Dates");
  }
  if (!(fields.notAfter.getTime() > fields.notBefore.getTime())) {
    throw new RangeError("notAfter must be after notBefore");
  }
  const extensions = sequence(
    extension(ID_CE_BASIC_CONSTRAINTS, true, sequence()),
    extension(ID_CE_KEY_USAGE, true, namedBitString([KEY_USAGE_DIGITAL_SIGNATURE])),
    extension(ID_CE_EXT_KEY_USAGE, false, sequence(oid(ID_KP_OCSP_SIGNING))),
    extension(ID_PKIX_OCSP_NOCHECK, false, nullValue()),
    extension(ID_CE_SUBJECT_KEY_IDENTIFIER, false, octetString(subjectKeyIdentifier(fields.subjectPublicKeyInfo))),
    extension(ID_CE_AUTHORITY_KEY_IDENTIFIER, false, sequence(contextImplicit(0, fields.issuerSubjectKeyIdentifier))),
  );
  return sequence(
    contextExplicit(0, integer(Buffer.of(2))),
    tlv(TAG.INTEGER, serialNumberContent(fields.serialNumber)),
    signatureAlgorithmIdentifier(fields.signatureAlgorithm),
    fields.issuerNameDer,
    sequence(encodeTime(fields.notBefore), encodeTime(fields.notAfter)),
    fields.subjectNameDer,
    fields.subjectPublicKeyInfo,
    contextExplicit(3, extensions),
  );
}

function extension(extnID: string, critical: boolean, valueDer: Buffer): Buffer {
  // critical is DEFAULT FALSE: DER omits it when false.
  return critical
    ? sequence(oid(extnID), boolean(true), octetString(valueDer))
    : sequence(oid(extnID), octetString(valueDer));
}

function assertSingleSequence(der: Buffer, field: string): void {
  const outer = readTlv(der, 0);
  if (outer.tag !== TAG.SEQUENCE || outer.end !== der.length) {
    throw new TypeError(`${field} must be exactly one DER SEQUENCE`);
  }
}
