/**
 * The hot-path builder of workload (X.509-SVID) TBSCertificates.
 *
 * Every leaf an intermediate signs shares most of its bytes: version, signature algorithm, issuer,
 * basicConstraints, keyUsage (one of two), EKU, AKI, CRL distribution point and AIA. The template encodes
 * those once per issuer and, per certificate, only writes the serial, validity, key, SKI and SAN into a
 * single pre-sized buffer. A generic ASN.1 object model spends most of its time building and walking
 * objects for constant data, which is why `@peculiar/x509` tops out far below the issuance target.
 */
import type { SignatureAlgorithmName } from "../../signer/signer.js";
import { signatureAlgorithmIdentifier } from "./algorithms.js";
import { assertHttpUrl, inspectSubjectPublicKeyInfo, keyIdentifier, serialNumberContent } from "./ca-certificates.js";
import {
  TAG,
  assertIa5,
  boolean,
  contextExplicit,
  contextImplicit,
  namedBitString,
  octetString,
  oid,
  readTlv,
  sequence,
  tlvSize,
  timeSize,
  writeHeader,
  writeTime,
} from "./der.js";

/** The issuing CA's constant inputs, fixed for the template's lifetime. */
export interface WorkloadIssuer {
  /** DER Name of the issuing CA, byte for byte as the subject of its certificate. */
  readonly issuerNameDer: Buffer;
  /** SubjectKeyIdentifier of the issuing CA, copied into every AuthorityKeyIdentifier. */
  readonly issuerSubjectKeyIdentifier: Buffer;
  /** The algorithm the issuing key signs with. */
  readonly signatureAlgorithm: SignatureAlgorithmName;
  /** Where this issuer's CRL is published (cRLDistributionPoints fullName URI). */
  readonly crlDistributionPointUrl: string;
  /** OCSP responder URL (AIA id-ad-ocsp). */
  readonly ocspUrl: string;
  /** Where the issuer's certificate can be fetched (AIA id-ad-caIssuers). */
  readonly caIssuersUrl: string;
}

/** The per-certificate inputs of a workload certificate. */
export interface WorkloadCertificateFields {
  /** Unsigned big-endian serial number (16 CSPRNG octets; the high bit may be set). */
  readonly serialNumber: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** DER SubjectPublicKeyInfo exactly as received in the CSR. */
  readonly subjectPublicKeyInfo: Buffer;
  /** Must match the SPKI's algorithm; RSA keys also get keyEncipherment. */
  readonly keyType: "ec" | "rsa";
  /** The `spiffe://` ID; its syntax is the policy layer's job, the template only encodes it. */
  readonly spiffeId: string;
  readonly dnsNames: readonly string[];
  /**
   * iPAddress SANs (4 or 16 octets each), after the DNS names. Workload CSRs never get them (policy refuses
   * IP SANs); the service's own HTTPS certificate does, so clients can connect to its listen address.
   */
  readonly ipAddresses?: readonly Buffer[];
}

const OID_BASIC_CONSTRAINTS = "2.5.29.19";
const OID_KEY_USAGE = "2.5.29.15";
const OID_EXT_KEY_USAGE = "2.5.29.37";
const OID_SUBJECT_KEY_IDENTIFIER = "2.5.29.14";
const OID_AUTHORITY_KEY_IDENTIFIER = "2.5.29.35";
const OID_SUBJECT_ALT_NAME = "2.5.29.17";
const OID_CRL_DISTRIBUTION_POINTS = "2.5.29.31";
const OID_AUTHORITY_INFO_ACCESS = "1.3.6.1.5.5.7.1.1";
const OID_KP_SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const OID_KP_CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
const OID_AD_OCSP = "1.3.6.1.5.5.7.48.1";
const OID_AD_CA_ISSUERS = "1.3.6.1.5.5.7.48.2";

// KeyUsage named bits (RFC 5280 §4.2.1.3).
const DIGITAL_SIGNATURE = 0;
const KEY_ENCIPHERMENT = 2;

// GeneralName CHOICE tags (RFC 5280 §4.2.1.6, IMPLICIT): dNSName [2], uniformResourceIdentifier [6].
const GENERAL_NAME_DNS = 0x82;
const GENERAL_NAME_IP = 0x87;
const GENERAL_NAME_URI = 0x86;

const SHA1_LENGTH = 20;
const VERSION_V3 = Buffer.from([0xa0, 0x03, TAG.INTEGER, 0x01, 0x02]);
// The subject is empty: the identity is the URI SAN alone, as X.509-SVIDs do.
const EMPTY_NAME = Buffer.from([TAG.SEQUENCE, 0x00]);
// Extension { extnID subjectAltName, critical TRUE, extnValue ... }: RFC 5280 §4.2.1.6 requires the SAN to
// be critical when the subject is empty.
const SAN_EXTENSION_PREFIX = Buffer.concat([oid(OID_SUBJECT_ALT_NAME), boolean(true)]);
const SPIFFE_SCHEME = "spiffe://";

/**
 * The TBSCertificate (RFC 5280 §4.1) of X.509-SVID workload certificates issued by one CA, with every
 * constant part pre-encoded. Build one per issuing CA at start-up (or on rotation) and reuse it.
 *
 * @example
 * const template = new WorkloadCertificateTemplate({ issuerNameDer, issuerSubjectKeyIdentifier,
 *   signatureAlgorithm: signer.signatureAlgorithm, crlDistributionPointUrl, ocspUrl, caIssuersUrl });
 * const tbs = template.buildTbs({ serialNumber, notBefore, notAfter, subjectPublicKeyInfo, keyType: "ec",
 *   spiffeId: "spiffe://anchorage.test/ns/default/sa/web", dnsNames: ["web.default.svc"] });
 * const certificate = assembleSignedStructure(tbs, signer.signatureAlgorithm, await signer.sign(tbs));
 */
export class WorkloadCertificateTemplate {
  readonly signatureAlgorithm: SignatureAlgorithmName;
  /** signature AlgorithmIdentifier followed by the issuer Name: everything between serial and validity. */
  readonly #algorithmAndIssuer: Buffer;
  /** basicConstraints, keyUsage, extKeyUsage and the SKI extension up to its 20 key-identifier octets. */
  readonly #extensionsUpToSki: { readonly ec: Buffer; readonly rsa: Buffer };
  readonly #authorityKeyIdentifier: Buffer;
  /** cRLDistributionPoints and authorityInfoAccess. */
  readonly #extensionsAfterSan: Buffer;

  /**
   * Pre-encodes the constant parts for `issuer`. Throws `TypeError` naming the field when the issuer Name
   * is not one DER SEQUENCE, the key identifier is empty, or a URL is not an absolute http(s) IA5 URL.
   */
  constructor(issuer: WorkloadIssuer) {
    const name = readTlv(issuer.issuerNameDer, 0);
    if (name.tag !== TAG.SEQUENCE || name.end !== issuer.issuerNameDer.length) {
      throw new TypeError("issuerNameDer must be exactly one DER Name (SEQUENCE)");
    }
    if (issuer.issuerSubjectKeyIdentifier.length === 0) throw new TypeError("issuerSubjectKeyIdentifier is empty");
    assertHttpUrl(issuer.crlDistributionPointUrl, "crlDistributionPointUrl");
    assertHttpUrl(issuer.ocspUrl, "ocspUrl");
    assertHttpUrl(issuer.caIssuersUrl, "caIssuersUrl");

    this.signatureAlgorithm = issuer.signatureAlgorithm;
    this.#algorithmAndIssuer = Buffer.concat([
      signatureAlgorithmIdentifier(issuer.signatureAlgorithm),
      issuer.issuerNameDer,
    ]);

    // cA FALSE is the DEFAULT, which DER omits (X.690 §11.5): an empty SEQUENCE.
    const basicConstraints = extension(OID_BASIC_CONSTRAINTS, true, sequence());
    const extendedKeyUsage = extension(
      OID_EXT_KEY_USAGE,
      false,
      sequence(oid(OID_KP_SERVER_AUTH), oid(OID_KP_CLIENT_AUTH)),
    );
    // Encode the SKI extension around a placeholder identifier and keep everything before it.
    const skiWithPlaceholder = extension(OID_SUBJECT_KEY_IDENTIFIER, false, octetString(Buffer.alloc(SHA1_LENGTH)));
    const skiPrefix = skiWithPlaceholder.subarray(0, skiWithPlaceholder.length - SHA1_LENGTH);
    const upToSki = (keyUsageBits: number[]): Buffer =>
      Buffer.concat([
        basicConstraints,
        extension(OID_KEY_USAGE, true, namedBitString(keyUsageBits)),
        extendedKeyUsage,
        skiPrefix,
      ]);
    this.#extensionsUpToSki = {
      // RFC 5480 §3: keyEncipherment is meaningless (and forbidden) for EC keys; RSA keys used in TLS 1.2
      // RSA key exchange need it.
      ec: upToSki([DIGITAL_SIGNATURE]),
      rsa: upToSki([DIGITAL_SIGNATURE, KEY_ENCIPHERMENT]),
    };

    this.#authorityKeyIdentifier = extension(
      OID_AUTHORITY_KEY_IDENTIFIER,
      false,
      sequence(contextImplicit(0, issuer.issuerSubjectKeyIdentifier)),
    );

    const uri = (url: string): Buffer => contextImplicit(6, Buffer.from(url, "latin1"));
    const crlDistributionPoints = extension(
      OID_CRL_DISTRIBUTION_POINTS,
      false,
      // DistributionPoint { distributionPoint [0] EXPLICIT (a CHOICE) { fullName [0] IMPLICIT GeneralNames } }
      sequence(sequence(contextExplicit(0, contextImplicit(0, uri(issuer.crlDistributionPointUrl), true)))),
    );
    const authorityInfoAccess = extension(
      OID_AUTHORITY_INFO_ACCESS,
      false,
      sequence(
        sequence(oid(OID_AD_OCSP), uri(issuer.ocspUrl)),
        sequence(oid(OID_AD_CA_ISSUERS), uri(issuer.caIssuersUrl)),
      ),
    );
    this.#extensionsAfterSan = Buffer.concat([crlDistributionPoints, authorityInfoAccess]);
  }

  /**
   * DER TBSCertificate of one workload certificate: v3, serial, signature algorithm, issuer, validity, an
   * empty subject, the SPKI as given, and the extensions basicConstraints (critical, cA FALSE), keyUsage
   * (critical), extKeyUsage serverAuth + clientAuth, subjectKeyIdentifier (method 1),
   * authorityKeyIdentifier, subjectAltName (critical; the URI, then the DNS names), cRLDistributionPoints,
   * authorityInfoAccess (OCSP, caIssuers).
   *
   * Checks only what encoding needs; lifetime caps, SPIFFE ID syntax and key policy are the caller's.
   * Throws `TypeError`/`RangeError` naming the field for a serial that is zero or longer than 20 octets, an
   * invalid or out-of-range time, notAfter not after notBefore, a malformed SPKI or one whose algorithm
   * is not `keyType`, or names that are empty or not IA5.
   */
  buildTbs(fields: WorkloadCertificateFields): Buffer {
    const serial = serialNumberContent(fields.serialNumber);
    const notBeforeSize = timeSize(fields.notBefore);
    const notAfterSize = timeSize(fields.notAfter);
    if (fields.notAfter.getTime() <= fields.notBefore.getTime()) {
      throw new RangeError("notAfter must be after notBefore");
    }
    const spki = fields.subjectPublicKeyInfo;
    const key = inspectSubjectPublicKeyInfo(spki);
    if (key.keyType !== fields.keyType) {
      const found = key.keyType ?? "an unsupported";
      throw new TypeError(`subjectPublicKeyInfo holds ${found} key, not keyType "${fields.keyType}"`);
    }
    const extensionsUpToSki = fields.keyType === "rsa" ? this.#extensionsUpToSki.rsa : this.#extensionsUpToSki.ec;

    const { spiffeId, dnsNames } = fields;
    if (!spiffeId.startsWith(SPIFFE_SCHEME) || spiffeId.length === SPIFFE_SCHEME.length) {
      throw new TypeError("spiffeId must be a spiffe:// URI");
    }
    assertIa5(spiffeId, "spiffeId");
    let generalNamesLength = tlvSize(spiffeId.length);
    for (const dnsName of dnsNames) {
      if (dnsName.length === 0) throw new TypeError("dnsNames must not contain an empty name");
      assertIa5(dnsName, "dnsNames");
      generalNamesLength += tlvSize(dnsName.length);
    }
    const ipAddresses = fields.ipAddresses ?? [];
    for (const address of ipAddresses) {
      if (address.length !== 4 && address.length !== 16) throw new TypeError("ipAddresses must be 4 or 16 octets each");
      generalNamesLength += tlvSize(address.length);
    }
    const sanValueLength = tlvSize(generalNamesLength);
    const sanContentLength = SAN_EXTENSION_PREFIX.length + tlvSize(sanValueLength);

    const extensionsLength =
      extensionsUpToSki.length +
      SHA1_LENGTH +
      this.#authorityKeyIdentifier.length +
      tlvSize(sanContentLength) +
      this.#extensionsAfterSan.length;
    const validityLength = notBeforeSize + notAfterSize;
    const tbsLength =
      VERSION_V3.length +
      tlvSize(serial.length) +
      this.#algorithmAndIssuer.length +
      tlvSize(validityLength) +
      EMPTY_NAME.length +
      spki.length +
      tlvSize(tlvSize(extensionsLength));

    const out = Buffer.allocUnsafe(tlvSize(tbsLength));
    let at = writeHeader(out, 0, TAG.SEQUENCE, tbsLength);
    at = put(out, at, VERSION_V3);
    at = writeHeader(out, at, TAG.INTEGER, serial.length);
    at = put(out, at, serial);
    at = put(out, at, this.#algorithmAndIssuer);
    at = writeHeader(out, at, TAG.SEQUENCE, validityLength);
    at = writeTime(out, at, fields.notBefore);
    at = writeTime(out, at, fields.notAfter);
    at = put(out, at, EMPTY_NAME);
    at = put(out, at, spki);
    // extensions [3] EXPLICIT Extensions
    at = writeHeader(out, at, 0xa3, tlvSize(extensionsLength));
    at = writeHeader(out, at, TAG.SEQUENCE, extensionsLength);
    at = put(out, at, extensionsUpToSki);
    // RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING value.
    at = put(out, at, keyIdentifier(key.subjectPublicKey));
    at = put(out, at, this.#authorityKeyIdentifier);
    at = writeHeader(out, at, TAG.SEQUENCE, sanContentLength);
    at = put(out, at, SAN_EXTENSION_PREFIX);
    at = writeHeader(out, at, TAG.OCTET_STRING, sanValueLength);
    at = writeHeader(out, at, TAG.SEQUENCE, generalNamesLength);
    at = writeHeader(out, at, GENERAL_NAME_URI, spiffeId.length);
    at += out.write(spiffeId, at, "latin1");
    for (const dnsName of dnsNames) {
      at = writeHeader(out, at, GENERAL_NAME_DNS, dnsName.length);
      at += out.write(dnsName, at, "latin1");
    }
    for (const address of ipAddresses) {
      at = writeHeader(out, at, GENERAL_NAME_IP, address.length);
      at = put(out, at, address);
    }
    at = put(out, at, this.#extensionsAfterSan);
    if (at !== out.length) throw new Error(`workload TBS length mismatch: wrote ${at} of ${out.length} octets`);
    return out;
  }
}

/** Copies `source` into `target` at `offset` and returns the offset after it. */
function put(target: Buffer, offset: number, source: Uint8Array): number {
  target.set(source, offset);
  return offset + source.length;
}

/** Extension (RFC 5280 §4.1): extnID, critical only when TRUE (DER omits the FALSE default), extnValue. */
function extension(extnId: string, critical: boolean, value: Buffer): Buffer {
  return critical
    ? sequence(oid(extnId), boolean(true), octetString(value))
    : sequence(oid(extnId), octetString(value));
}
