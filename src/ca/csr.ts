/**
 * Parsing and checking of workload CSRs (PKCS#10, RFC 2986). This is the first thing issuance does with
 * untrusted input, so it is strict (DER only, one PEM block, a size cap checked before any parsing) and
 * every refusal is a `BadCsrError` whose message tells the workload's operator what to change.
 *
 * It is also on the hot path of issuance: the CSR is parsed once with @peculiar/asn1-schema, the bytes that
 * matter (CertificationRequestInfo, SubjectPublicKeyInfo) are sliced out of the input rather than re-encoded,
 * and key handling and signature verification are left to node:crypto (OpenSSL).
 */
import { type KeyObject, createPublicKey, verify } from "node:crypto";

import { CertificationRequest } from "@peculiar/asn1-csr";
import {
  ECParameters,
  id_ecPublicKey,
  id_ecdsaWithSHA1,
  id_ecdsaWithSHA224,
  id_ecdsaWithSHA256,
  id_ecdsaWithSHA384,
  id_ecdsaWithSHA512,
  id_secp192r1,
  id_secp224r1,
  id_secp521r1,
} from "@peculiar/asn1-ecc";
import {
  id_RSASSA_PSS,
  id_md2WithRSAEncryption,
  id_md5WithRSAEncryption,
  id_rsaEncryption,
  id_sha1WithRSAEncryption,
  id_sha224WithRSAEncryption,
  id_sha256WithRSAEncryption,
  id_sha384WithRSAEncryption,
  id_sha512WithRSAEncryption,
} from "@peculiar/asn1-rsa";
import { AsnConvert, AsnParser } from "@peculiar/asn1-schema";
import { Extensions, type GeneralName, SubjectAlternativeName, id_ce_subjectAltName } from "@peculiar/asn1-x509";

import { BadCsrError } from "../common/errors.js";
import { decodePem, decodePemBlocks } from "../common/pem.js";
import { InvalidIdentityError, parseDnsName, parseWorkloadSpiffeId } from "../policy/identity.js";

/** What issuance needs from a CSR that passed every check. */
export interface ParsedCsr {
  /** The CSR exactly as received (DER), e.g. for the audit record. */
  readonly der: Buffer;
  /** The exact DER bytes of the SubjectPublicKeyInfo inside the CSR; the certificate carries them unchanged. */
  readonly subjectPublicKeyInfo: Buffer;
  readonly keyType: "ec" | "rsa";
  /** "P-256", "P-384" or "RSA-<bits>": what policy rules and audit events name the key by. */
  readonly keyDescription: string;
  readonly publicKey: KeyObject;
  /** The one `spiffe://` URI SAN, a valid workload SPIFFE ID (trust domain not yet checked against policy). */
  readonly spiffeId: string;
  /** DNS SANs, lower-cased and de-duplicated, in the order first requested. */
  readonly dnsNames: readonly string[];
}

export interface ParseCsrOptions {
  /** Largest PEM text accepted, in UTF-8 bytes. Default 16384, far above any CSR we accept (~1.5 KiB for RSA-4096). */
  readonly maxPemBytes?: number;
}

const DEFAULT_MAX_PEM_BYTES = 16_384;
/** Beyond this a CSR is a bulk request in disguise; it also bounds the work spent validating names. */
const MAX_DNS_NAMES = 100;
const ACCEPTED_PEM_LABELS = new Set(["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"]);
const USE_SUPPORTED_KEY = "use P-256, P-384 or RSA 2048-4096";

/** PKCS#9 extensionRequest (RFC 2985 §5.4.2): where a CSR carries the extensions it asks for. */
const ID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14";

const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 4096;
const RSA_EXPONENT = 65537n;

interface CurveInfo {
  readonly name: "P-256" | "P-384";
  /** DER of the namedCurve OID as it appears in the SPKI's algorithm parameters. */
  readonly parametersDer: Buffer;
  /** The name node:crypto reports in `asymmetricKeyDetails.namedCurve`. */
  readonly nodeName: string;
  /** Length of the uncompressed point 04 || X || Y. */
  readonly pointLength: number;
}

const ACCEPTED_CURVES: readonly CurveInfo[] = [
  { name: "P-256", parametersDer: Buffer.from("06082a8648ce3d030107", "hex"), nodeName: "prime256v1", pointLength: 65 },
  { name: "P-384", parametersDer: Buffer.from("06052b81040022", "hex"), nodeName: "secp384r1", pointLength: 97 },
];

/** Names for refused curves, so that the message says "P-521" rather than an OID. */
const REFUSED_CURVE_NAMES = new Map<string, string>([
  [id_secp521r1, "P-521"],
  [id_secp192r1, "P-192"],
  [id_secp224r1, "P-224"],
  ["1.3.132.0.10", "secp256k1"],
  ["1.3.36.3.3.2.8.1.1.7", "brainpoolP256r1"],
  ["1.3.36.3.3.2.8.1.1.11", "brainpoolP384r1"],
  ["1.3.36.3.3.2.8.1.1.13", "brainpoolP512r1"],
  ["1.2.156.10197.1.301", "SM2"],
]);

/** Names for refused key algorithms (SubjectPublicKeyInfo algorithm OIDs). */
const REFUSED_KEY_ALGORITHMS = new Map<string, string>([
  ["1.3.101.110", "X25519"],
  ["1.3.101.111", "X448"],
  ["1.3.101.112", "Ed25519"],
  ["1.3.101.113", "Ed448"],
  ["1.2.840.10040.4.1", "DSA"],
  [id_RSASSA_PSS, "RSASSA-PSS (a PSS-restricted RSA key)"],
  ["1.3.132.1.12", "ECDH-only EC key (id-ecDH)"],
]);

interface SignatureAlgorithm {
  readonly keyType: "ec" | "rsa";
  readonly hash: "sha256" | "sha384" | "sha512";
  readonly name: string;
}

const ACCEPTED_SIGNATURE_ALGORITHMS = new Map<string, SignatureAlgorithm>([
  [id_ecdsaWithSHA256, { keyType: "ec", hash: "sha256", name: "ecdsa-with-SHA256" }],
  [id_ecdsaWithSHA384, { keyType: "ec", hash: "sha384", name: "ecdsa-with-SHA384" }],
  [id_ecdsaWithSHA512, { keyType: "ec", hash: "sha512", name: "ecdsa-with-SHA512" }],
  [id_sha256WithRSAEncryption, { keyType: "rsa", hash: "sha256", name: "sha256WithRSAEncryption" }],
  [id_sha384WithRSAEncryption, { keyType: "rsa", hash: "sha384", name: "sha384WithRSAEncryption" }],
  [id_sha512WithRSAEncryption, { keyType: "rsa", hash: "sha512", name: "sha512WithRSAEncryption" }],
]);

/** Refused signature algorithms, each with the reason a person needs to fix their tooling. */
const REFUSED_SIGNATURE_ALGORITHMS = new Map<string, string>([
  [id_sha1WithRSAEncryption, "sha1WithRSAEncryption (SHA-1 is broken)"],
  [id_ecdsaWithSHA1, "ecdsa-with-SHA1 (SHA-1 is broken)"],
  [id_md5WithRSAEncryption, "md5WithRSAEncryption (MD5 is broken)"],
  [id_md2WithRSAEncryption, "md2WithRSAEncryption (MD2 is broken)"],
  [id_sha224WithRSAEncryption, "sha224WithRSAEncryption (SHA-224 is not accepted)"],
  [id_ecdsaWithSHA224, "ecdsa-with-SHA224 (SHA-224 is not accepted)"],
  [id_RSASSA_PSS, "RSASSA-PSS (use PKCS#1 v1.5 signatures for CSRs)"],
  ["1.3.101.112", "Ed25519"],
  ["1.3.101.113", "Ed448"],
  ["1.2.840.10040.4.3", "dsa-with-SHA1"],
  ["2.16.840.1.101.3.4.3.2", "dsa-with-SHA256"],
]);

const GENERAL_NAME_TYPES: ReadonlyArray<readonly [keyof GeneralName, string]> = [
  ["otherName", "an otherName SAN"],
  ["rfc822Name", "an email address SAN (rfc822Name)"],
  ["x400Address", "an x400Address SAN"],
  ["directoryName", "a directoryName SAN"],
  ["ediPartyName", "an ediPartyName SAN"],
  ["iPAddress", "an IP address SAN (iPAddress)"],
  ["registeredID", "a registeredID SAN"],
];

/** A DER element's position in a buffer: [start, end) in all, content from `contentStart`. */
interface Tlv {
  readonly tag: number;
  readonly start: number;
  readonly contentStart: number;
  readonly end: number;
}

/** A fault in the DER layout found by readTlv; always turned into a BadCsrError before it leaves this module. */
class DerLayoutError extends Error {
  override name = "DerLayoutError";
}

/**
 * Reads one DER tag-length header at `offset`. Only what a CSR's outer layers use is supported (low tag numbers,
 * definite lengths up to 4 bytes); BER's indefinite and non-minimal lengths are refused here already so that the
 * message can say so precisely.
 */
function readTlv(der: Buffer, offset: number, limit: number): Tlv {
  if (offset + 2 > limit) throw new DerLayoutError("it is truncated");
  const tag = der[offset] as number;
  if ((tag & 0x1f) === 0x1f) throw new DerLayoutError("it uses a high tag number where none is expected");
  const first = der[offset + 1] as number;
  let length = first;
  let contentStart = offset + 2;
  if (first === 0x80) throw new DerLayoutError("it uses an indefinite length (BER), DER is required");
  if (first > 0x80) {
    const count = first & 0x7f;
    if (count > 4) throw new DerLayoutError("it declares an impossibly long length");
    if (contentStart + count > limit) throw new DerLayoutError("it is truncated");
    if (der[contentStart] === 0) throw new DerLayoutError("it uses a non-minimal length encoding (BER), DER is required");
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + (der[contentStart + i] as number);
    if (length < 0x80) throw new DerLayoutError("it uses a non-minimal length encoding (BER), DER is required");
    contentStart += count;
  }
  const end = contentStart + length;
  if (end > limit) throw new DerLayoutError("it is truncated");
  return { tag, start: offset, contentStart, end };
}

/** Whether `der` is exactly what asn1-schema produces for `value`, i.e. the input was canonical DER. */
function isCanonicalDer(value: object, der: Uint8Array): boolean {
  const reencoded = new Uint8Array(AsnConvert.serialize(value));
  return Buffer.from(reencoded.buffer, reencoded.byteOffset, reencoded.byteLength).equals(der);
}

/** Parses a nested DER structure of the CSR (an attribute or extension value) strictly, naming it on failure. */
function parseNested<T extends object>(bytes: ArrayBuffer, schema: new () => T, what: string): T {
  let value: T;
  let canonical: boolean;
  try {
    value = AsnParser.parse(bytes, schema);
    canonical = isCanonicalDer(value, new Uint8Array(bytes));
  } catch (cause) {
    throw new BadCsrError(`the CSR's ${what} cannot be parsed`, { cause });
  }
  if (!canonical) throw new BadCsrError(`the CSR's ${what} is not DER-encoded`);
  return value;
}

/** The PEM text's single CSR block as DER, with a message for each way a client gets the framing wrong. */
function decodeCsrPem(pem: string): Buffer {
  let blocks;
  try {
    blocks = decodePemBlocks(pem);
  } catch (cause) {
    throw new BadCsrError("the CSR's PEM body is not base64", { cause });
  }
  if (blocks.length === 0) {
    throw new BadCsrError("the CSR is not PEM: expected a -----BEGIN CERTIFICATE REQUEST----- block");
  }
  if (blocks.length > 1) {
    throw new BadCsrError(`the CSR text holds ${blocks.length} PEM blocks: send exactly one CERTIFICATE REQUEST`);
  }
  const label = (blocks[0] as { label: string }).label;
  if (!ACCEPTED_PEM_LABELS.has(label)) {
    const hint = label === "CERTIFICATE" ? ": a certificate was sent where a certificate request (CSR) is expected" : "";
    throw new BadCsrError(`expected a PEM "CERTIFICATE REQUEST" block, found "${label}"${hint}`);
  }
  try {
    // decodePem repeats the block search, but it is the one place that defines what may surround a block.
    return decodePem(pem, label);
  } catch (cause) {
    throw new BadCsrError(`the CSR's PEM framing is malformed: ${(cause as Error).message}`, { cause });
  }
}

/** Checks the key and builds the KeyObject; refusals name the key and what to use instead. */
function checkPublicKey(
  csr: CertificationRequest,
  spkiDer: Buffer,
): { keyType: "ec" | "rsa"; keyDescription: string; publicKey: KeyObject } {
  const spki = csr.certificationRequestInfo.subjectPKInfo;
  const algorithm = spki.algorithm.algorithm;

  if (algorithm === id_ecPublicKey) {
    if (!(spki.algorithm.parameters instanceof ArrayBuffer)) {
      throw new BadCsrError(`unsupported key: EC key without curve parameters, ${USE_SUPPORTED_KEY}`);
    }
    // The two accepted curves are recognised by their exact encoding (cheaper than parsing, and DER-exact);
    // only a refusal pays for a parse, to name the curve.
    const parametersDer = new Uint8Array(spki.algorithm.parameters);
    const curve = ACCEPTED_CURVES.find((candidate) => candidate.parametersDer.equals(parametersDer));
    if (curve === undefined) {
      const parameters = parseNested(spki.algorithm.parameters, ECParameters, "EC key parameters");
      if (parameters.namedCurve === undefined) {
        throw new BadCsrError(`unsupported key: EC key with explicit curve parameters, ${USE_SUPPORTED_KEY}`);
      }
      const name = REFUSED_CURVE_NAMES.get(parameters.namedCurve) ?? `EC curve ${parameters.namedCurve}`;
      throw new BadCsrError(`unsupported key: ${name}, ${USE_SUPPORTED_KEY}`);
    }
    // Compressed points are legal in RFC 5480 but many TLS stacks (Go's among them) cannot parse them,
    // and the key goes into the certificate byte for byte.
    const point = new Uint8Array(spki.subjectPublicKey);
    if (point[0] !== 0x04 || point.length !== curve.pointLength) {
      throw new BadCsrError(`the CSR's ${curve.name} public key must be an uncompressed point (starting 0x04)`);
    }
    let publicKey: KeyObject;
    try {
      publicKey = createPublicKey({ key: spkiDer, format: "der", type: "spki" });
    } catch (cause) {
      throw new BadCsrError(`the CSR's public key is not a valid point on ${curve.name}`, { cause });
    }
    if (publicKey.asymmetricKeyType !== "ec" || publicKey.asymmetricKeyDetails?.namedCurve !== curve.nodeName) {
      throw new BadCsrError(`the CSR's public key is not a valid ${curve.name} key`);
    }
    return { keyType: "ec", keyDescription: curve.name, publicKey };
  }

  if (algorithm === id_rsaEncryption) {
    // RFC 3279 §2.3.1: the parameters field MUST be NULL (asn1-schema reads NULL as `null`).
    if (spki.algorithm.parameters !== null) {
      throw new BadCsrError("the CSR's RSA key has malformed algorithm parameters (NULL is required)");
    }
    let publicKey: KeyObject;
    try {
      publicKey = createPublicKey({ key: spkiDer, format: "der", type: "spki" });
    } catch (cause) {
      throw new BadCsrError("the CSR's RSA public key is malformed", { cause });
    }
    const details = publicKey.asymmetricKeyDetails;
    const bits = details?.modulusLength;
    const exponent = details?.publicExponent;
    if (publicKey.asymmetricKeyType !== "rsa" || bits === undefined || exponent === undefined) {
      throw new BadCsrError("the CSR's RSA public key is malformed");
    }
    const description = `RSA-${bits}`;
    if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
      throw new BadCsrError(`unsupported key: ${description}, ${USE_SUPPORTED_KEY}`);
    }
    if (bits % 8 !== 0) {
      throw new BadCsrError(`unsupported key: ${description} (modulus size must be a multiple of 8), ${USE_SUPPORTED_KEY}`);
    }
    if (exponent !== RSA_EXPONENT) {
      throw new BadCsrError(
        `unsupported key: ${description} with public exponent ${exponent} (only 65537 is accepted), ${USE_SUPPORTED_KEY}`,
      );
    }
    return { keyType: "rsa", keyDescription: description, publicKey };
  }

  const name = REFUSED_KEY_ALGORITHMS.get(algorithm) ?? `key algorithm ${algorithm}`;
  throw new BadCsrError(`unsupported key: ${name}, ${USE_SUPPORTED_KEY}`);
}

/** The signature algorithm, if it is one we accept and it fits the key. */
function checkSignatureAlgorithm(csr: CertificationRequest, keyType: "ec" | "rsa"): SignatureAlgorithm {
  const { algorithm, parameters } = csr.signatureAlgorithm;
  const accepted = ACCEPTED_SIGNATURE_ALGORITHMS.get(algorithm);
  if (accepted === undefined) {
    const name = REFUSED_SIGNATURE_ALGORITHMS.get(algorithm) ?? algorithm;
    throw new BadCsrError(
      `unsupported CSR signature algorithm ${name}: sign the CSR with SHA-256, SHA-384 or SHA-512 ` +
        "(ecdsa-with-SHA256/384/512 or sha256/384/512WithRSAEncryption)",
    );
  }
  // RFC 5758 §3.2: ECDSA parameters MUST be absent. RFC 4055 §5 wants NULL for RSA, but absent is common enough
  // in the wild (and harmless) that refusing it would only break clients.
  const parametersOk = accepted.keyType === "ec" ? parameters === undefined : parameters === null || parameters === undefined;
  if (!parametersOk) {
    throw new BadCsrError(`the CSR's signature algorithm ${accepted.name} has malformed parameters`);
  }
  if (accepted.keyType !== keyType) {
    throw new BadCsrError(`the CSR is signed with ${accepted.name}, which does not match its ${keyType.toUpperCase()} key`);
  }
  return accepted;
}

/** The subjectAltName the CSR requests, from its extensionRequest attribute; `undefined` when there is none. */
function requestedSubjectAltName(csr: CertificationRequest): SubjectAlternativeName | undefined {
  const attributes = csr.certificationRequestInfo.attributes ?? [];
  const requests = attributes.filter((attribute) => attribute.type === ID_EXTENSION_REQUEST);
  if (requests.length === 0) return undefined;
  if (requests.length > 1) throw new BadCsrError("the CSR has more than one extensionRequest attribute");
  const values = (requests[0] as { values: ArrayBuffer[] }).values;
  if (values.length !== 1) throw new BadCsrError("the CSR's extensionRequest attribute must hold exactly one value");
  const extensions = parseNested(values[0] as ArrayBuffer, Extensions, "extensionRequest attribute");

  const sans = extensions.filter((extension) => extension.extnID === id_ce_subjectAltName);
  if (sans.length === 0) return undefined;
  if (sans.length > 1) throw new BadCsrError("the CSR requests more than one subjectAltName extension");
  return parseNested((sans[0] as (typeof sans)[number]).extnValue.buffer, SubjectAlternativeName, "subjectAltName extension");
}

/** The SPIFFE ID and DNS names the CSR asks for, each checked against the identity rules. */
function checkNames(csr: CertificationRequest): { spiffeId: string; dnsNames: string[] } {
  const san = requestedSubjectAltName(csr);
  const uris: string[] = [];
  const rawDnsNames: string[] = [];
  for (const name of san ?? []) {
    if (name.uniformResourceIdentifier !== undefined) {
      uris.push(name.uniformResourceIdentifier);
    } else if (name.dNSName !== undefined) {
      rawDnsNames.push(name.dNSName);
    } else {
      const type = GENERAL_NAME_TYPES.find(([field]) => name[field] !== undefined)?.[1] ?? "a SAN of an unknown type";
      throw new BadCsrError(`the CSR asks for ${type}: only one spiffe:// URI SAN and DNS SANs are issued`);
    }
  }

  if (uris.length !== 1) {
    const found = uris.length === 0 ? (san === undefined ? "no subjectAltName at all" : "no URI SAN") : `${uris.length} URI SANs`;
    throw new BadCsrError(`the CSR must carry exactly one spiffe:// URI SAN, found ${found}`);
  }
  let spiffeId: string;
  try {
    spiffeId = parseWorkloadSpiffeId(uris[0] as string).id;
  } catch (cause) {
    if (!(cause instanceof InvalidIdentityError)) throw cause;
    throw new BadCsrError(`the CSR's URI SAN is not a valid workload SPIFFE ID: ${cause.message}`, { cause });
  }

  if (rawDnsNames.length > MAX_DNS_NAMES) {
    throw new BadCsrError(`the CSR asks for ${rawDnsNames.length} DNS names, more than the ${MAX_DNS_NAMES} allowed`);
  }
  const dnsNames = new Set<string>();
  for (const raw of rawDnsNames) {
    try {
      dnsNames.add(parseDnsName(raw));
    } catch (cause) {
      if (!(cause instanceof InvalidIdentityError)) throw cause;
      throw new BadCsrError(`the CSR's DNS SAN is not usable: ${cause.message}`, { cause });
    }
  }
  return { spiffeId, dnsNames: [...dnsNames] };
}

/**
 * Parses a workload CSR and checks everything about it that does not depend on who sends it: encoding,
 * proof of possession, key, signature algorithm and the form of the requested names. Whether the caller may have
 * that SPIFFE ID and those DNS names (and whether the trust domain is ours) is policy's decision, not this one's.
 *
 * Accepted: one PEM block labelled `CERTIFICATE REQUEST` (or the legacy `NEW CERTIFICATE REQUEST`) holding a DER
 * PKCS#10 v1 request, signed (ecdsa-with-SHA256/384/512 or sha256/384/512WithRSAEncryption) by the key it
 * carries, that key being EC P-256, EC P-384 (uncompressed point) or RSA 2048–4096 bits (multiple of 8, exponent
 * 65537), with an extensionRequest whose subjectAltName holds exactly one `spiffe://` URI (a workload SPIFFE ID)
 * and at most 100 DNS names. Duplicate DNS names are merged rather than refused.
 *
 * Ignored on purpose:
 * - the subject: issued certificates carry an empty subject, as X.509-SVIDs may, and identity lives only in the
 *   SAN, so nothing a client writes in its subject can reach a certificate;
 * - every requested extension other than subjectAltName (key usage, basic constraints, …): the CA's profile
 *   decides them, whatever the CSR asks for;
 * - attributes other than extensionRequest (e.g. challengePassword).
 *
 * @param pem The PEM text as received. Its size is checked before anything parses it.
 * @throws BadCsrError for every refusal, with a message for the person who made the CSR; any underlying library
 *   error is kept as `cause`.
 * @throws RangeError if `options.maxPemBytes` is not a positive integer (a programming error, not bad input).
 */
export function parseCsr(pem: string, options?: ParseCsrOptions): ParsedCsr {
  const maxPemBytes = options?.maxPemBytes ?? DEFAULT_MAX_PEM_BYTES;
  if (!Number.isSafeInteger(maxPemBytes) || maxPemBytes <= 0) {
    throw new RangeError(`maxPemBytes must be a positive integer, got ${maxPemBytes}`);
  }

  // Step 1: size, before any parsing, so that a hostile body costs nothing. A UTF-16 unit is at least one UTF-8
  // byte, so the cheap length test rules out huge strings without scanning them.
  if (typeof pem !== "string") throw new BadCsrError("the CSR must be a PEM string");
  if (pem.length > maxPemBytes || Buffer.byteLength(pem, "utf8") > maxPemBytes) {
    throw new BadCsrError(`the CSR is larger than ${maxPemBytes} bytes`);
  }
  if (pem.trim() === "") throw new BadCsrError("the CSR is empty");

  // Step 2: PEM framing.
  const der = decodeCsrPem(pem);

  // Step 3: the outer DER envelope, by hand, to tell truncation and trailing bytes apart from other damage.
  let outer: Tlv;
  try {
    outer = readTlv(der, 0, der.length);
    if (outer.tag !== 0x30) throw new DerLayoutError("it does not start with a SEQUENCE");
  } catch (cause) {
    if (!(cause instanceof DerLayoutError)) throw cause;
    throw new BadCsrError(`the CSR is not a valid DER certificate request: ${cause.message}`, { cause });
  }
  if (outer.end !== der.length) {
    throw new BadCsrError(`the CSR has ${der.length - outer.end} trailing byte(s) after the certificate request`);
  }

  // Step 4: one structural parse.
  let csr: CertificationRequest;
  try {
    csr = AsnParser.parse(der, CertificationRequest);
  } catch (cause) {
    throw new BadCsrError("the CSR cannot be parsed as a PKCS#10 certificate request", { cause });
  }

  // Step 5: slice CertificationRequestInfo and SubjectPublicKeyInfo out of the input: slicing (not re-encoding)
  // means we verify and certify exactly the bytes that were signed. The walk is bounds-checked, so it is safe on
  // input that later turns out not to be DER.
  let criBytes: Buffer;
  let spkiBytes: Buffer;
  try {
    const cri = readTlv(der, outer.contentStart, outer.end);
    const version = readTlv(der, cri.contentStart, cri.end);
    const subject = readTlv(der, version.end, cri.end);
    const spki = readTlv(der, subject.end, cri.end);
    // asn1-schema treats the attributes as optional and would leave the re-encoding check below to report
    // their absence as a mere encoding problem.
    if (spki.end === cri.end) {
      throw new DerLayoutError("it has no attributes field ([0]), which PKCS#10 requires even when empty");
    }
    criBytes = der.subarray(cri.start, cri.end);
    spkiBytes = der.subarray(spki.start, spki.end);
  } catch (cause) {
    if (!(cause instanceof DerLayoutError)) throw cause;
    throw new BadCsrError(`the CSR is not a valid DER certificate request: ${cause.message}`, { cause });
  }

  // Step 6: refuse BER. Two encodings of one request must not both pass, or what we audit is not what was signed.
  let canonical: boolean;
  try {
    canonical = isCanonicalDer(csr, der);
  } catch (cause) {
    throw new BadCsrError("the CSR cannot be parsed as a PKCS#10 certificate request", { cause });
  }
  if (!canonical) throw new BadCsrError("the CSR is not DER-encoded (BER or non-canonical encoding)");

  // RFC 2986 §4.1: v1 is the only version, encoded as 0.
  if (csr.certificationRequestInfo.version !== 0) {
    throw new BadCsrError(
      `the CSR's version field is ${csr.certificationRequestInfo.version}: the only PKCS#10 version is v1, encoded as 0`,
    );
  }

  // Step 7: key, then the signature algorithm, then proof of possession.
  const { keyType, keyDescription, publicKey } = checkPublicKey(csr, spkiBytes);
  const signatureAlgorithm = checkSignatureAlgorithm(csr, keyType);
  let signatureValid: boolean;
  try {
    signatureValid = verify(signatureAlgorithm.hash, criBytes, publicKey, new Uint8Array(csr.signature));
  } catch (cause) {
    throw new BadCsrError("the CSR's signature does not verify: it must be signed by the key it carries", { cause });
  }
  if (!signatureValid) {
    throw new BadCsrError("the CSR's signature does not verify: it must be signed by the key it carries");
  }

  // Step 8: the names, only once we know the request is authentic.
  const { spiffeId, dnsNames } = checkNames(csr);

  return Object.freeze({
    der,
    subjectPublicKeyInfo: spkiBytes,
    keyType,
    keyDescription,
    publicKey,
    spiffeId,
    dnsNames: Object.freeze(dnsNames),
  });
}
