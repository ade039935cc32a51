import { generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import {
  AlgorithmIdentifier,
  AuthorityKeyIdentifier,
  CRLNumber,
  CRLReason,
  CertificateList,
  Extension,
  KeyIdentifier,
  Name,
  RevokedCertificate,
  TBSCertList,
  Time,
  Version,
  id_ce_authorityKeyIdentifier,
  id_ce_cRLNumber,
  id_ce_cRLReasons,
} from "@peculiar/asn1-x509";
import { X509Crl, X509CrlReason } from "@peculiar/x509";
import { beforeAll, describe, expect, it } from "vitest";
import type { SignatureAlgorithmName } from "../../../src/signer/signer.js";
import { buildCrlTbs, type CrlEntry } from "../../../src/ca/x509/crl.js";
import { assembleSignedStructure } from "../../../src/ca/x509/signed.js";

const ISSUER_NAME_DER = Buffer.from(
  "3047310b3009060355040613024e4c31123010060355040a0c09416e63686f726167653124302206035504030c1b416e63686f7261676520496e7465726d6564696174652043412031",
  "hex",
);
const ISSUER_SKI = Buffer.from("5f2c1a3b4d6e7f8091a2b3c4d5e6f708192a3b4c", "hex");
const THIS_UPDATE = new Date(Date.UTC(2026, 2, 1, 12, 0, 0));
const NEXT_UPDATE = new Date(Date.UTC(2026, 2, 2, 12, 0, 0));
const ALGORITHM_OIDS: Record<SignatureAlgorithmName, string> = {
  "ecdsa-with-SHA256": "1.2.840.10045.4.3.2",
  "ecdsa-with-SHA384": "1.2.840.10045.4.3.3",
  sha256WithRSAEncryption: "1.2.840.113549.1.1.11",
};

const at = (month: number, day: number, hour = 0, minute = 0, year = 2026): Date =>
  new Date(Date.UTC(year, month - 1, day, hour, minute, 0));
const serial = (hex: string): Buffer => Buffer.from(hex, "hex");
const ENTRIES: readonly CrlEntry[] = [
  { serialNumber: serial("8f3a5c7e91b2d4f60718293a4b5c6d7e"), revocationDate: at(2, 28, 9, 30), reason: 1 },
  { serialNumber: serial("0f3a5c7e91b2d4f60718293a4b5c6d7e"), revocationDate: at(2, 28, 10) },
  { serialNumber: serial("00000000000000000000000000000042"), revocationDate: at(6, 1, 0, 0, 2050), reason: 4 },
  { serialNumber: serial("7f"), revocationDate: at(2, 28, 11), reason: 10 },
  { serialNumber: serial("ff"), revocationDate: at(2, 28, 12), reason: 5 },
];

function toArrayBuffer(bytes: Buffer): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer;
}

function referenceSerial(unsigned: Buffer): ArrayBuffer {
  let bytes = unsigned;
  while (bytes.length > 1 && bytes[0] === 0) bytes = bytes.subarray(1);
  return toArrayBuffer((bytes[0] as number) >= 0x80 ? Buffer.concat([Buffer.of(0), bytes]) : Buffer.from(bytes));
}

function ext(extnID: string, value: object): Extension {
  return new Extension({ extnID, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

/** The same TBSCertList through the @peculiar/asn1-x509 TBSCertList classes. */
function referenceTbs(algorithm: SignatureAlgorithmName, crlNumber: number, entries: readonly CrlEntry[]): Buffer {
  const tbs = new TBSCertList({
    version: Version.v2,
    signature: new AlgorithmIdentifier({
      algorithm: ALGORITHM_OIDS[algorithm],
      ...(algorithm === "sha256WithRSAEncryption" ? { parameters: null } : {}),
    }),
    issuer: AsnConvert.parse(ISSUER_NAME_DER, Name),
    thisUpdate: new Time(THIS_UPDATE),
    nextUpdate: new Time(NEXT_UPDATE),
    revokedCertificates:
      entries.length === 0
        ? undefined
        : entries.map(
            (entry) =>
              new RevokedCertificate({
                userCertificate: referenceSerial(entry.serialNumber),
                revocationDate: new Time(entry.revocationDate),
                crlEntryExtensions:
                  entry.reason === undefined || entry.reason === 0
                    ? undefined
                    : [ext(id_ce_cRLReasons, new CRLReason(entry.reason))],
              }),
          ),
    crlExtensions: [
      ext(id_ce_authorityKeyIdentifier, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(ISSUER_SKI) })),
      ext(id_ce_cRLNumber, new CRLNumber(crlNumber)),
    ],
  });
  return Buffer.from(AsnConvert.serialize(tbs));
}

function* generated(count: number): Generator<CrlEntry> {
  for (let i = 0; i < count; i++) {
    const serialNumber = Buffer.alloc(16);
    serialNumber.writeUInt32BE(i * 2654435761 >>> 0, 0);
    serialNumber.writeUInt32BE(i, 12);
    const reason = i % 3 === 0 ? undefined : (i % 6) + 1;
    yield { serialNumber, revocationDate: new Date(THIS_UPDATE.getTime() - i * 1000), reason };
  }
}

const base = {
  issuerNameDer: ISSUER_NAME_DER,
  issuerSubjectKeyIdentifier: ISSUER_SKI,
  thisUpdate: THIS_UPDATE,
  nextUpdate: NEXT_UPDATE,
};

describe("buildCrlTbs", () => {
  let issuerKey: { privateKey: KeyObject; publicKey: KeyObject };

  beforeAll(() => {
    issuerKey = generateKeyPairSync("ec", { namedCurve: "P-256" });
  });

  describe("matches the TBSCertList schema-class reference", () => {
    for (const algorithm of Object.keys(ALGORITHM_OIDS) as SignatureAlgorithmName[]) {
      it(`with entries, reasons present and absent (${algorithm})`, () => {
        const tbs = buildCrlTbs({ ...base, signatureAlgorithm: algorithm, crlNumber: 42n, entries: ENTRIES });
        expect(tbs.toString("hex")).toBe(referenceTbs(algorithm, 42, ENTRIES).toString("hex"));
      });
    }

    it("omits revokedCertificates for an empty list", () => {
      const tbs = buildCrlTbs({ ...base, signatureAlgorithm: "ecdsa-with-SHA256", crlNumber: 1n, entries: [] });
      expect(tbs.toString("hex")).toBe(referenceTbs("ecdsa-with-SHA256", 1, []).toString("hex"));
      const parsed = AsnConvert.parse(tbs, TBSCertList);
      expect(parsed.revokedCertificates).toBeUndefined();
      expect(parsed.crlExtensions).toHaveLength(2);
    });

    it("treats reason 0 (unspecified) as no reasonCode extension", () => {
      const entries = [{ ...(ENTRIES[1] as CrlEntry), reason: 0 }];
      const tbs = buildCrlTbs({ ...base, signatureAlgorithm: "ecdsa-with-SHA256", crlNumber: 7n, entries });
      expect(tbs.toString("hex")).toBe(referenceTbs("ecdsa-with-SHA256", 7, [ENTRIES[1] as CrlEntry]).toString("hex"));
    });

    it("handles a few thousand entries from a generator (growing buffer, long-form lengths)", () => {
      const count = 5000;
      const fields = { ...base, signatureAlgorithm: "ecdsa-with-SHA256" as const, crlNumber: 99n };
      const tbs = buildCrlTbs({ ...fields, entries: generated(count) });
      expect(tbs.toString("hex")).toBe(referenceTbs("ecdsa-with-SHA256", 99, [...generated(count)]).toString("hex"));
    });

    it("encodes CRL numbers beyond 2^53 exactly", () => {
      const crlNumber = (1n << 64n) + 1n;
      const tbs = buildCrlTbs({ ...base, signatureAlgorithm: "ecdsa-with-SHA256", crlNumber, entries: [] });
      // Extension { cRLNumber, OCTET STRING { INTEGER 0x010000000000000001 } }
      expect(tbs.toString("hex").endsWith("3012" + "0603551d14" + "040b" + "0209010000000000000001")).toBe(true);
    });
  });

  it("produces a CRL that @peculiar/x509 parses and whose signature verifies", () => {
    const tbs = buildCrlTbs({ ...base, signatureAlgorithm: "ecdsa-with-SHA256", crlNumber: 42n, entries: ENTRIES });
    const signature = sign("sha256", tbs, { key: issuerKey.privateKey, dsaEncoding: "der" });
    const der = assembleSignedStructure(tbs, "ecdsa-with-SHA256", signature);

    const list = AsnConvert.parse(der, CertificateList);
    expect(Buffer.from(list.signature).equals(signature)).toBe(true);
    expect(verify("sha256", tbs, { key: issuerKey.publicKey, dsaEncoding: "der" }, signature)).toBe(true);

    const crl = new X509Crl(new Uint8Array(der));
    expect(crl.version).toBe(Version.v2);
    expect(crl.thisUpdate.getTime()).toBe(THIS_UPDATE.getTime());
    expect(crl.nextUpdate?.getTime()).toBe(NEXT_UPDATE.getTime());
    expect(Buffer.from(crl.issuerName.toArrayBuffer()).equals(ISSUER_NAME_DER)).toBe(true);
    // @peculiar/x509 prints serials without the sign octet.
    expect(crl.entries.map((e) => [e.serialNumber, e.revocationDate.getTime(), e.reason])).toEqual([
      ["8f3a5c7e91b2d4f60718293a4b5c6d7e", ENTRIES[0]?.revocationDate.getTime(), X509CrlReason.keyCompromise],
      ["0f3a5c7e91b2d4f60718293a4b5c6d7e", ENTRIES[1]?.revocationDate.getTime(), undefined],
      ["42", ENTRIES[2]?.revocationDate.getTime(), X509CrlReason.superseded],
      ["7f", ENTRIES[3]?.revocationDate.getTime(), X509CrlReason.aACompromise],
      ["ff", ENTRIES[4]?.revocationDate.getTime(), X509CrlReason.cessationOfOperation],
    ]);
    expect(crl.extensions.map((e) => [e.type, e.critical])).toEqual([
      [id_ce_authorityKeyIdentifier, false],
      [id_ce_cRLNumber, false],
    ]);
  });

  describe("refuses", () => {
    const valid = { ...base, signatureAlgorithm: "ecdsa-with-SHA256" as const, crlNumber: 1n, entries: [] };

    it("unassigned or delta-only reason codes", () => {
      for (const reason of [7, 8, 11, -1]) {
        const entries = [{ ...(ENTRIES[0] as CrlEntry), reason }];
        expect(() => buildCrlTbs({ ...valid, entries })).toThrow(RangeError);
      }
    });

    it("CRL numbers out of range", () => {
      expect(() => buildCrlTbs({ ...valid, crlNumber: -1n })).toThrow(RangeError);
      expect(() => buildCrlTbs({ ...valid, crlNumber: 1n << 159n })).toThrow(RangeError);
      expect(buildCrlTbs({ ...valid, crlNumber: (1n << 159n) - 1n }).length).toBeGreaterThan(0);
    });

    it("nextUpdate not after thisUpdate, and a malformed issuer", () => {
      expect(() => buildCrlTbs({ ...valid, nextUpdate: THIS_UPDATE })).toThrow(RangeError);
      expect(() => buildCrlTbs({ ...valid, issuerNameDer: Buffer.from("3001", "hex") })).toThrow(TypeError);
      expect(() => buildCrlTbs({ ...valid, issuerSubjectKeyIdentifier: Buffer.alloc(0) })).toThrow(TypeError);
    });
  });
});
