/**
 * Hand-encoded TBSCertList (RFC 5280 §5.1): an intermediate's CRL may list every certificate revoked
 * before its expiry, up to about a million entries, so entries are written straight into one growing
 * buffer instead of going through an ASN.1 object model.
 */
import type { SignatureAlgorithmName } from "../../signer/signer.js";
import { signatureAlgorithmIdentifier } from "./algorithms.js";
import {
  TAG,
  contextExplicit,
  contextImplicit,
  encodeHeader,
  encodeTime,
  enumerated,
  integerFromBigInt,
  octetString,
  oid,
  readTlv,
  sequence,
  tlvSize,
  timeSize,
  writeHeader,
  writeTime,
} from "./der.js";

/** One revoked certificate. */
export interface CrlEntry {
  /** Unsigned big-endian serial number of the revoked certificate. */
  readonly serialNumber: Buffer;
  readonly revocationDate: Date;
  /**
   * RFC 5280 §5.3.1 CRLReason code. Leave it out for unspecified: RFC 5280 asks for the extension to be
   * absent rather than carry unspecified (0), so 0 is treated as absent.
   */
  readonly reason?: number;
}

/** Inputs of a CRL. */
export interface CrlTbsFields {
  /** DER Name of the issuing CA, byte for byte as the subject of its certificate. */
  readonly issuerNameDer: Buffer;
  /** SubjectKeyIdentifier of the issuing CA, for the CRL's AuthorityKeyIdentifier (RFC 5280 §5.2.1). */
  readonly issuerSubjectKeyIdentifier: Buffer;
  readonly signatureAlgorithm: SignatureAlgorithmName;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  /** Monotonically increasing CRL number (RFC 5280 §5.2.3): non-negative, at most 20 octets. */
  readonly crlNumber: bigint;
  /** Entries to encode, or entries already encoded with `encodeCrlEntries`. */
  readonly entries: Iterable<CrlEntry> | EncodedCrlEntries;
}

const OID_AUTHORITY_KEY_IDENTIFIER = "2.5.29.35";
const OID_CRL_NUMBER = "2.5.29.20";
const OID_REASON_CODE = "2.5.29.21";
const VERSION_V2 = Buffer.from([TAG.INTEGER, 0x01, 0x01]);
// 2^159: the largest value whose INTEGER encoding still fits the 20 octets RFC 5280 §5.2.3 allows.
const CRL_NUMBER_LIMIT = 1n << 159n;

// crlEntryExtensions holding only a reasonCode, pre-encoded per code. 7 is not assigned, and
// removeFromCRL (8) belongs only in delta CRLs (RFC 5280 §5.3.1), which we do not issue.
const REASON_EXTENSIONS: ReadonlyMap<number, Buffer> = new Map(
  [1, 2, 3, 4, 5, 6, 9, 10].map((code) => [
    code,
    sequence(sequence(oid(OID_REASON_CODE), octetString(enumerated(code)))),
  ]),
);

/**
 * DER TBSCertList (RFC 5280 §5.1.2) of a v2 CRL: version v2, signature, issuer, thisUpdate, nextUpdate,
 * revokedCertificates (left out when there are none, as §5.1.2.6 requires), and crlExtensions [0] with a
 * non-critical AuthorityKeyIdentifier and a non-critical cRLNumber. An entry gets a reasonCode entry
 * extension when it has a reason other than unspecified.
 *
 * Entries are consumed once, in order (a generator over a database cursor is fine). Throws
 * `RangeError` on a CRL number out of range, nextUpdate not after thisUpdate, or an unknown or
 * unusable reason code; `TypeError` on an issuer Name that is not one DER SEQUENCE.
 */
export function buildCrlTbs(fields: CrlTbsFields): Buffer {
  const name = readTlv(fields.issuerNameDer, 0);
  if (name.tag !== TAG.SEQUENCE || name.end !== fields.issuerNameDer.length) {
    throw new TypeError("issuerNameDer must be exactly one DER Name (SEQUENCE)");
  }
  if (fields.issuerSubjectKeyIdentifier.length === 0) throw new TypeError("issuerSubjectKeyIdentifier is empty");
  if (fields.crlNumber < 0n || fields.crlNumber >= CRL_NUMBER_LIMIT) {
    throw new RangeError("crlNumber must be non-negative and fit in 20 octets");
  }
  if (fields.nextUpdate.getTime() <= fields.thisUpdate.getTime()) {
    throw new RangeError("nextUpdate must be after thisUpdate");
  }

  // Everything that can be refused is encoded before the entries, so a bad argument fails fast instead
  // of after reading a million rows.
  const parts = [
    VERSION_V2,
    signatureAlgorithmIdentifier(fields.signatureAlgorithm),
    fields.issuerNameDer,
    encodeTime(fields.thisUpdate),
    encodeTime(fields.nextUpdate),
  ];
  const crlExtensions = contextExplicit(
    0,
    sequence(
      sequence(
        oid(OID_AUTHORITY_KEY_IDENTIFIER),
        octetString(sequence(contextImplicit(0, fields.issuerSubjectKeyIdentifier))),
      ),
      sequence(oid(OID_CRL_NUMBER), octetString(integerFromBigInt(fields.crlNumber))),
    ),
  );
  const revoked = "der" in fields.entries ? fields.entries.der : encodeEntries(fields.entries);
  if (revoked.length > 0) parts.push(encodeHeader(TAG.SEQUENCE, revoked.length), revoked);
  parts.push(crlExtensions);

  let contentLength = 0;
  for (const part of parts) contentLength += part.length;
  // The one copy of the (possibly tens of megabytes of) entries.
  return Buffer.concat([encodeHeader(TAG.SEQUENCE, contentLength), ...parts], tlvSize(contentLength));
}

/** The concatenated revokedCertificates entries (without the outer SEQUENCE header). */
function encodeEntries(entries: Iterable<CrlEntry>): Buffer {
  const writer = new CrlEntriesWriter();
  for (const entry of entries) writer.add(entry);
  return writer.encoded().der;
}

/** revokedCertificates encoded ahead of the rest of the TBSCertList, from entries that arrive asynchronously. */
export interface EncodedCrlEntries {
  readonly der: Buffer;
}

/** Encodes entries read from a source that must be awaited (a database read in chunks), one at a time. */
export async function encodeCrlEntries(entries: AsyncIterable<CrlEntry>): Promise<EncodedCrlEntries> {
  const writer = new CrlEntriesWriter();
  for await (const entry of entries) writer.add(entry);
  return writer.encoded();
}

class CrlEntriesWriter {
  private buffer = Buffer.allocUnsafe(64 * 1024);
  private used = 0;

  add(entry: CrlEntry): void {
    let buffer = this.buffer;
    const used = this.used;
    // The INTEGER is written in place, byte by byte, rather than through unsignedIntegerContent and
    // Buffer#copy: at a million entries, per-entry allocations and native copy calls dominate the cost.
    const serial = entry.serialNumber;
    if (serial.length === 0) throw new TypeError("a CRL entry has an empty serialNumber");
    let first = 0;
    while (first < serial.length - 1 && serial[first] === 0) first++;
    const pad = (serial[first] as number) & 0x80 ? 1 : 0;
    const serialLength = pad + serial.length - first;
    const reasonExtension = reasonExtensionFor(entry.reason);
    const contentLength = tlvSize(serialLength) + timeSize(entry.revocationDate) + (reasonExtension?.length ?? 0);
    const size = tlvSize(contentLength);
    if (used + size > buffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(buffer.length * 2, used + size));
      buffer.copy(grown, 0, 0, used);
      buffer = grown;
      this.buffer = grown;
    }
    let at = writeHeader(buffer, used, TAG.SEQUENCE, contentLength);
    at = writeHeader(buffer, at, TAG.INTEGER, serialLength);
    if (pad) buffer[at++] = 0;
    for (let i = first; i < serial.length; i++) buffer[at++] = serial[i] as number;
    at = writeTime(buffer, at, entry.revocationDate);
    if (reasonExtension !== undefined) {
      for (let i = 0; i < reasonExtension.length; i++) buffer[at++] = reasonExtension[i] as number;
    }
    this.used = at;
  }

  encoded(): EncodedCrlEntries {
    return { der: this.buffer.subarray(0, this.used) };
  }
}

function reasonExtensionFor(reason: number | undefined): Buffer | undefined {
  if (reason === undefined || reason === 0) return undefined;
  const extension = REASON_EXTENSIONS.get(reason);
  if (extension === undefined) {
    throw new RangeError(`CRL reason code ${reason} is not usable in a full CRL (RFC 5280 §5.3.1)`);
  }
  return extension;
}
