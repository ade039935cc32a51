/**
 * OCSP (RFC 6960, profiled by RFC 5019) wire format for the responder: a strict DER parser for
 * OCSPRequest and builders for ResponseData, the signed OCSPResponse and the unsigned error responses.
 * Pure functions, no I/O and no keys: the caller signs ResponseData with the delegated responder key.
 *
 * Parsing walks the bytes with `readTlv` (strict DER: definite minimal lengths, exact containment) and
 * builds no ASN.1 object model, so one request costs microseconds and BER is refused.
 */
import * as nodeCrypto from "node:crypto";
import type { SignatureAlgorithmName } from "../signer/signer.js";
import {
  TAG,
  contextExplicit,
  contextImplicit,
  enumerated,
  octetString,
  oid,
  oidContent,
  readTlv,
  sequence,
  tlv,
  type DerElement,
} from "../ca/x509/der.js";
import { certificateFields, inspectSubjectPublicKeyInfo } from "../ca/x509/ca-certificates.js";
import { assembleSignedStructure } from "../ca/x509/signed.js";

/** Raised by `parseOcspRequest` for anything that is not a well-formed DER OCSPRequest we can answer. */
export class OcspMalformedRequestError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "OcspMalformedRequestError";
  }
}

/** Hash algorithms accepted in a CertID (RFC 5019 §2.1.1 requires SHA-1; SHA-256 is common today). */
export type CertIdHashAlgorithm = "sha1" | "sha256";

/** One CertID (RFC 6960 §4.1.1) of a request. */
export interface CertId {
  readonly hashAlgorithm: CertIdHashAlgorithm;
  readonly issuerNameHash: Buffer;
  readonly issuerKeyHash: Buffer;
  /** Unsigned big-endian serial number, without a leading zero octet. */
  readonly serialNumber: Buffer;
  /** The exact CertID DER of the request, echoed back in the SingleResponse. */
  readonly der: Buffer;
}

/** What `parseOcspRequest` returns. */
export interface OcspRequest {
  readonly requests: CertId[];
  /** Value of the id-pkix-ocsp-nonce extension (RFC 8954): the octets inside its OCTET STRING. */
  readonly nonce?: Buffer;
}

/** Hashes of an issuing CA certificate as a CertID carries them, per hash algorithm. */
export interface IssuerHashes {
  /** Hash of the DER of the issuer's subject Name. */
  readonly nameHashes: { readonly sha1: Buffer; readonly sha256: Buffer };
  /** Hash of the value of the issuer's subjectPublicKey BIT STRING (no tag, length or unused-bits octet). */
  readonly keyHashes: { readonly sha1: Buffer; readonly sha256: Buffer };
}

/** Status of one certificate in a response (RFC 6960 §4.2.1 CertStatus). */
export type OcspCertStatus =
  | { readonly kind: "good" }
  | { readonly kind: "revoked"; readonly revokedAt: Date; readonly reason?: number }
  | { readonly kind: "unknown" };

/** One SingleResponse (RFC 6960 §4.2.1) to build. */
export interface OcspSingleResponse {
  readonly certId: CertId;
  readonly status: OcspCertStatus;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
}

/** Error statuses of OCSPResponseStatus (RFC 6960 §4.2.1); `successful` responses come from `assembleOcspResponse`. */
export type OcspErrorStatus = "malformedRequest" | "internalError" | "tryLater" | "sigRequired" | "unauthorized";

export const DEFAULT_MAX_OCSP_REQUESTS = 16;
/** RFC 8954 §2.1: a nonce is 1 to 32 octets. */
export const MAX_NONCE_LENGTH = 32;
/** RFC 5280 §4.1.2.2: serial numbers take at most 20 octets. */
const MAX_SERIAL_CONTENT_LENGTH = 20;

const ID_PKIX_OCSP_NONCE = "1.3.6.1.5.5.7.48.1.2";
const ID_PKIX_OCSP_BASIC = "1.3.6.1.5.5.7.48.1.1";
const NONCE_OID = oidContent(ID_PKIX_OCSP_NONCE);
const SHA1_OID = oidContent("1.3.14.3.2.26");
const SHA256_OID = oidContent("2.16.840.1.101.3.4.2.1");
const HASH_LENGTHS: Readonly<Record<CertIdHashAlgorithm, number>> = { sha1: 20, sha256: 32 };

// Context-specific identifiers used below.
const CTX0_CONSTRUCTED = 0xa0;
const CTX1_CONSTRUCTED = 0xa1;
const CTX2_CONSTRUCTED = 0xa2;

// ---------------------------------------------------------------------------------------------------------
// Request parsing
// ---------------------------------------------------------------------------------------------------------

/**
 * Parses a DER OCSPRequest (RFC 6960 §4.1.1):
 *
 *     OCSPRequest ::= SEQUENCE { tbsRequest TBSRequest, optionalSignature [0] EXPLICIT Signature OPTIONAL }
 *     TBSRequest  ::= SEQUENCE { version [0] EXPLICIT Version DEFAULT v1, requestorName [1] EXPLICIT GeneralName
 *                     OPTIONAL, requestList SEQUENCE OF Request, requestExtensions [2] EXPLICIT Extensions OPTIONAL }
 *     Request     ::= SEQUENCE { reqCert CertID, singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL }
 *     CertID      ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier, issuerNameHash OCTET STRING,
 *                     issuerKeyHash OCTET STRING, serialNumber CertificateSerialNumber }
 *
 * A signed request is accepted and its signature ignored (we do not require signed requests). The
 * requestorName and singleRequestExtensions are skipped. Throws `OcspMalformedRequestError` for non-DER
 * input (BER, trailing bytes, truncation), a version other than the omitted v1, an empty list or more than
 * `maxRequests` CertIDs, a hash algorithm other than SHA-1/SHA-256 or a hash of the wrong length, a serial
 * that is not a positive INTEGER of at most 20 octets, a duplicated or unknown critical extension, and a
 * nonce whose value is not an OCTET STRING of 1 to 32 octets (RFC 8954).
 */
export function parseOcspRequest(der: Buffer, options: { readonly maxRequests?: number } = {}): OcspRequest {
  const maxRequests = options.maxRequests ?? DEFAULT_MAX_OCSP_REQUESTS;
  if (!Number.isInteger(maxRequests) || maxRequests < 1) throw new RangeError("maxRequests must be a positive integer");
  try {
    return parseRequest(der, maxRequests);
  } catch (error) {
    if (error instanceof OcspMalformedRequestError) throw error;
    // readTlv throws TypeError on non-DER; anything else here is also the input's fault.
    throw new OcspMalformedRequestError(`not a DER OCSPRequest: ${(error as Error).message}`, { cause: error });
  }
}

function malformed(message: string): never {
  throw new OcspMalformedRequestError(message);
}

function expect(element: DerElement, tag: number, what: string): DerElement {
  if (element.tag !== tag) malformed(`${what}: expected tag 0x${tag.toString(16)}, found 0x${element.tag.toString(16)}`);
  return element;
}

function parseRequest(der: Buffer, maxRequests: number): OcspRequest {
  if (!Buffer.isBuffer(der)) malformed("request must be a Buffer");
  const outer = expect(readTlv(der, 0), TAG.SEQUENCE, "OCSPRequest");
  if (outer.end !== der.length) malformed("trailing bytes after the OCSPRequest");
  const tbs = expect(readTlv(der, outer.contentStart, outer.end), TAG.SEQUENCE, "tbsRequest");
  if (tbs.end !== outer.end) {
    // optionalSignature [0] EXPLICIT Signature: accepted, not verified; it must be the only thing left.
    const signature = expect(readTlv(der, tbs.end, outer.end), CTX0_CONSTRUCTED, "optionalSignature");
    if (signature.end !== outer.end) malformed("unexpected element after optionalSignature");
  }

  let at = tbs.contentStart;
  let element = readTlv(der, at, tbs.end);
  if (element.tag === CTX0_CONSTRUCTED) {
    // DEFAULT v1 must be omitted in DER, and v1 is the only version there is.
    malformed("TBSRequest.version must be omitted (v1)");
  }
  if (element.tag === CTX1_CONSTRUCTED) {
    at = element.end; // requestorName: skipped
    element = readTlv(der, at, tbs.end);
  }
  const list = expect(element, TAG.SEQUENCE, "requestList");
  const requests: CertId[] = [];
  for (let cursor = list.contentStart; cursor < list.end; ) {
    if (requests.length === maxRequests) malformed(`more than ${maxRequests} CertIDs in one request`);
    const request = expect(readTlv(der, cursor, list.end), TAG.SEQUENCE, "Request");
    const certId = expect(readTlv(der, request.contentStart, request.end), TAG.SEQUENCE, "CertID");
    requests.push(parseCertId(der, certId));
    if (certId.end !== request.end) {
      const extensions = expect(readTlv(der, certId.end, request.end), CTX0_CONSTRUCTED, "singleRequestExtensions");
      if (extensions.end !== request.end) malformed("unexpected element after singleRequestExtensions");
      readExtensions(der, extensions); // structure and criticality checked, values ignored
    }
    cursor = request.end;
  }
  if (requests.length === 0) malformed("requestList is empty");

  let nonce: Buffer | undefined;
  if (list.end !== tbs.end) {
    const extensions = expect(readTlv(der, list.end, tbs.end), CTX2_CONSTRUCTED, "requestExtensions");
    if (extensions.end !== tbs.end) malformed("unexpected element after requestExtensions");
    const nonceValue = readExtensions(der, extensions);
    if (nonceValue !== undefined) nonce = nonceValue;
  }
  return nonce === undefined ? { requests } : { requests, nonce };
}

function parseCertId(der: Buffer, certId: DerElement): CertId {
  const algorithm = expect(readTlv(der, certId.contentStart, certId.end), TAG.SEQUENCE, "CertID.hashAlgorithm");
  const algorithmOid = expect(readTlv(der, algorithm.contentStart, algorithm.end), TAG.OBJECT_IDENTIFIER, "hashAlgorithm.algorithm");
  if (algorithmOid.end !== algorithm.end) {
    // parameters: NULL or absent (RFC 5754 §2 allows both for SHA-2).
    const parameters = readTlv(der, algorithmOid.end, algorithm.end);
    if (parameters.tag !== TAG.NULL || parameters.end !== parameters.contentStart || parameters.end !== algorithm.end) {
      malformed("hashAlgorithm parameters must be NULL or absent");
    }
  }
  const oidBytes = der.subarray(algorithmOid.contentStart, algorithmOid.end);
  const hashAlgorithm: CertIdHashAlgorithm | undefined = oidBytes.equals(SHA1_OID)
    ? "sha1"
    : oidBytes.equals(SHA256_OID)
      ? "sha256"
      : undefined;
  if (hashAlgorithm === undefined) malformed("CertID hash algorithm is neither SHA-1 nor SHA-256");
  const expectedLength = HASH_LENGTHS[hashAlgorithm];

  const nameHash = expect(readTlv(der, algorithm.end, certId.end), TAG.OCTET_STRING, "issuerNameHash");
  const keyHash = expect(readTlv(der, nameHash.end, certId.end), TAG.OCTET_STRING, "issuerKeyHash");
  if (nameHash.end - nameHash.contentStart !== expectedLength || keyHash.end - keyHash.contentStart !== expectedLength) {
    malformed(`CertID hashes must be ${expectedLength} octets for ${hashAlgorithm}`);
  }
  const serial = expect(readTlv(der, keyHash.end, certId.end), TAG.INTEGER, "serialNumber");
  if (serial.end !== certId.end) malformed("unexpected element after CertID.serialNumber");
  return {
    hashAlgorithm,
    issuerNameHash: Buffer.from(der.subarray(nameHash.contentStart, nameHash.end)),
    issuerKeyHash: Buffer.from(der.subarray(keyHash.contentStart, keyHash.end)),
    serialNumber: unsignedSerial(der.subarray(serial.contentStart, serial.end)),
    der: Buffer.from(der.subarray(certId.start, certId.end)),
  };
}

/** Unsigned value of a positive, minimally encoded serial INTEGER of at most 20 content octets. */
function unsignedSerial(content: Buffer): Buffer {
  const length = content.length;
  if (length === 0) malformed("serialNumber is empty");
  if (length > MAX_SERIAL_CONTENT_LENGTH) malformed(`serialNumber is longer than ${MAX_SERIAL_CONTENT_LENGTH} octets`);
  const first = content[0] as number;
  if (first & 0x80) malformed("serialNumber is negative");
  if (first === 0 && length === 1) malformed("serialNumber is zero");
  if (first === 0 && ((content[1] as number) & 0x80) === 0) malformed("serialNumber INTEGER is not minimal (not DER)");
  return Buffer.from(first === 0 ? content.subarray(1) : content);
}

/**
 * Walks an `[n] EXPLICIT Extensions` wrapper (RFC 5280 §4.1: SEQUENCE SIZE (1..MAX) OF Extension) and returns
 * the nonce value when there is one. Refuses duplicates, an explicit FALSE critical flag (not DER), and
 * critical extensions we do not understand.
 */
function readExtensions(der: Buffer, wrapper: DerElement): Buffer | undefined {
  const list = expect(readTlv(der, wrapper.contentStart, wrapper.end), TAG.SEQUENCE, "Extensions");
  if (list.end !== wrapper.end) malformed("unexpected element after Extensions");
  if (list.end === list.contentStart) malformed("Extensions must not be empty");
  const seen = new Set<string>();
  let nonce: Buffer | undefined;
  for (let cursor = list.contentStart; cursor < list.end; ) {
    const extension = expect(readTlv(der, cursor, list.end), TAG.SEQUENCE, "Extension");
    const id = expect(readTlv(der, extension.contentStart, extension.end), TAG.OBJECT_IDENTIFIER, "extnID");
    const idBytes = der.subarray(id.contentStart, id.end);
    const key = idBytes.toString("hex");
    if (seen.has(key)) malformed("duplicate extension");
    seen.add(key);
    let next = readTlv(der, id.end, extension.end);
    let critical = false;
    if (next.tag === TAG.BOOLEAN) {
      if (next.end - next.contentStart !== 1 || der[next.contentStart] !== 0xff) {
        malformed("Extension.critical must be omitted or TRUE (0xFF) in DER");
      }
      critical = true;
      next = readTlv(der, next.end, extension.end);
    }
    const value = expect(next, TAG.OCTET_STRING, "extnValue");
    if (value.end !== extension.end) malformed("unexpected element after extnValue");
    if (idBytes.equals(NONCE_OID)) {
      // RFC 8954 §2.1: Nonce ::= OCTET STRING (SIZE(1..32)).
      const inner = readTlv(der, value.contentStart, value.end);
      if (inner.tag !== TAG.OCTET_STRING || inner.end !== value.end) malformed("nonce is not one OCTET STRING");
      const length = inner.end - inner.contentStart;
      if (length < 1 || length > MAX_NONCE_LENGTH) malformed(`nonce must be 1 to ${MAX_NONCE_LENGTH} octets`);
      nonce = Buffer.from(der.subarray(inner.contentStart, inner.end));
    } else if (critical) {
      malformed("unsupported critical extension");
    }
    cursor = extension.end;
  }
  return nonce;
}

// ---------------------------------------------------------------------------------------------------------
// Issuer matching
// ---------------------------------------------------------------------------------------------------------

/**
 * The issuerNameHash and issuerKeyHash values (RFC 6960 §4.1.1) of an issuing CA certificate, for SHA-1 and
 * SHA-256: hashes of the DER of its subject Name, and of the value of its subjectPublicKey BIT STRING.
 * Compute once per issuer and keep. Throws `TypeError` when `certificateDer` is not one DER certificate.
 */
export function issuerHashes(certificateDer: Buffer): IssuerHashes {
  const fields = certificateFields(certificateDer);
  const key = inspectSubjectPublicKeyInfo(fields.subjectPublicKeyInfo).subjectPublicKey;
  const digest = (algorithm: CertIdHashAlgorithm, data: Uint8Array): Buffer =>
    nodeCrypto.createHash(algorithm).update(data).digest();
  return {
    nameHashes: { sha1: digest("sha1", fields.subjectNameDer), sha256: digest("sha256", fields.subjectNameDer) },
    keyHashes: { sha1: digest("sha1", key), sha256: digest("sha256", key) },
  };
}

/** True when `certId` names the issuer whose hashes are `issuer` (both hashes, with the CertID's algorithm). */
export function certIdMatches(certId: CertId, issuer: IssuerHashes): boolean {
  return (
    certId.issuerNameHash.equals(issuer.nameHashes[certId.hashAlgorithm]) &&
    certId.issuerKeyHash.equals(issuer.keyHashes[certId.hashAlgorithm])
  );
}

// ---------------------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------------------

/**
 * DER ResponseData (RFC 6960 §4.2.1), the bytes the responder key signs:
 *
 *     ResponseData ::= SEQUENCE { version [0] EXPLICIT Version DEFAULT v1, responderID ResponderID,
 *                      producedAt GeneralizedTime, responses SEQUENCE OF SingleResponse,
 *                      responseExtensions [1] EXPLICIT Extensions OPTIONAL }
 *     SingleResponse ::= SEQUENCE { certID CertID, certStatus CertStatus, thisUpdate GeneralizedTime,
 *                      nextUpdate [0] EXPLICIT GeneralizedTime OPTIONAL, singleExtensions [1] EXPLICIT ... OPTIONAL }
 *
 * Version omitted (v1); responderID is `[2] byKey` (SHA-1 of the responder's subjectPublicKey value, as
 * RFC 5019 §2.2.3 recommends); each CertID is echoed byte for byte; times are GeneralizedTime in whole
 * seconds (milliseconds truncated); revoked entries carry revocationReason when `reason` is given; the
 * nonce, when given, is echoed in an id-pkix-ocsp-nonce response extension (RFC 8954).
 */
export function buildResponseData(input: {
  readonly responderKeyHash: Buffer;
  readonly producedAt: Date;
  readonly responses: readonly OcspSingleResponse[];
  readonly nonce?: Buffer;
}): Buffer {
  if (input.responderKeyHash.length !== 20) throw new TypeError("responderKeyHash must be a 20-octet SHA-1 hash");
  if (input.responses.length === 0) throw new TypeError("a response needs at least one SingleResponse");
  const parts: Buffer[] = [
    contextExplicit(2, octetString(input.responderKeyHash)),
    generalizedTime(input.producedAt),
    sequence(...input.responses.map(singleResponse)),
  ];
  if (input.nonce !== undefined) {
    if (input.nonce.length < 1 || input.nonce.length > MAX_NONCE_LENGTH) {
      throw new RangeError(`nonce must be 1 to ${MAX_NONCE_LENGTH} octets`);
    }
    parts.push(contextExplicit(1, sequence(sequence(oid(ID_PKIX_OCSP_NONCE), octetString(octetString(input.nonce))))));
  }
  return sequence(...parts);
}

function singleResponse(response: OcspSingleResponse): Buffer {
  const certId = readTlv(response.certId.der, 0);
  if (certId.tag !== TAG.SEQUENCE || certId.end !== response.certId.der.length) {
    throw new TypeError("certId.der must be exactly one DER SEQUENCE");
  }
  if (response.nextUpdate.getTime() < response.thisUpdate.getTime()) {
    throw new RangeError("nextUpdate must not be before thisUpdate");
  }
  return sequence(
    response.certId.der,
    certStatus(response.status),
    generalizedTime(response.thisUpdate),
    contextExplicit(0, generalizedTime(response.nextUpdate)),
  );
}

// CertStatus ::= CHOICE { good [0] IMPLICIT NULL, revoked [1] IMPLICIT RevokedInfo, unknown [2] IMPLICIT UnknownInfo }
function certStatus(status: OcspCertStatus): Buffer {
  switch (status.kind) {
    case "good":
      return contextImplicit(0, Buffer.alloc(0));
    case "unknown":
      return contextImplicit(2, Buffer.alloc(0));
    case "revoked": {
      // RevokedInfo ::= SEQUENCE { revocationTime GeneralizedTime, revocationReason [0] EXPLICIT CRLReason OPTIONAL }
      const time = generalizedTime(status.revokedAt);
      if (status.reason === undefined) return contextImplicit(1, time, true);
      const reason = status.reason;
      // RFC 5280 §5.3.1: 0-10, 7 unassigned.
      if (!Number.isInteger(reason) || reason < 0 || reason > 10 || reason === 7) {
        throw new RangeError(`revocation reason ${reason} is not a CRLReason`);
      }
      return contextImplicit(1, Buffer.concat([time, contextExplicit(0, enumerated(reason))]), true);
    }
    default:
      throw new TypeError(`unknown certificate status ${String((status as { kind: unknown }).kind)}`);
  }
}

/** GeneralizedTime `YYYYMMDDHHMMSSZ` (RFC 6960 follows RFC 5280 §4.1.2.5.2: UTC, no fractional seconds). */
function generalizedTime(date: Date): Buffer {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) throw new TypeError("time is not a valid Date");
  const year = date.getUTCFullYear();
  if (year < 1 || year > 9999) throw new RangeError(`year ${year} cannot be encoded as GeneralizedTime`);
  const two = (value: number): string => String(value).padStart(2, "0");
  const text =
    String(year).padStart(4, "0") +
    two(date.getUTCMonth() + 1) +
    two(date.getUTCDate()) +
    two(date.getUTCHours()) +
    two(date.getUTCMinutes()) +
    two(date.getUTCSeconds()) +
    "Z";
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(text, "latin1"));
}

/**
 * DER OCSPResponse (RFC 6960 §4.2.1) with responseStatus successful and responseBytes of type
 * id-pkix-ocsp-basic holding the BasicOCSPResponse:
 *
 *     BasicOCSPResponse ::= SEQUENCE { tbsResponseData ResponseData, signatureAlgorithm AlgorithmIdentifier,
 *                           signature BIT STRING, certs [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL }
 *
 * `signature` is the signature of `responseDataDer` exactly as it goes into the BIT STRING (ECDSA: DER
 * Ecdsa-Sig-Value); `responderCertificateDer` is the delegated responder certificate, included so clients
 * can verify the signature (RFC 6960 §4.2.2.2).
 */
export function assembleOcspResponse(
  responseDataDer: Buffer,
  signatureAlgorithm: SignatureAlgorithmName,
  signature: Buffer,
  responderCertificateDer: Buffer,
): Buffer {
  const certificate = readTlv(responderCertificateDer, 0);
  if (certificate.tag !== TAG.SEQUENCE || certificate.end !== responderCertificateDer.length) {
    throw new TypeError("responderCertificateDer must be exactly one DER Certificate");
  }
  // SEQUENCE { tbsResponseData, signatureAlgorithm, signature }: the same SIGNED{} shape as a certificate.
  const signed = assembleSignedStructure(responseDataDer, signatureAlgorithm, signature);
  const signedContent = signed.subarray(readTlv(signed, 0).contentStart);
  const basic = sequence(signedContent, contextExplicit(0, sequence(responderCertificateDer)));
  return sequence(enumerated(0), contextExplicit(0, sequence(oid(ID_PKIX_OCSP_BASIC), octetString(basic))));
}

// OCSPResponseStatus (RFC 6960 §4.2.1); 4 is not used.
const ERROR_STATUS_CODES: Readonly<Record<OcspErrorStatus, number>> = Object.freeze({
  malformedRequest: 1,
  internalError: 2,
  tryLater: 3,
  sigRequired: 5,
  unauthorized: 6,
});

/**
 * DER OCSPResponse (RFC 6960 §4.2.1) with an error responseStatus and no responseBytes, e.g. malformedRequest
 * = `30 03 0a 01 01`. Unsigned by definition; returns a fresh Buffer.
 */
export function ocspErrorResponse(status: OcspErrorStatus): Buffer {
  const code = ERROR_STATUS_CODES[status];
  if (code === undefined || !Object.hasOwn(ERROR_STATUS_CODES, status)) {
    throw new TypeError(`unknown OCSP error status "${String(status)}"`);
  }
  return Buffer.of(TAG.SEQUENCE, 0x03, TAG.ENUMERATED, 0x01, code);
}
