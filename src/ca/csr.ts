/**
 * Parsing and checking of workload CSRs (PKCS#10, RFC 2986). This is the first thing issuance does with
 * untrusted input, so it is strict (DER only, one PEM block, a size cap checked before any parsing) and
 * every refusal is a `BadCsrError` whose message tells the workload's operator what to change.
 *
 * It is also on the hot path of issuance: the CSR is parsed once with @peculiar/asn1-schema, the bytes that
 * matter (CertificationRequestInfo, SubjectPublicKeyInfo) are sliced out of the input rather than re-encoded,
 * and key handling and signature verification are left to node:crypto (OpenSSL).
 */
import { KeyObject, createPublicKey, verify, webcrypto } from "node:crypto";

import {
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
import { id_ce_subjectAltName } from "@peculiar/asn1-x509";

import { BadCsrError } from "../common/errors.js";
import { TAG } from "./x509/der.js";
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

/** What the signature check needs: the signed CertificationRequestInfo bytes, exactly as received. */
interface ProofOfPossession {
  readonly hash: string;
  readonly signedBytes: Buffer;
  readonly key: CheckedPublicKey;
  readonly signatureValue: Buffer;
}

/** A public key whose encoding passed every check; importing it also checks an EC point lies on its curve. */
interface CheckedPublicKey {
  readonly keyType: "ec" | "rsa";
  readonly keyDescription: string;
  importNow(): KeyObject;
  import(): Promise<KeyObject>;
}
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


/** A DER element's position in a buffer: [start, end) in all, content from `contentStart`. */
interface Tlv {
  readonly tag: number;
  readonly start: number;
  readonly contentStart: number;
  readonly end: number;
}

/** A fault in the DER layout; always turned into a BadCsrError before it leaves this module. */
class DerLayoutError extends Error {
  override name = "DerLayoutError";
}

/** Well-formed, but BER rather than DER: a second encoding of the same request. */
class NotDerError extends DerLayoutError {
  override name = "NotDerError";
}

/** PKCS#10 attributes: [0] IMPLICIT SET OF Attribute. */
const TAG_ATTRIBUTES = 0xa0;

/**
 * Reads one DER tag-length header at `offset`. Only what a CSR uses is supported (low tag numbers, definite
 * lengths up to 4 bytes); BER's indefinite and non-minimal lengths are refused with a precise message.
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

/** Reads the element at `offset` and insists on its tag. */
function expectTlv(der: Buffer, offset: number, limit: number, tag: number, what: string): Tlv {
  const element = readTlv(der, offset, limit);
  if (element.tag !== tag) throw new DerLayoutError(`${what} has the wrong type`);
  return element;
}

/** The elements directly inside a constructed element, each checked for DER framing. */
function children(der: Buffer, parent: Tlv): Tlv[] {
  const elements: Tlv[] = [];
  for (let at = parent.contentStart; at < parent.end; ) {
    const element = readTlv(der, at, parent.end);
    elements.push(element);
    at = element.end;
  }
  return elements;
}

/** Dotted form of an OID element, refusing non-minimal sub-identifiers (BER). */
function readOid(der: Buffer, element: Tlv, what: string): string {
  if (element.tag !== TAG.OBJECT_IDENTIFIER || element.end === element.contentStart) throw new DerLayoutError(`${what} is not an OID`);
  const arcs: number[] = [];
  let value = 0;
  let fresh = true;
  for (let at = element.contentStart; at < element.end; at++) {
    const byte = der[at] as number;
    if (fresh && byte === 0x80) throw new DerLayoutError(`${what} is not minimally encoded`);
    value = value * 128 + (byte & 0x7f);
    fresh = (byte & 0x80) === 0;
    if (fresh) {
      if (arcs.length === 0) arcs.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80);
      else arcs.push(value);
      value = 0;
    }
    if (value > Number.MAX_SAFE_INTEGER / 128) throw new DerLayoutError(`${what} has an oversized arc`);
  }
  if (!fresh) throw new DerLayoutError(`${what} is truncated`);
  return arcs.join(".");
}

/** Content of a BIT STRING that must hold whole octets (unused-bits octet 0). */
function bitStringOctets(der: Buffer, element: Tlv, what: string): Buffer {
  if (element.tag !== TAG.BIT_STRING || element.end === element.contentStart || der[element.contentStart] !== 0) {
    throw new DerLayoutError(`${what} is not a whole-octet BIT STRING`);
  }
  return der.subarray(element.contentStart + 1, element.end);
}

/** Content of a non-negative DER INTEGER, leading sign octet removed; refuses non-minimal encodings. */
function unsignedInteger(der: Buffer, element: Tlv, what: string): Buffer {
  const content = der.subarray(element.contentStart, element.end);
  if (element.tag !== TAG.INTEGER || content.length === 0) throw new DerLayoutError(`${what} is not an INTEGER`);
  if ((content[0] as number) & 0x80) throw new DerLayoutError(`${what} is negative`);
  if (content.length > 1 && content[0] === 0 && ((content[1] as number) & 0x80) === 0) {
    throw new DerLayoutError(`${what} is not minimally encoded`);
  }
  return content[0] === 0 && content.length > 1 ? content.subarray(1) : content;
}

/** Refuses an INTEGER with a redundant leading octet as BER. */
function unsignedIntegerOrNotDer(der: Buffer, element: Tlv): void {
  const length = element.end - element.contentStart;
  const first = der[element.contentStart] as number;
  const second = der[element.contentStart + 1] as number;
  if (length > 1 && ((first === 0 && (second & 0x80) === 0) || (first === 0xff && (second & 0x80) !== 0))) {
    throw new NotDerError("an INTEGER is not minimally encoded");
  }
}

/** DER wants SET OF elements sorted by their encodings (X.690 §11.6). */
function assertSortedSet(der: Buffer, elements: readonly Tlv[], what: string): void {
  for (let i = 1; i < elements.length; i++) {
    const previous = elements[i - 1] as Tlv;
    const current = elements[i] as Tlv;
    if (Buffer.compare(der.subarray(previous.start, previous.end), der.subarray(current.start, current.end)) > 0) {
      throw new DerLayoutError(`${what} is not sorted as DER requires`);
    }
  }
}

/**
 * An IA5String's text. Non-ASCII octets are decoded as UTF-8 rather than refused here, so that the identity
 * rules, which refuse them, can say which name is wrong and why.
 */
function ia5(der: Buffer, element: Tlv): string {
  return der.toString("utf8", element.contentStart, element.end);
}

/** Turns a layout fault found inside a nested structure into the refusal that names that structure. */
function inside<T>(what: string, read: () => T): T {
  try {
    return read();
  } catch (cause) {
    if (cause instanceof DerLayoutError) {
      throw new BadCsrError(`the CSR's ${what} is not DER-encoded: ${cause.message}`, { cause });
    }
    throw cause;
  }
}

const base64url = (bytes: Buffer): string => bytes.toString("base64url");

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

/**
 * Checks the SubjectPublicKeyInfo and says how to import the key. Keys are imported from their raw parts,
 * never from the DER: OpenSSL 3's DER decoder costs about twice as much, and this is on every issuance.
 * An EC point has two ways in. WebCrypto's raw import (used off the synchronous path) costs about two thirds
 * of a JWK import, because OpenSSL's JWK route also multiplies the point by the group order, a check that
 * says nothing on P-256 and P-384 (cofactor 1) once the point is known to be on the curve; both check that.
 */
function checkPublicKey(der: Buffer, spki: Tlv): CheckedPublicKey {
  const [algorithm, subjectPublicKey, ...rest] = inside("public key", () => children(der, spki));
  if (!algorithm || !subjectPublicKey || rest.length > 0 || algorithm.tag !== TAG.SEQUENCE) {
    throw new BadCsrError("the CSR's public key is not a valid SubjectPublicKeyInfo");
  }
  const [algorithmOid, parameters, ...extra] = inside("public key algorithm", () => children(der, algorithm));
  if (!algorithmOid || extra.length > 0) throw new BadCsrError("the CSR's public key algorithm is malformed");
  const algorithmId = inside("public key algorithm", () => readOid(der, algorithmOid, "the key algorithm"));

  if (algorithmId === id_ecPublicKey) {
    if (!parameters) throw new BadCsrError(`unsupported key: EC key without curve parameters, ${USE_SUPPORTED_KEY}`);
    // The two accepted curves are recognised by their exact encoding; only a refusal pays for naming the curve.
    const parametersDer = der.subarray(parameters.start, parameters.end);
    const curve = ACCEPTED_CURVES.find((candidate) => candidate.parametersDer.equals(parametersDer));
    if (curve === undefined) {
      if (parameters.tag !== TAG.OBJECT_IDENTIFIER) {
        throw new BadCsrError(`unsupported key: EC key with explicit curve parameters, ${USE_SUPPORTED_KEY}`);
      }
      const oid = inside("EC key parameters", () => readOid(der, parameters, "the curve"));
      throw new BadCsrError(`unsupported key: ${REFUSED_CURVE_NAMES.get(oid) ?? `EC curve ${oid}`}, ${USE_SUPPORTED_KEY}`);
    }
    const point = inside("public key", () => bitStringOctets(der, subjectPublicKey, "the public key"));
    // Compressed points are legal in RFC 5480 but many TLS stacks (Go's among them) cannot parse them,
    // and the key goes into the certificate byte for byte.
    if (point[0] !== 0x04 || point.length !== curve.pointLength) {
      throw new BadCsrError(`the CSR's ${curve.name} public key must be an uncompressed point (starting 0x04)`);
    }
    const half = (curve.pointLength - 1) / 2;
    const notOnCurve = (cause: unknown): BadCsrError =>
      new BadCsrError(`the CSR's public key is not a valid point on ${curve.name}`, { cause });
    return {
      keyType: "ec",
      keyDescription: curve.name,
      importNow: () => {
        try {
          return createPublicKey({
            key: { kty: "EC", crv: curve.name, x: base64url(point.subarray(1, 1 + half)), y: base64url(point.subarray(1 + half)) },
            format: "jwk",
          });
        } catch (cause) {
          throw notOnCurve(cause);
        }
      },
      import: () =>
        webcrypto.subtle.importKey("raw", point, { name: "ECDSA", namedCurve: curve.name }, true, ["verify"]).then(
          (key) => KeyObject.from(key),
          (cause: unknown) => Promise.reject(notOnCurve(cause)),
        ),
    };
  }

  if (algorithmId === id_rsaEncryption) {
    // RFC 3279 §2.3.1: the parameters field MUST be NULL.
    if (!parameters || parameters.tag !== TAG.NULL || parameters.end !== parameters.contentStart) {
      throw new BadCsrError("the CSR's RSA key has malformed algorithm parameters (NULL is required)");
    }
    const { modulus, exponent } = inside("RSA public key", () => {
      const octets = bitStringOctets(der, subjectPublicKey, "the public key");
      const offset = octets.byteOffset - der.byteOffset;
      const key = expectTlv(der, offset, offset + octets.length, TAG.SEQUENCE, "the RSA public key");
      if (key.end !== offset + octets.length) throw new DerLayoutError("the RSA public key has trailing bytes");
      const [n, e, ...more] = children(der, key);
      if (!n || !e || more.length > 0) throw new DerLayoutError("the RSA public key is not (modulus, exponent)");
      return { modulus: unsignedInteger(der, n, "the modulus"), exponent: unsignedInteger(der, e, "the exponent") };
    });
    const bits = modulus.length * 8 - Math.clz32(modulus[0] as number) + 24;
    const description = `RSA-${bits}`;
    if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
      throw new BadCsrError(`unsupported key: ${description}, ${USE_SUPPORTED_KEY}`);
    }
    if (bits % 8 !== 0) {
      throw new BadCsrError(`unsupported key: ${description} (modulus size must be a multiple of 8), ${USE_SUPPORTED_KEY}`);
    }
    const exponentValue = BigInt(`0x${exponent.toString("hex") || "0"}`);
    if (exponentValue !== RSA_EXPONENT) {
      throw new BadCsrError(
        `unsupported key: ${description} with public exponent ${exponentValue} (only 65537 is accepted), ${USE_SUPPORTED_KEY}`,
      );
    }
    const importNow = (): KeyObject => {
      try {
        return createPublicKey({ key: { kty: "RSA", n: base64url(modulus), e: base64url(exponent) }, format: "jwk" });
      } catch (cause) {
        throw new BadCsrError("the CSR's RSA public key is malformed", { cause });
      }
    };
    return { keyType: "rsa", keyDescription: description, importNow, import: async () => importNow() };
  }

  const name = REFUSED_KEY_ALGORITHMS.get(algorithmId) ?? `key algorithm ${algorithmId}`;
  throw new BadCsrError(`unsupported key: ${name}, ${USE_SUPPORTED_KEY}`);
}

/** The signature algorithm, if it is one we accept and it fits the key. */
function checkSignatureAlgorithm(der: Buffer, element: Tlv, keyType: "ec" | "rsa"): SignatureAlgorithm {
  const [oidElement, parameters, ...extra] = inside("signature algorithm", () => children(der, element));
  if (!oidElement || extra.length > 0) throw new BadCsrError("the CSR's signature algorithm is malformed");
  const algorithm = inside("signature algorithm", () => readOid(der, oidElement, "the signature algorithm"));
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
  const isNull = parameters !== undefined && parameters.tag === TAG.NULL && parameters.end === parameters.contentStart;
  const parametersOk = accepted.keyType === "ec" ? parameters === undefined : parameters === undefined || isNull;
  if (!parametersOk) {
    throw new BadCsrError(`the CSR's signature algorithm ${accepted.name} has malformed parameters`);
  }
  if (accepted.keyType !== keyType) {
    throw new BadCsrError(`the CSR is signed with ${accepted.name}, which does not match its ${keyType.toUpperCase()} key`);
  }
  return accepted;
}

/** The subjectAltName extension's value (a GeneralNames SEQUENCE), from the extensionRequest attribute. */
function requestedSubjectAltName(der: Buffer, attributes: Tlv): Tlv | undefined {
  const requests = inside("attributes", () => {
    const all = children(der, attributes);
    assertSortedSet(der, all, "the attribute set");
    return all.filter((attribute) => {
      if (attribute.tag !== TAG.SEQUENCE) throw new DerLayoutError("an attribute is not a SEQUENCE");
      const type = readTlv(der, attribute.contentStart, attribute.end);
      return readOid(der, type, "an attribute type") === ID_EXTENSION_REQUEST;
    });
  });
  if (requests.length === 0) return undefined;
  if (requests.length > 1) throw new BadCsrError("the CSR has more than one extensionRequest attribute");
  const request = requests[0] as Tlv;
  const extensions = inside("extensionRequest attribute", () => {
    const [, values, ...extra] = children(der, request);
    if (!values || values.tag !== TAG.SET || extra.length > 0) throw new DerLayoutError("the attribute has no value set");
    return values;
  });
  const values = inside("extensionRequest attribute", () => children(der, extensions));
  if (values.length !== 1) throw new BadCsrError("the CSR's extensionRequest attribute must hold exactly one value");
  const sans = inside("extensionRequest attribute", () => {
    const list = values[0] as Tlv;
    if (list.tag !== TAG.SEQUENCE) throw new DerLayoutError("the extensions are not a SEQUENCE");
    const found: Tlv[] = [];
    for (const extension of children(der, list)) {
      if (extension.tag !== TAG.SEQUENCE) throw new DerLayoutError("an extension is not a SEQUENCE");
      const parts = children(der, extension);
      const [id, second, third, ...more] = parts;
      if (!id || !second || more.length > 0) throw new DerLayoutError("an extension is malformed");
      const value = third ?? second;
      if (third) {
        // DER: a BOOLEAN is one octet, TRUE is 0xFF, and FALSE (the default) is left out.
        if (second.tag !== TAG.BOOLEAN || second.end - second.contentStart !== 1 || der[second.contentStart] !== 0xff) {
          throw new DerLayoutError("an extension's critical flag is not DER");
        }
      }
      if (value.tag !== TAG.OCTET_STRING) throw new DerLayoutError("an extension value is not an OCTET STRING");
      if (readOid(der, id, "an extension id") === id_ce_subjectAltName) found.push(value);
    }
    return found;
  });
  if (sans.length === 0) return undefined;
  if (sans.length > 1) throw new BadCsrError("the CSR requests more than one subjectAltName extension");
  return inside("subjectAltName extension", () => {
    const wrapper = sans[0] as Tlv;
    const names = expectTlv(der, wrapper.contentStart, wrapper.end, TAG.SEQUENCE, "the subjectAltName");
    if (names.end !== wrapper.end) throw new DerLayoutError("the subjectAltName has trailing bytes");
    return names;
  });
}

/** GeneralName tags (RFC 5280 §4.2.1.6) other than URI and DNS name, with how a refusal names them. */
const REFUSED_GENERAL_NAMES = new Map<number, string>([
  [0xa0, "an otherName SAN"],
  [0x81, "an email address SAN (rfc822Name)"],
  [0xa3, "an x400Address SAN"],
  [0xa4, "a directoryName SAN"],
  [0xa5, "an ediPartyName SAN"],
  [0x87, "an IP address SAN (iPAddress)"],
  [0x88, "a registeredID SAN"],
]);

/** The SPIFFE ID and DNS names the CSR asks for, each checked against the identity rules. */
function checkNames(der: Buffer, attributes: Tlv): { spiffeId: string; dnsNames: string[] } {
  const san = requestedSubjectAltName(der, attributes);
  const uris: string[] = [];
  const rawDnsNames: string[] = [];
  for (const name of san ? inside("subjectAltName extension", () => children(der, san)) : []) {
    if (name.tag === 0x86) {
      uris.push(ia5(der, name));
    } else if (name.tag === 0x82) {
      rawDnsNames.push(ia5(der, name));
    } else {
      const type = REFUSED_GENERAL_NAMES.get(name.tag) ?? "a SAN of an unknown type";
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
function readCsr(pem: string, options?: ParseCsrOptions): { proof: ProofOfPossession; complete: (publicKey: KeyObject) => ParsedCsr } {
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

  // Step 4: walk the structure by hand. Every element is checked for DER framing on the way, so nothing is
  // re-encoded: we verify and certify exactly the bytes that were signed, and two encodings of one request
  // cannot both pass.
  let cri: Tlv;
  let spki: Tlv;
  let attributes: Tlv;
  let signatureAlgorithmElement: Tlv;
  let signatureElement: Tlv;
  try {
    const [info, algorithm, signature, ...extra] = children(der, outer);
    if (!info || !algorithm || !signature || extra.length > 0) {
      throw new DerLayoutError("it is not (certificationRequestInfo, signatureAlgorithm, signature)");
    }
    if (info.tag !== TAG.SEQUENCE || algorithm.tag !== TAG.SEQUENCE) throw new DerLayoutError("it has the wrong structure");
    cri = info;
    signatureAlgorithmElement = algorithm;
    signatureElement = signature;
    const version = expectTlv(der, cri.contentStart, cri.end, TAG.INTEGER, "the version");
    const subject = expectTlv(der, version.end, cri.end, TAG.SEQUENCE, "the subject");
    children(der, subject);
    spki = expectTlv(der, subject.end, cri.end, TAG.SEQUENCE, "the public key");
    if (spki.end === cri.end) {
      throw new DerLayoutError("it has no attributes field ([0]), which PKCS#10 requires even when empty");
    }
    attributes = expectTlv(der, spki.end, cri.end, TAG_ATTRIBUTES, "the attributes");
    if (attributes.end !== cri.end) throw new DerLayoutError("it has bytes after the attributes");
    unsignedIntegerOrNotDer(der, version);
    // RFC 2986 §4.1: v1 is the only version, encoded as 0.
    if (version.end - version.contentStart !== 1 || der[version.contentStart] !== 0) {
      const value = version.end - version.contentStart === 1 ? String(der[version.contentStart]) : "not 0";
      throw new BadCsrError(`the CSR's version field is ${value}: the only PKCS#10 version is v1, encoded as 0`);
    }
  } catch (cause) {
    if (!(cause instanceof DerLayoutError)) throw cause;
    if (cause instanceof NotDerError) throw new BadCsrError(`the CSR is not DER-encoded: ${cause.message}`, { cause });
    if (cause.message.includes("attributes field")) {
      throw new BadCsrError(`the CSR is not a valid DER certificate request: ${cause.message}`, { cause });
    }
    throw new BadCsrError(`the CSR cannot be parsed as a PKCS#10 certificate request: ${cause.message}`, { cause });
  }

  // Step 5: key, then the signature algorithm; proof of possession is the caller's next step.
  const key = checkPublicKey(der, spki);
  const { keyType, keyDescription } = key;
  const signatureAlgorithm = checkSignatureAlgorithm(der, signatureAlgorithmElement, keyType);
  const signatureValue = inside("signature", () => bitStringOctets(der, signatureElement, "the signature"));
  return {
    proof: { hash: signatureAlgorithm.hash, signedBytes: der.subarray(cri.start, cri.end), key, signatureValue },
    // Step 6: the names, only once the request is known to be authentic.
    complete: (publicKey: KeyObject) => {
      const { spiffeId, dnsNames } = checkNames(der, attributes);
      return Object.freeze({
        der,
        subjectPublicKeyInfo: der.subarray(spki.start, spki.end),
        keyType,
        keyDescription,
        publicKey,
        spiffeId,
        dnsNames: Object.freeze(dnsNames),
      });
    },
  };
}

const POSSESSION_REFUSED = "the CSR's signature does not verify: it must be signed by the key it carries";

/**
 * Parses a workload CSR and checks everything about it that does not depend on who sends it (see
 * `readCsr`), verifying the proof of possession on the calling thread.
 */
export function parseCsr(pem: string, options?: ParseCsrOptions): ParsedCsr {
  const { proof, complete } = readCsr(pem, options);
  const publicKey = proof.key.importNow();
  let valid: boolean;
  try {
    valid = verify(proof.hash, proof.signedBytes, publicKey, proof.signatureValue);
  } catch (cause) {
    throw new BadCsrError(POSSESSION_REFUSED, { cause });
  }
  if (!valid) throw new BadCsrError(POSSESSION_REFUSED);
  return complete(publicKey);
}

/**
 * `parseCsr` with the signature verified on libuv's thread pool, so that the event loop keeps serving
 * while OpenSSL does the one expensive step (the same checks, the same errors).
 */
export async function parseCsrOffThread(pem: string, options?: ParseCsrOptions): Promise<ParsedCsr> {
  const { proof, complete } = readCsr(pem, options);
  const publicKey = await proof.key.import();
  const valid = await new Promise<boolean>((resolve, reject) => {
    verify(proof.hash, proof.signedBytes, publicKey, proof.signatureValue, (error, result) => {
      if (error) reject(new BadCsrError(POSSESSION_REFUSED, { cause: error }));
      else resolve(result);
    });
  });
  if (!valid) throw new BadCsrError(POSSESSION_REFUSED);
  return complete(publicKey);
}
