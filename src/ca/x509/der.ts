/**
 * A minimal DER (ITU-T X.690) encoder and a strict TLV reader, for the structures the CA builds by hand.
 *
 * Only what X.509 needs: single-octet tags (tag numbers below 31), definite lengths up to 2^32 - 1, and
 * the universal types RFC 5280 uses. Everything works on Buffers; callers that care about speed compute
 * lengths first and allocate once (see `headerSize` and `writeHeader`).
 */

/** Universal tags (X.690 §8) and the constructed SEQUENCE/SET identifiers, as full identifier octets. */
export const TAG = Object.freeze({
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OBJECT_IDENTIFIER: 0x06,
  ENUMERATED: 0x0a,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
});

// 2^32 - 1: four length octets. A CRL with a million entries is ~40 MB, far below it.
const MAX_LENGTH = 0xffff_ffff;

/** Number of octets the length field takes for a content of `length` octets (X.690 §8.1.3, definite form). */
export function lengthOfLength(length: number): number {
  if (!Number.isInteger(length) || length < 0 || length > MAX_LENGTH) {
    throw new RangeError(`DER length ${length} is not an integer in [0, 2^32 - 1]`);
  }
  if (length < 0x80) return 1;
  if (length <= 0xff) return 2;
  if (length <= 0xffff) return 3;
  if (length <= 0xff_ffff) return 4;
  return 5;
}

/** Size of the identifier and length octets in front of a content of `length` octets. */
export function headerSize(length: number): number {
  return 1 + lengthOfLength(length);
}

/** Size of a whole TLV whose content is `length` octets. */
export function tlvSize(length: number): number {
  return 1 + lengthOfLength(length) + length;
}

/**
 * Writes the identifier octet `tag` and the definite length of `length` at `offset` of `target`;
 * returns the offset just after them, where the content goes.
 */
export function writeHeader(target: Buffer, offset: number, tag: number, length: number): number {
  let at = offset;
  target[at++] = tag;
  const lengthOctets = lengthOfLength(length) - 1;
  if (lengthOctets === 0) {
    target[at++] = length;
    return at;
  }
  target[at++] = 0x80 | lengthOctets;
  for (let shift = (lengthOctets - 1) * 8; shift >= 0; shift -= 8) {
    // `>>>` keeps 32-bit lengths unsigned.
    target[at++] = (length >>> shift) & 0xff;
  }
  return at;
}

/** The DER length octets for a content of `length` octets: short form below 128, long form above. */
export function encodeLength(length: number): Buffer {
  return encodeHeader(0, length).subarray(1);
}

/** The identifier and length octets of a TLV, for callers that assemble content separately. */
export function encodeHeader(tag: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(headerSize(length));
  writeHeader(out, 0, tag, length);
  return out;
}

/**
 * One TLV: identifier `tag`, definite length, and the concatenation of `parts` as content, built with a
 * single allocation.
 */
export function tlv(tag: number, ...parts: readonly Uint8Array[]): Buffer {
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xff || (tag & 0x1f) === 0x1f) {
    throw new RangeError(`tag 0x${tag.toString(16)} is not a single-octet DER identifier`);
  }
  let length = 0;
  for (const part of parts) length += part.length;
  const out = Buffer.allocUnsafe(tlvSize(length));
  let at = writeHeader(out, 0, tag, length);
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** SEQUENCE (X.690 §8.9) of already encoded elements, in the given order. */
export function sequence(...elements: readonly Uint8Array[]): Buffer {
  return tlv(TAG.SEQUENCE, ...elements);
}

/**
 * Content octets of an INTEGER holding the unsigned big-endian value `unsigned` (X.690 §8.3): redundant
 * leading zero octets removed, and one 0x00 added when the high bit would otherwise make it negative.
 * Zero encodes as a single 0x00.
 */
export function unsignedIntegerContent(unsigned: Uint8Array): Buffer {
  if (unsigned.length === 0) throw new TypeError("an INTEGER needs at least one octet of value");
  let first = 0;
  while (first < unsigned.length - 1 && unsigned[first] === 0) first++;
  const pad = (unsigned[first] as number) & 0x80 ? 1 : 0;
  const out = Buffer.allocUnsafe(pad + unsigned.length - first);
  if (pad) out[0] = 0;
  out.set(unsigned.subarray(first), pad);
  return out;
}

/** INTEGER (X.690 §8.3) holding the unsigned big-endian value `unsigned`, in minimal two's complement. */
export function integer(unsigned: Uint8Array): Buffer {
  return tlv(TAG.INTEGER, unsignedIntegerContent(unsigned));
}

/** Big-endian octets of a non-negative bigint, at least one octet. */
export function bigintToUnsignedBytes(value: bigint): Buffer {
  if (value < 0n) throw new RangeError("only non-negative integers are supported");
  const hex = value.toString(16);
  return Buffer.from(hex.length % 2 === 0 ? hex : `0${hex}`, "hex");
}

/** INTEGER (X.690 §8.3) for a non-negative bigint. */
export function integerFromBigInt(value: bigint): Buffer {
  return integer(bigintToUnsignedBytes(value));
}

/** ENUMERATED (X.690 §8.4) for a small non-negative value, such as a CRLReason. */
export function enumerated(value: number): Buffer {
  if (!Number.isInteger(value) || value < 0 || value > 0x7f) {
    throw new RangeError(`ENUMERATED value ${value} is outside the supported range [0, 127]`);
  }
  return Buffer.from([TAG.ENUMERATED, 0x01, value]);
}

/** BOOLEAN (X.690 §11.1: DER encodes TRUE as 0xFF). */
export function boolean(value: boolean): Buffer {
  return Buffer.from([TAG.BOOLEAN, 0x01, value ? 0xff : 0x00]);
}

/** NULL (X.690 §8.8), as used for the parameters of RSA AlgorithmIdentifiers. */
export function nullValue(): Buffer {
  return Buffer.from([TAG.NULL, 0x00]);
}

/** Content octets of an OBJECT IDENTIFIER given in dotted form (X.690 §8.19). */
export function oidContent(dotted: string): Buffer {
  if (!/^[0-2](\.(0|[1-9][0-9]*))+$/.test(dotted)) {
    throw new TypeError(`"${dotted}" is not a dotted object identifier`);
  }
  // BigInt so that arcs beyond 2^53 (UUID-based OIDs) still encode exactly; this runs at start-up only.
  const arcs = dotted.split(".").map((arc) => BigInt(arc));
  const [first, second] = arcs as [bigint, bigint];
  if (first < 2n && second > 39n) throw new TypeError(`"${dotted}": the second arc must be below 40`);
  const subidentifiers = [first * 40n + second, ...arcs.slice(2)];
  const octets: number[] = [];
  for (const value of subidentifiers) {
    const base128: number[] = [Number(value & 0x7fn)];
    for (let rest = value >> 7n; rest > 0n; rest >>= 7n) base128.unshift(Number(rest & 0x7fn) | 0x80);
    octets.push(...base128);
  }
  return Buffer.from(octets);
}

/** OBJECT IDENTIFIER (X.690 §8.19) from dotted form. */
export function oid(dotted: string): Buffer {
  return tlv(TAG.OBJECT_IDENTIFIER, oidContent(dotted));
}

/** Dotted form of OBJECT IDENTIFIER content octets; the inverse of `oidContent`. */
export function decodeOidContent(content: Uint8Array): string {
  const arcs: bigint[] = [];
  let value = 0n;
  for (let i = 0; i < content.length; i++) {
    const octet = content[i] as number;
    if (value === 0n && octet === 0x80) throw new TypeError("OBJECT IDENTIFIER subidentifier is not minimal");
    value = (value << 7n) | BigInt(octet & 0x7f);
    if ((octet & 0x80) === 0) {
      arcs.push(value);
      value = 0n;
    } else if (i === content.length - 1) {
      throw new TypeError("OBJECT IDENTIFIER ends inside a subidentifier");
    }
  }
  const [head, ...rest] = arcs;
  if (head === undefined) throw new TypeError("OBJECT IDENTIFIER is empty");
  const first = head < 80n ? head / 40n : 2n;
  return [first, head - first * 40n, ...rest].join(".");
}

const NON_IA5 = /[^\x00-\x7f]/;

/** Throws unless every character of `value` is in IA5 (7-bit ASCII), naming `field` in the message. */
export function assertIa5(value: string, field: string): void {
  if (NON_IA5.test(value)) throw new TypeError(`${field} must contain only IA5 (ASCII) characters`);
}

/** IA5String (X.680 §41; 7-bit ASCII), as used in URI and DNS GeneralNames. Rejects non-ASCII text. */
export function ia5String(value: string, field = "IA5String value"): Buffer {
  assertIa5(value, field);
  return tlv(TAG.IA5_STRING, Buffer.from(value, "latin1"));
}

/** UTF8String (X.680 §41), the DirectoryString choice RFC 5280 §4.1.2.6 asks for in new certificates. */
export function utf8String(value: string): Buffer {
  return tlv(TAG.UTF8_STRING, Buffer.from(value, "utf8"));
}

/**
 * BIT STRING (X.690 §8.6) whose first content octet is the count of unused bits in the last octet.
 * Those unused bits must be zero in DER (§11.2.1), which is checked.
 */
export function bitString(bytes: Uint8Array, unusedBits = 0): Buffer {
  if (!Number.isInteger(unusedBits) || unusedBits < 0 || unusedBits > 7) {
    throw new RangeError(`unused bit count ${unusedBits} is not in [0, 7]`);
  }
  if (bytes.length === 0 && unusedBits !== 0) throw new RangeError("an empty BIT STRING has no unused bits");
  if (bytes.length > 0 && ((bytes[bytes.length - 1] as number) & ((1 << unusedBits) - 1)) !== 0) {
    throw new RangeError("the unused bits of a DER BIT STRING must be zero");
  }
  return tlv(TAG.BIT_STRING, Buffer.of(unusedBits), bytes);
}

/**
 * BIT STRING for a NamedBitList such as KeyUsage (X.690 §11.2.2): bit 0 is the most significant bit of
 * the first octet, and trailing zero bits are dropped, which sets the unused-bit count.
 */
export function namedBitString(bits: readonly number[]): Buffer {
  let highest = -1;
  for (const bit of bits) {
    if (!Number.isInteger(bit) || bit < 0 || bit > 255) throw new RangeError(`named bit ${bit} is out of range`);
    if (bit > highest) highest = bit;
  }
  const octets = Buffer.alloc(highest < 0 ? 0 : (highest >> 3) + 1);
  for (const bit of bits) octets[bit >> 3] = (octets[bit >> 3] as number) | (0x80 >> (bit & 7));
  return bitString(octets, highest < 0 ? 0 : 7 - (highest & 7));
}

/** OCTET STRING (X.690 §8.7), for example the extnValue wrapper of an Extension. */
export function octetString(bytes: Uint8Array): Buffer {
  return tlv(TAG.OCTET_STRING, bytes);
}

/**
 * IMPLICIT context-specific tag `[number]`: `content` is the content octets of the underlying type, whose
 * own tag is replaced. Set `constructed` when that type is constructed (SEQUENCE, SET, or a CHOICE of them).
 */
export function contextImplicit(number: number, content: Uint8Array, constructed = false): Buffer {
  return tlv(contextTag(number, constructed), content);
}

/** EXPLICIT context-specific tag `[number]` wrapping whole encodings (always constructed). */
export function contextExplicit(number: number, ...elements: readonly Uint8Array[]): Buffer {
  return tlv(contextTag(number, true), ...elements);
}

/** Identifier octet of a context-specific tag. */
export function contextTag(number: number, constructed: boolean): number {
  if (!Number.isInteger(number) || number < 0 || number > 30) {
    throw new RangeError(`context tag [${number}] needs a multi-octet identifier, which is not supported`);
  }
  return 0x80 | (constructed ? 0x20 : 0) | number;
}

// UTCTime covers 1950-2049 only (RFC 5280 §4.1.2.5.1); GeneralizedTime takes over from 2050.
const UTC_TIME_LAST_YEAR = 2049;

/** Size of the whole TLV `encodeTime(date)` produces, without encoding it. */
export function timeSize(date: Date): number {
  return checkedYear(date) > UTC_TIME_LAST_YEAR ? 17 : 15;
}

/**
 * Writes the RFC 5280 `Time` for `date` at `offset` of `target` and returns the offset after it.
 * See `encodeTime` for the rules.
 */
export function writeTime(target: Buffer, offset: number, date: Date): number {
  const year = checkedYear(date);
  const generalized = year > UTC_TIME_LAST_YEAR;
  let at = offset;
  target[at++] = generalized ? TAG.GENERALIZED_TIME : TAG.UTC_TIME;
  target[at++] = generalized ? 15 : 13;
  if (generalized) at = writeTwoDigits(target, at, Math.floor(year / 100));
  at = writeTwoDigits(target, at, year % 100);
  at = writeTwoDigits(target, at, date.getUTCMonth() + 1);
  at = writeTwoDigits(target, at, date.getUTCDate());
  at = writeTwoDigits(target, at, date.getUTCHours());
  at = writeTwoDigits(target, at, date.getUTCMinutes());
  at = writeTwoDigits(target, at, date.getUTCSeconds());
  target[at++] = 0x5a; // "Z"
  return at;
}

/**
 * The RFC 5280 `Time` CHOICE for `date` (§4.1.2.5): UTCTime `YYMMDDHHMMSSZ` for the years 1950 to 2049,
 * GeneralizedTime `YYYYMMDDHHMMSSZ` from 2050. Always UTC, whole seconds: milliseconds are truncated,
 * because RFC 5280 forbids fractional seconds.
 */
export function encodeTime(date: Date): Buffer {
  const out = Buffer.allocUnsafe(timeSize(date));
  writeTime(out, 0, date);
  return out;
}

function checkedYear(date: Date): number {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) throw new TypeError("time is not a valid Date");
  const year = date.getUTCFullYear();
  if (year < 1950 || year > 9999) {
    throw new RangeError(`year ${year} cannot be encoded as an X.509 Time (1950 to 9999)`);
  }
  return year;
}

function writeTwoDigits(target: Buffer, offset: number, value: number): number {
  target[offset] = 0x30 + Math.floor(value / 10);
  target[offset + 1] = 0x30 + (value % 10);
  return offset + 2;
}

/** Position of one DER element inside a buffer, as found by `readTlv`. */
export interface DerElement {
  /** Identifier octet. */
  readonly tag: number;
  /** Offset of the identifier octet. */
  readonly start: number;
  /** Offset of the first content octet. */
  readonly contentStart: number;
  /** Offset just past the last content octet. */
  readonly end: number;
}

/**
 * Reads the element starting at `offset` of `der` without copying, insisting on DER: single-octet tag,
 * definite and minimal length, and content inside `limit` (defaults to the end of `der`). Throws
 * `TypeError` on anything else, so that parsers built on it fail closed.
 */
export function readTlv(der: Uint8Array, offset: number, limit = der.length): DerElement {
  if (offset + 2 > limit) throw new TypeError(`DER element at offset ${offset} is truncated`);
  const tag = der[offset] as number;
  if ((tag & 0x1f) === 0x1f) throw new TypeError(`multi-octet tag at offset ${offset} is not supported`);
  let at = offset + 1;
  const first = der[at++] as number;
  let length: number;
  if (first < 0x80) {
    length = first;
  } else {
    const octets = first & 0x7f;
    if (octets === 0) throw new TypeError(`indefinite length at offset ${offset} is not DER`);
    if (octets > 4) throw new TypeError(`length at offset ${offset} is too large`);
    if (at + octets > limit) throw new TypeError(`DER element at offset ${offset} is truncated`);
    if (der[at] === 0) throw new TypeError(`length at offset ${offset} has a leading zero octet (not DER)`);
    length = 0;
    for (let i = 0; i < octets; i++) length = length * 256 + (der[at++] as number);
    if (length < 0x80) throw new TypeError(`length at offset ${offset} should use the short form (not DER)`);
  }
  const end = at + length;
  if (end > limit) throw new TypeError(`DER element at offset ${offset} runs past its container`);
  return { tag, start: offset, contentStart: at, end };
}
