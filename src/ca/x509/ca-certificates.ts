/**
 * Slow-path X.509 builders for the rare structures: CA certificates (root and intermediate), the
 * intermediate's PKCS#10 request, Names, and a parser for CA certificates loaded from storage.
 *
 * These use the @peculiar/asn1-x509 schema classes: they run a handful of times per CA lifetime, so clarity
 * beats speed. The hot-path leaf template lives in `workload-template.ts`.
 */
import * as nodeCrypto from "node:crypto";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import {
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  AuthorityKeyIdentifier,
  BasicConstraints,
  CRLDistributionPoints,
  Certificate,
  DistributionPoint,
  DistributionPointName,
  Extension,
  Extensions,
  GeneralName,
  GeneralSubtree,
  GeneralSubtrees,
  KeyIdentifier,
  KeyUsage,
  KeyUsageFlags,
  Name,
  NameConstraints,
  RelativeDistinguishedName,
  SubjectKeyIdentifier,
  SubjectPublicKeyInfo,
  TBSCertificate,
  Validity,
  Version,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_cRLDistributionPoints,
  id_ce_keyUsage,
  id_ce_nameConstraints,
  id_ce_subjectKeyIdentifier,
} from "@peculiar/asn1-x509";
import { Attributes, CertificationRequestInfo } from "@peculiar/asn1-csr";
import type { SignatureAlgorithmName } from "../../signer/signer.js";
import { signatureAlgorithmIdentifier } from "./algorithms.js";
import { TAG, assertIa5, decodeOidContent, oidContent, readTlv, timeSize, unsignedIntegerContent } from "./der.js";

// ---------------------------------------------------------------------------------------------------------
// SubjectPublicKeyInfo and key identifiers (shared with the workload template)
// ---------------------------------------------------------------------------------------------------------

const ID_EC_PUBLIC_KEY = oidContent("1.2.840.10045.2.1"); // RFC 5480 §2.1.1
const RSA_ENCRYPTION = oidContent("1.2.840.113549.1.1.1"); // RFC 3279 §2.3.1

/** The parts of a SubjectPublicKeyInfo the CA needs, located without copying. */
export interface SubjectPublicKeyInfoParts {
  /** "ec" for id-ecPublicKey, "rsa" for rsaEncryption, `undefined` for any other algorithm. */
  readonly keyType: "ec" | "rsa" | undefined;
  /** Value of the subjectPublicKey BIT STRING without its unused-bits octet (a view into the input). */
  readonly subjectPublicKey: Buffer;
}

/**
 * Locates the algorithm and the subjectPublicKey BIT STRING in a DER SubjectPublicKeyInfo (RFC 5280
 * §4.1.2.7) with a strict DER walk, no ASN.1 object model: it sits on the issuance hot path.
 * Throws `TypeError` when the bytes are not exactly one well-formed SubjectPublicKeyInfo.
 */
export function inspectSubjectPublicKeyInfo(spki: Buffer): SubjectPublicKeyInfoParts {
  const outer = readTlv(spki, 0);
  if (outer.tag !== TAG.SEQUENCE || outer.end !== spki.length) {
    throw new TypeError("subjectPublicKeyInfo must be exactly one DER SEQUENCE");
  }
  const algorithm = readTlv(spki, outer.contentStart, outer.end);
  if (algorithm.tag !== TAG.SEQUENCE) throw new TypeError("subjectPublicKeyInfo: algorithm is not a SEQUENCE");
  const algorithmOid = readTlv(spki, algorithm.contentStart, algorithm.end);
  if (algorithmOid.tag !== TAG.OBJECT_IDENTIFIER) {
    throw new TypeError("subjectPublicKeyInfo: algorithm does not start with an OBJECT IDENTIFIER");
  }
  const bits = readTlv(spki, algorithm.end, outer.end);
  if (bits.tag !== TAG.BIT_STRING || bits.end !== outer.end || bits.end - bits.contentStart < 2) {
    throw new TypeError("subjectPublicKeyInfo: subjectPublicKey is not the final, non-empty BIT STRING");
  }
  // Keys are whole octets; a non-zero unused-bit count means the SPKI is not what it claims to be.
  if (spki[bits.contentStart] !== 0) throw new TypeError("subjectPublicKeyInfo: subjectPublicKey has unused bits");
  const oid = spki.subarray(algorithmOid.contentStart, algorithmOid.end);
  const keyType = oid.equals(ID_EC_PUBLIC_KEY) ? "ec" : oid.equals(RSA_ENCRYPTION) ? "rsa" : undefined;
  return { keyType, subjectPublicKey: spki.subarray(bits.contentStart + 1, bits.end) };
}

/**
 * KeyIdentifier for the SubjectKeyIdentifier extension by RFC 5280 §4.2.1.2 method (1): the SHA-1 of the
 * value of the subjectPublicKey BIT STRING (without tag, length and unused-bits octet). The same value
 * goes into the AuthorityKeyIdentifier of everything the key signs.
 */
export function subjectKeyIdentifier(spki: Buffer): Buffer {
  return keyIdentifier(inspectSubjectPublicKeyInfo(spki).subjectPublicKey);
}

/**
 * RFC 5280 §4.2.1.2 method (1) from an already located subjectPublicKey value (see
 * `inspectSubjectPublicKeyInfo`): its SHA-1.
 */
export function keyIdentifier(subjectPublicKey: Uint8Array): Buffer {
  return sha1(subjectPublicKey);
}

// One-shot crypto.hash (Node 20.12+) saves about a third of the cost of createHash on a 65-octet key,
// and this runs once per issued certificate; older Node 20 releases fall back to createHash.
const sha1: (data: Uint8Array) => Buffer =
  typeof nodeCrypto.hash === "function"
    ? (data) => nodeCrypto.hash("sha1", data, "buffer")
    : (data) => nodeCrypto.createHash("sha1").update(data).digest();

// ---------------------------------------------------------------------------------------------------------
// Serial numbers
// ---------------------------------------------------------------------------------------------------------

/**
 * INTEGER content octets of a CertificateSerialNumber (RFC 5280 §4.1.2.2) given as unsigned big-endian
 * bytes. Throws `RangeError` unless the value is positive and encodes in at most 20 octets, as RFC 5280
 * requires of conforming CAs.
 */
export function serialNumberContent(serialNumber: Uint8Array): Buffer {
  const content = unsignedIntegerContent(serialNumber);
  if (content.length === 1 && content[0] === 0) throw new RangeError("serialNumber must be positive, not zero");
  if (content.length > 20) {
    throw new RangeError(`serialNumber encodes in ${content.length} octets; RFC 5280 allows at most 20`);
  }
  return content;
}

/**
 * The canonical text form of a serial number (lower-case hex without separators): the minimal
 * unsigned big-endian value, so it is the same whether it was read from a certificate or taken from the
 * bytes the serial generator produced. Note that a leading 0x00 octet of generated bytes disappears.
 */
export function serialNumberHex(serialNumber: Uint8Array): string {
  const content = unsignedIntegerContent(serialNumber);
  return (content.length > 1 && content[0] === 0 ? content.subarray(1) : content).toString("hex");
}

// ---------------------------------------------------------------------------------------------------------
// URLs
// ---------------------------------------------------------------------------------------------------------

/**
 * Throws `TypeError` naming `field` unless `url` is an absolute http(s) URL in IA5 characters, the form
 * RFC 5280 §4.2.1.13 and §4.2.2.1 expect in CRL distribution points and authority information access.
 */
export function assertHttpUrl(url: string, field: string): void {
  assertIa5(url, field);
  if (!/^https?:\/\/[^/?#\s]+/.test(url)) throw new TypeError(`${field} must be an absolute http(s) URL`);
}

// ---------------------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------------------

/** Attributes of a CA's distinguished name. */
export interface NameAttributes {
  readonly commonName: string;
  readonly organization?: string;
  readonly organizationalUnit?: string;
  /** ISO 3166 alpha-2 code, upper case. */
  readonly country?: string;
}

const ID_AT_COUNTRY_NAME = "2.5.4.6";
const ID_AT_ORGANIZATION_NAME = "2.5.4.10";
const ID_AT_ORGANIZATIONAL_UNIT_NAME = "2.5.4.11";
const ID_AT_COMMON_NAME = "2.5.4.3";
// Upper bounds from RFC 5280 Appendix A.1 (ub-common-name, ub-organization-name, ub-organizational-unit-name).
const UB_NAME_ATTRIBUTE = 64;

/**
 * DER `Name` (RFC 5280 §4.1.2.4): one RDN per attribute in the order C, O, OU, CN. CN, O and OU are
 * UTF8String (§4.1.2.6 asks for UTF8String in new certificates); C is PrintableString (X.520).
 * Throws `TypeError` naming the attribute when one is empty, too long, or (for C) not two capital letters.
 *
 * @example
 * const subjectNameDer = buildName({ commonName: "Anchorage Root CA", organization: "Anchorage" });
 */
export function buildName(attributes: NameAttributes): Buffer {
  const rdns: RelativeDistinguishedName[] = [];
  const add = (type: string, value: AttributeValue): void => {
    rdns.push(new RelativeDistinguishedName([new AttributeTypeAndValue({ type, value })]));
  };
  if (attributes.country !== undefined) {
    if (!/^[A-Z]{2}$/.test(attributes.country)) {
      throw new TypeError("country must be an ISO 3166 alpha-2 code in capital letters");
    }
    add(ID_AT_COUNTRY_NAME, new AttributeValue({ printableString: attributes.country }));
  }
  const text = (field: keyof NameAttributes, value: string | undefined, type: string): void => {
    if (value === undefined) return;
    const characters = [...value].length;
    if (characters === 0 || characters > UB_NAME_ATTRIBUTE || value.trim() !== value) {
      throw new TypeError(`${field} must be 1 to ${UB_NAME_ATTRIBUTE} characters without surrounding spaces`);
    }
    add(type, new AttributeValue({ utf8String: value }));
  };
  text("organization", attributes.organization, ID_AT_ORGANIZATION_NAME);
  text("organizationalUnit", attributes.organizationalUnit, ID_AT_ORGANIZATIONAL_UNIT_NAME);
  if (attributes.commonName === undefined) throw new TypeError("commonName is required");
  text("commonName", attributes.commonName, ID_AT_COMMON_NAME);
  return Buffer.from(AsnConvert.serialize(new Name(rdns)));
}

// ---------------------------------------------------------------------------------------------------------
// CA certificates
// ---------------------------------------------------------------------------------------------------------

/** Inputs common to every CA TBSCertificate. */
export interface CaTbsFields {
  /** DER Name of the CA being certified (see `buildName`). */
  readonly subjectNameDer: Buffer;
  /** DER SubjectPublicKeyInfo of the CA key, as the signer reports it. */
  readonly subjectPublicKeyInfo: Buffer;
  /** Unsigned big-endian serial number; positive, at most 20 octets once encoded. */
  readonly serialNumber: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The algorithm the issuing key signs with (for a root: its own key). */
  readonly signatureAlgorithm: SignatureAlgorithmName;
}

/** Inputs of an intermediate CA TBSCertificate. */
export interface IntermediateTbsFields extends CaTbsFields {
  /** DER Name of the issuing CA, byte for byte as in its certificate's subject. */
  readonly issuerNameDer: Buffer;
  /** SubjectKeyIdentifier of the issuing CA, copied into the AuthorityKeyIdentifier. */
  readonly issuerSubjectKeyIdentifier: Buffer;
  /** basicConstraints pathLenConstraint; 0 (the default) means it may issue end-entity certificates only. */
  readonly pathLenConstraint?: number;
  /**
   * Permitted subtrees (RFC 5280 §4.2.1.10). URI constraints name a host ("anchorage.test": exactly that
   * host, which is what a SPIFFE trust domain needs) or a domain (".anchorage.test": hosts below it).
   * DNS constraints ("anchorage.test") permit that name and every name below it.
   */
  readonly nameConstraints?: {
    readonly permittedUris?: readonly string[];
    readonly permittedDnsNames?: readonly string[];
  };
  /** URL of the CRL that will list this intermediate if it is revoked (the root's CRL). */
  readonly crlDistributionPointUrl?: string;
}

/**
 * DER TBSCertificate (RFC 5280 §4.1) of a self-signed root CA: v3; issuer = subject; basicConstraints
 * critical cA TRUE without pathLenConstraint; keyUsage critical keyCertSign + cRLSign; SubjectKeyIdentifier
 * (method 1); AuthorityKeyIdentifier whose keyIdentifier is that same SKI (§4.2.1.1 allows it for
 * self-signed certificates, and path builders that insist on an AKI accept it).
 */
export function buildRootTbs(fields: CaTbsFields): Buffer {
  const ski = subjectKeyIdentifier(fields.subjectPublicKeyInfo);
  return buildCaTbs(fields, fields.subjectNameDer, [
    extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: true })),
    extension(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign)),
    extension(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(ski)),
    extension(id_ce_authorityKeyIdentifier, false, authorityKeyIdentifier(ski)),
  ]);
}

/**
 * DER TBSCertificate (RFC 5280 §4.1) of an intermediate CA signed by `issuerNameDer`'s key: v3;
 * basicConstraints critical cA TRUE with pathLenConstraint (default 0); keyUsage critical keyCertSign +
 * cRLSign + digitalSignature (so the CA could sign OCSP responses itself if ever needed); nameConstraints
 * critical when given (permitted subtrees only); SubjectKeyIdentifier (method 1); AuthorityKeyIdentifier
 * keyIdentifier; and a cRLDistributionPoints fullName URI when `crlDistributionPointUrl` is set.
 *
 * @example
 * const tbs = buildIntermediateTbs({ ...fields, issuerNameDer: root.subjectNameDer,
 *   issuerSubjectKeyIdentifier: root.subjectKeyIdentifier, nameConstraints: { permittedUris: ["anchorage.test"] } });
 */
export function buildIntermediateTbs(fields: IntermediateTbsFields): Buffer {
  const pathLenConstraint = fields.pathLenConstraint ?? 0;
  if (!Number.isSafeInteger(pathLenConstraint) || pathLenConstraint < 0) {
    throw new RangeError("pathLenConstraint must be a non-negative integer");
  }
  if (fields.issuerSubjectKeyIdentifier.length === 0) throw new TypeError("issuerSubjectKeyIdentifier is empty");
  const extensions = [
    extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: true, pathLenConstraint })),
    extension(
      id_ce_keyUsage,
      true,
      new KeyUsage(KeyUsageFlags.digitalSignature | KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign),
    ),
  ];
  if (fields.nameConstraints !== undefined) {
    extensions.push(extension(id_ce_nameConstraints, true, nameConstraints(fields.nameConstraints)));
  }
  extensions.push(
    extension(
      id_ce_subjectKeyIdentifier,
      false,
      new SubjectKeyIdentifier(subjectKeyIdentifier(fields.subjectPublicKeyInfo)),
    ),
    extension(id_ce_authorityKeyIdentifier, false, authorityKeyIdentifier(fields.issuerSubjectKeyIdentifier)),
  );
  if (fields.crlDistributionPointUrl !== undefined) {
    extensions.push(
      extension(id_ce_cRLDistributionPoints, false, crlDistributionPoints(fields.crlDistributionPointUrl)),
    );
  }
  return buildCaTbs(fields, fields.issuerNameDer, extensions);
}

/**
 * DER CertificationRequestInfo (RFC 2986 §4.1) for the intermediate's CSR: version 0, subject, the key,
 * and an empty attributes [0] set (the root ceremony decides every extension, so the CSR requests none).
 */
export function buildCertificationRequestInfo(fields: {
  readonly subjectNameDer: Buffer;
  readonly subjectPublicKeyInfo: Buffer;
}): Buffer {
  const info = new CertificationRequestInfo({
    version: 0,
    subject: parseCanonical(fields.subjectNameDer, Name, "subjectNameDer"),
    subjectPKInfo: parseCanonical(fields.subjectPublicKeyInfo, SubjectPublicKeyInfo, "subjectPublicKeyInfo"),
    attributes: new Attributes(),
  });
  return Buffer.from(AsnConvert.serialize(info));
}

// ---------------------------------------------------------------------------------------------------------
// Parsing CA certificates from storage
// ---------------------------------------------------------------------------------------------------------

/** What the CA needs to know about a certificate it loads (see `certificateFields`). */
export interface CertificateFields {
  /** The subject Name, byte for byte as in the certificate (what leaves must carry as issuer). */
  readonly subjectNameDer: Buffer;
  readonly issuerNameDer: Buffer;
  readonly subjectPublicKeyInfo: Buffer;
  /** Value of the SubjectKeyIdentifier extension, or the method (1) key identifier when it is absent. */
  readonly subjectKeyIdentifier: Buffer;
  /** Lower-case hex of the unsigned serial number (see `serialNumberHex`). */
  readonly serialNumberHex: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The signed TBSCertificate, byte for byte. */
  readonly tbsDer: Buffer;
  /** Dotted OID of the outer signatureAlgorithm. */
  readonly signatureAlgorithmOid: string;
  /** The signatureValue BIT STRING content without its unused-bits octet. */
  readonly signatureValue: Buffer;
}

/**
 * Reads the fields of a DER Certificate (RFC 5280 §4.1) that loading a CA certificate from storage needs.
 * Names, SPKI and TBS are returned as the exact bytes of the input, never re-encoded, so that what we
 * put into issued certificates matches the stored certificate byte for byte. Throws `TypeError` on input
 * that is not exactly one well-formed DER certificate.
 */
export function certificateFields(der: Buffer): CertificateFields {
  const outer = readTlv(der, 0);
  if (outer.tag !== TAG.SEQUENCE || outer.end !== der.length) {
    throw new TypeError("certificate must be exactly one DER SEQUENCE");
  }
  const tbs = readTlv(der, outer.contentStart, outer.end);
  if (tbs.tag !== TAG.SEQUENCE) throw new TypeError("certificate: tbsCertificate is not a SEQUENCE");

  // TBSCertificate: [0] version, serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
  let element = readTlv(der, tbs.contentStart, tbs.end);
  if (element.tag === 0xa0) element = readTlv(der, element.end, tbs.end);
  const serial = element;
  if (serial.tag !== TAG.INTEGER) throw new TypeError("certificate: serialNumber is not an INTEGER");
  const signature = readTlv(der, serial.end, tbs.end);
  const issuer = readTlv(der, signature.end, tbs.end);
  const validity = readTlv(der, issuer.end, tbs.end);
  const subject = readTlv(der, validity.end, tbs.end);
  const spki = readTlv(der, subject.end, tbs.end);
  const sequences = { signature, issuer, validity, subject, subjectPublicKeyInfo: spki };
  for (const [name, part] of Object.entries(sequences)) {
    if (part.tag !== TAG.SEQUENCE) throw new TypeError(`certificate: ${name} is not a SEQUENCE`);
  }

  let certificate: Certificate;
  try {
    certificate = AsnConvert.parse(der, Certificate);
  } catch (cause) {
    throw new TypeError("certificate does not match the X.509 Certificate schema", { cause });
  }
  const subjectPublicKeyInfo = Buffer.from(der.subarray(spki.start, spki.end));
  const skiExtension = certificate.tbsCertificate.extensions?.find((e) => e.extnID === id_ce_subjectKeyIdentifier);
  const ski = skiExtension
    ? Buffer.from(AsnConvert.parse(skiExtension.extnValue.buffer, SubjectKeyIdentifier).buffer)
    : subjectKeyIdentifier(subjectPublicKeyInfo);
  const signatureAlgorithm = readTlv(der, tbs.end, outer.end);
  const signatureAlgorithmOid = readTlv(der, signatureAlgorithm.contentStart, signatureAlgorithm.end);
  const signatureBits = readTlv(der, signatureAlgorithm.end, outer.end);
  if (signatureAlgorithmOid.tag !== TAG.OBJECT_IDENTIFIER || signatureBits.tag !== TAG.BIT_STRING) {
    throw new TypeError("certificate: malformed signatureAlgorithm or signatureValue");
  }
  return {
    subjectNameDer: Buffer.from(der.subarray(subject.start, subject.end)),
    issuerNameDer: Buffer.from(der.subarray(issuer.start, issuer.end)),
    subjectPublicKeyInfo,
    subjectKeyIdentifier: ski,
    serialNumberHex: serialNumberHex(der.subarray(serial.contentStart, serial.end)),
    notBefore: certificate.tbsCertificate.validity.notBefore.getTime(),
    notAfter: certificate.tbsCertificate.validity.notAfter.getTime(),
    tbsDer: Buffer.from(der.subarray(tbs.start, tbs.end)),
    signatureAlgorithmOid: decodeOidContent(
      der.subarray(signatureAlgorithmOid.contentStart, signatureAlgorithmOid.end),
    ),
    signatureValue: Buffer.from(der.subarray(signatureBits.contentStart + 1, signatureBits.end)),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------------------------

function buildCaTbs(fields: CaTbsFields, issuerNameDer: Buffer, extensions: Extension[]): Buffer {
  // timeSize validates the Date and the 1950-9999 range that asn1-x509's Time silently gets wrong.
  timeSize(fields.notBefore);
  timeSize(fields.notAfter);
  if (fields.notAfter.getTime() <= fields.notBefore.getTime()) throw new RangeError("notAfter must be after notBefore");
  const serial = serialNumberContent(fields.serialNumber);
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: toArrayBuffer(serial),
    signature: AsnConvert.parse(signatureAlgorithmIdentifier(fields.signatureAlgorithm), AlgorithmIdentifier),
    issuer: parseCanonical(issuerNameDer, Name, "issuerNameDer"),
    validity: new Validity({ notBefore: fields.notBefore, notAfter: fields.notAfter }),
    subject: parseCanonical(fields.subjectNameDer, Name, "subjectNameDer"),
    subjectPublicKeyInfo: parseCanonical(fields.subjectPublicKeyInfo, SubjectPublicKeyInfo, "subjectPublicKeyInfo"),
    extensions: new Extensions(extensions),
  });
  return Buffer.from(AsnConvert.serialize(tbs));
}

/**
 * Parses `der` into a schema object and insists that re-encoding gives back the same bytes: the schema
 * classes re-encode rather than copy, and a Name or key that changed on the way would break chaining.
 */
function parseCanonical<T>(der: Buffer, target: new () => T, field: string): T {
  let value: T;
  try {
    value = AsnConvert.parse(der, target);
  } catch (cause) {
    throw new TypeError(`${field} is not valid DER`, { cause });
  }
  if (!Buffer.from(AsnConvert.serialize(value)).equals(der)) {
    throw new TypeError(`${field} is not in canonical DER form`);
  }
  return value;
}

function extension(extnID: string, critical: boolean, value: object): Extension {
  return new Extension({ extnID, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

function authorityKeyIdentifier(keyIdentifier: Buffer): AuthorityKeyIdentifier {
  return new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(keyIdentifier) });
}

function crlDistributionPoints(url: string): CRLDistributionPoints {
  assertHttpUrl(url, "crlDistributionPointUrl");
  return new CRLDistributionPoints([
    new DistributionPoint({
      distributionPoint: new DistributionPointName({ fullName: [new GeneralName({ uniformResourceIdentifier: url })] }),
    }),
  ]);
}

// A host or domain name, optionally with a leading dot (RFC 5280 §4.2.1.10 URI and DNS constraint forms).
const CONSTRAINT_NAME = /^\.?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

function nameConstraints(constraints: NonNullable<IntermediateTbsFields["nameConstraints"]>): NameConstraints {
  const subtrees: GeneralSubtree[] = [];
  for (const uri of constraints.permittedUris ?? []) {
    if (!CONSTRAINT_NAME.test(uri)) {
      throw new TypeError(`nameConstraints.permittedUris: "${uri}" must be a host or .domain, without scheme or path`);
    }
    subtrees.push(new GeneralSubtree({ base: new GeneralName({ uniformResourceIdentifier: uri }) }));
  }
  for (const dns of constraints.permittedDnsNames ?? []) {
    if (!CONSTRAINT_NAME.test(dns)) {
      throw new TypeError(`nameConstraints.permittedDnsNames: "${dns}" is not a DNS name`);
    }
    subtrees.push(new GeneralSubtree({ base: new GeneralName({ dNSName: dns }) }));
  }
  // RFC 5280 §4.2.1.10: the extension MUST NOT be an empty sequence.
  if (subtrees.length === 0) throw new TypeError("nameConstraints needs at least one permitted URI or DNS name");
  return new NameConstraints({ permittedSubtrees: new GeneralSubtrees(subtrees) });
}


function toArrayBuffer(bytes: Buffer): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}
