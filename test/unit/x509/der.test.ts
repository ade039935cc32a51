import { describe, expect, it } from "vitest";
import {
  bitString,
  boolean,
  contextExplicit,
  contextImplicit,
  decodeOidContent,
  encodeLength,
  encodeTime,
  enumerated,
  ia5String,
  integer,
  integerFromBigInt,
  namedBitString,
  octetString,
  oid,
  readTlv,
  sequence,
  tlv,
  utf8String,
} from "../../../src/ca/x509/der.js";

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");

describe("encodeLength", () => {
  it.each([
    [0, "00"],
    [127, "7f"],
    [128, "8180"],
    [255, "81ff"],
    [256, "820100"],
    [65535, "82ffff"],
    [65536, "83010000"],
    [0x0100_0000, "8401000000"],
  ])("encodes %i as %s", (length, expected) => {
    expect(hex(encodeLength(length))).toBe(expected);
  });

  it("rejects negative, fractional and oversized lengths", () => {
    expect(() => encodeLength(-1)).toThrow(RangeError);
    expect(() => encodeLength(1.5)).toThrow(RangeError);
    expect(() => encodeLength(2 ** 32)).toThrow(RangeError);
  });

  it("puts the long form in front of long content", () => {
    const content = Buffer.alloc(300, 0xab);
    const encoded = octetString(content);
    expect(hex(encoded.subarray(0, 4))).toBe("0482012c");
    expect(encoded.length).toBe(304);
    expect(encoded.subarray(4).equals(content)).toBe(true);
  });
});

describe("integer", () => {
  it.each([
    ["00", "020100"],
    ["000000", "020100"],
    ["01", "020101"],
    ["7f", "02017f"],
    ["80", "02020080"],
    ["ff", "020200ff"],
    ["0080", "02020080"],
    ["000080", "02020080"],
    ["007f", "02017f"],
    ["00000001", "020101"],
    ["8000000000000000", "0209008000000000000000"],
  ])("encodes unsigned %s as %s", (input, expected) => {
    expect(hex(integer(Buffer.from(input, "hex")))).toBe(expected);
  });

  it("encodes a 16-octet serial with the high bit set in 17 content octets", () => {
    const serial = Buffer.from("f0".padEnd(32, "1"), "hex");
    const encoded = integer(serial);
    expect(hex(encoded.subarray(0, 3))).toBe("021100");
    expect(encoded.subarray(3).equals(serial)).toBe(true);
  });

  it("rejects an empty value", () => {
    expect(() => integer(Buffer.alloc(0))).toThrow(TypeError);
  });

  it("encodes bigints", () => {
    expect(hex(integerFromBigInt(0n))).toBe("020100");
    expect(hex(integerFromBigInt(128n))).toBe("02020080");
    expect(hex(integerFromBigInt(0x1234_5678_9abc_def0n))).toBe("0208123456789abcdef0");
    expect(hex(integerFromBigInt(0xf234_5678_9abc_def0n))).toBe("020900f23456789abcdef0");
    expect(() => integerFromBigInt(-1n)).toThrow(RangeError);
  });
});

describe("encodeTime", () => {
  it("uses UTCTime up to the last second of 2049", () => {
    const encoded = encodeTime(new Date(Date.UTC(2049, 11, 31, 23, 59, 59)));
    expect(encoded[0]).toBe(0x17);
    expect(encoded[1]).toBe(13);
    expect(encoded.subarray(2).toString("latin1")).toBe("491231235959Z");
  });

  it("switches to GeneralizedTime on 2050-01-01T00:00:00Z", () => {
    const encoded = encodeTime(new Date(Date.UTC(2050, 0, 1, 0, 0, 0)));
    expect(encoded[0]).toBe(0x18);
    expect(encoded[1]).toBe(15);
    expect(encoded.subarray(2).toString("latin1")).toBe("20500101000000Z");
  });

  it("uses UTCTime with the 19xx century from 1950", () => {
    expect(encodeTime(new Date(Date.UTC(1950, 0, 1))).subarray(2).toString("latin1")).toBe("500101000000Z");
    expect(() => encodeTime(new Date(Date.UTC(1949, 11, 31, 23, 59, 59)))).toThrow(RangeError);
  });

  it("drops milliseconds instead of writing fractional seconds", () => {
    const encoded = encodeTime(new Date(Date.UTC(2026, 2, 1, 12, 34, 56, 999)));
    expect(encoded.subarray(2).toString("latin1")).toBe("260301123456Z");
  });

  it("rejects invalid dates", () => {
    expect(() => encodeTime(new Date(Number.NaN))).toThrow(TypeError);
    expect(() => encodeTime(new Date(Date.UTC(10000, 0, 1)))).toThrow(RangeError);
  });
});

describe("object identifiers", () => {
  it.each([
    ["2.5.29.17", "0603551d11"],
    ["1.2.840.10045.4.3.2", "06082a8648ce3d040302"],
    ["1.2.840.113549.1.1.11", "06092a864886f70d01010b"],
    ["1.3.6.1.5.5.7.48.1", "06082b06010505073001"],
    ["2.999.3", "0603883703"],
  ])("encodes %s", (dotted, expected) => {
    const encoded = oid(dotted);
    expect(hex(encoded)).toBe(expected);
    expect(decodeOidContent(encoded.subarray(2))).toBe(dotted);
  });

  it("rejects malformed dotted forms", () => {
    expect(() => oid("1")).toThrow(TypeError);
    expect(() => oid("1.40")).toThrow(TypeError);
    expect(() => oid("3.1")).toThrow(TypeError);
    expect(() => oid("1.2.03")).toThrow(TypeError);
  });
});

describe("strings, bits and tags", () => {
  it("encodes IA5String and refuses non-ASCII", () => {
    expect(hex(ia5String("a.b"))).toBe("1603612e62");
    expect(() => ia5String("é")).toThrow(TypeError);
  });

  it("encodes UTF8String as UTF-8 octets", () => {
    expect(hex(utf8String("é"))).toBe("0c02c3a9");
  });

  it("encodes BIT STRINGs with their unused-bit count", () => {
    expect(hex(bitString(Buffer.from([0xab])))).toBe("030200ab");
    expect(hex(namedBitString([0]))).toBe("03020780");
    expect(hex(namedBitString([0, 2]))).toBe("030205a0");
    expect(hex(namedBitString([5, 6]))).toBe("03020106");
    expect(hex(namedBitString([0, 5, 6]))).toBe("03020186");
    expect(hex(namedBitString([8]))).toBe("0303070080");
    expect(hex(namedBitString([]))).toBe("030100");
    expect(() => bitString(Buffer.from([0x81]), 1)).toThrow(RangeError);
  });

  it("encodes BOOLEAN, ENUMERATED and context tags", () => {
    expect(hex(boolean(true))).toBe("0101ff");
    expect(hex(boolean(false))).toBe("010100");
    expect(hex(enumerated(1))).toBe("0a0101");
    expect(hex(contextImplicit(6, Buffer.from("x")))).toBe("860178");
    expect(hex(contextImplicit(0, Buffer.from([0x86, 0x00]), true))).toBe("a0028600");
    expect(hex(contextExplicit(3, sequence()))).toBe("a3023000");
    expect(() => tlv(0x1f)).toThrow(RangeError);
  });
});

describe("readTlv", () => {
  it("reads short and long forms", () => {
    const long = octetString(Buffer.alloc(200));
    expect(readTlv(long, 0)).toEqual({ tag: 0x04, start: 0, contentStart: 3, end: 203 });
    expect(readTlv(Buffer.from("3000", "hex"), 0)).toEqual({ tag: 0x30, start: 0, contentStart: 2, end: 2 });
  });

  it("refuses BER and truncation", () => {
    expect(() => readTlv(Buffer.from("3080", "hex"), 0)).toThrow(/indefinite/);
    expect(() => readTlv(Buffer.from("04817f", "hex"), 0)).toThrow(/short form/);
    expect(() => readTlv(Buffer.from("0482000100", "hex"), 0)).toThrow(/leading zero/);
    expect(() => readTlv(Buffer.from("040300", "hex"), 0)).toThrow(/runs past/);
    expect(() => readTlv(Buffer.from("04", "hex"), 0)).toThrow(/truncated/);
  });
});
