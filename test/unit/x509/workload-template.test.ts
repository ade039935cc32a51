import { X509Certificate as NodeX509Certificate, createHash, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import {
  AccessDescription,
  AlgorithmIdentifier,
  AuthorityInfoAccessSyntax,
  AuthorityKeyIdentifier,
  BasicConstraints,
  CRLDistributionPoints,
  DistributionPoint,
  DistributionPointName,
  ExtendedKeyUsage,
  Extension,
  Extensions,
  GeneralName,
  KeyIdentifier,
  KeyUsage,
  KeyUsageFlags,
  Name,
  SubjectAlternativeName,
  SubjectKeyIdentifier,
  SubjectPublicKeyInfo,
  TBSCertificate,
  Validity,
  Version,
} from "@peculiar/asn1-x509";
import {
  AuthorityInfoAccessExtension,
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  CRLDistributionPointsExtension,
  ExtendedKeyUsageExtension,
  KeyUsagesExtension,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
  X509Certificate,
} from "@peculiar/x509";
import { beforeAll, describe, expect, it } from "vitest";
import type { SignatureAlgorithmName } from "../../../src/signer/signer.js";
import { WorkloadCertificateTemplate, type WorkloadIssuer } from "../../../src/ca/x509/workload-template.js";
import { assembleSignedStructure } from "../../../src/ca/x509/signed.js";

// Fixed inputs. The names and URLs look like the development PKI's; the bytes are what matter.
const ISSUER_NAME_DER = Buffer.from(
  "3047310b3009060355040613024e4c31123010060355040a0c09416e63686f726167653124302206035504030c1b416e63686f7261676520496e7465726d6564696174652043412031",
  "hex",
);
const ISSUER_SKI = Buffer.from("5f2c1a3b4d6e7f8091a2b3c4d5e6f708192a3b4c", "hex");
const URLS = {
  crlDistributionPointUrl: "http://ca.anchorage.test:8080/crl/intermediate-1.crl",
  ocspUrl: "http://ca.anchorage.test:8080/ocsp",
  caIssuersUrl: "http://ca.anchorage.test:8080/ca/intermediate-1.crt",
};
const SERIAL_HIGH_BIT = Buffer.from("8f3a5c7e91b2d4f60718293a4b5c6d7e", "hex");
const SERIAL_LOW = Buffer.from("0f3a5c7e91b2d4f60718293a4b5c6d7e", "hex");
const NOT_BEFORE = new Date(Date.UTC(2026, 2, 1, 11, 55, 0));
const NOT_AFTER = new Date(Date.UTC(2026, 2, 1, 13, 0, 0));
const NOT_AFTER_2050 = new Date(Date.UTC(2050, 0, 1, 0, 0, 0));
const SPIFFE_ID = "spiffe://anchorage.test/ns/default/sa/web";
const DNS_LISTS: readonly (readonly string[])[] = [
  [],
  ["web.default.svc"],
  ["web.default.svc", "web.default.svc.cluster.local", "web"],
];
const ALGORITHMS: readonly SignatureAlgorithmName[] = [
  "ecdsa-with-SHA256",
  "ecdsa-with-SHA384",
  "sha256WithRSAEncryption",
];
const ALGORITHM_OIDS: Record<SignatureAlgorithmName, string> = {
  "ecdsa-with-SHA256": "1.2.840.10045.4.3.2",
  "ecdsa-with-SHA384": "1.2.840.10045.4.3.3",
  sha256WithRSAEncryption: "1.2.840.113549.1.1.11",
};

// A P-256 SubjectPublicKeyInfo generated once and pinned, for the golden TBS.
const GOLDEN_SPKI = Buffer.from(
  "3059301306072a8648ce3d020106082a8648ce3d0301070342000417d37577a723d45bbef405417a8dcc86da66d85bc5bd8f577fc2ed17232894e67c90c02ce312bb47051bfe5be234f889e03f4ad5b5d838b834ed86c26ee1e87d",
  "hex",
);
// Pinned output of buildTbs for GOLDEN_SPKI, SERIAL_HIGH_BIT, NOT_BEFORE..NOT_AFTER, SPIFFE_ID and
// ["web.default.svc"], issued with ecdsa-with-SHA256. Checked against the schema-class reference below
// and `openssl asn1parse` when it was pinned; any change to it must be deliberate.
const GOLDEN_TBS_HEX = [
  "30820281a0030201020211008f3a5c7e91b2d4f60718293a4b5c6d7e300a06082a8648ce3d0403023047310b3009060355040613024e4c31",
  "123010060355040a0c09416e63686f726167653124302206035504030c1b416e63686f7261676520496e7465726d65646961746520434120",
  "31301e170d3236303330313131353530305a170d3236303330313133303030305a30003059301306072a8648ce3d020106082a8648ce3d03",
  "01070342000417d37577a723d45bbef405417a8dcc86da66d85bc5bd8f577fc2ed17232894e67c90c02ce312bb47051bfe5be234f889e03f",
  "4ad5b5d838b834ed86c26ee1e87da38201933082018f300c0603551d130101ff04023000300e0603551d0f0101ff040403020780301d0603",
  "551d250416301406082b0601050507030106082b06010505070302301d0603551d0e0416041476cd6a8454ab20df1b8e08ca8a466720acd3",
  "7f13301f0603551d230418301680145f2c1a3b4d6e7f8091a2b3c4d5e6f708192a3b4c30480603551d110101ff043e303c86297370696666",
  "653a2f2f616e63686f726167652e746573742f6e732f64656661756c742f73612f776562820f7765622e64656661756c742e737663304506",
  "03551d1f043e303c303aa038a0368634687474703a2f2f63612e616e63686f726167652e746573743a383038302f63726c2f696e7465726d",
  "6564696174652d312e63726c307f06082b0601050507010104733071302e06082b060105050730018622687474703a2f2f63612e616e6368",
  "6f726167652e746573743a383038302f6f637370303f06082b060105050730028633687474703a2f2f63612e616e63686f726167652e7465",
  "73743a383038302f63612f696e7465726d6564696174652d312e637274",
].join("");

interface TestKey {
  label: string;
  keyType: "ec" | "rsa";
  spki: Buffer;
}

function issuerFor(signatureAlgorithm: SignatureAlgorithmName): WorkloadIssuer {
  return { issuerNameDer: ISSUER_NAME_DER, issuerSubjectKeyIdentifier: ISSUER_SKI, signatureAlgorithm, ...URLS };
}

function spkiOf(key: KeyObject): Buffer {
  return key.export({ type: "spki", format: "der" });
}

/** SHA-1 of the subjectPublicKey BIT STRING value, computed through the schema classes. */
function referenceSki(spki: Buffer): Buffer {
  const parsed = AsnConvert.parse(spki, SubjectPublicKeyInfo);
  return createHash("sha1").update(Buffer.from(parsed.subjectPublicKey)).digest();
}

function referenceSerial(unsigned: Buffer): ArrayBuffer {
  let bytes = unsigned;
  while (bytes.length > 1 && bytes[0] === 0) bytes = bytes.subarray(1);
  const content = (bytes[0] as number) >= 0x80 ? Buffer.concat([Buffer.of(0), bytes]) : Buffer.from(bytes);
  return content.buffer.slice(content.byteOffset, content.byteOffset + content.length) as ArrayBuffer;
}

function ext(extnID: string, critical: boolean, value: object): Extension {
  return new Extension({ extnID, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

/** The same TBSCertificate through @peculiar/asn1-x509 schema classes: the independent reference. */
function referenceTbs(
  signatureAlgorithm: SignatureAlgorithmName,
  fields: {
    serialNumber: Buffer;
    notBefore: Date;
    notAfter: Date;
    spki: Buffer;
    keyType: "ec" | "rsa";
    dnsNames: readonly string[];
  },
): Buffer {
  const keyUsage =
    fields.keyType === "rsa"
      ? KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment
      : KeyUsageFlags.digitalSignature;
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: referenceSerial(fields.serialNumber),
    signature: new AlgorithmIdentifier({
      algorithm: ALGORITHM_OIDS[signatureAlgorithm],
      ...(signatureAlgorithm === "sha256WithRSAEncryption" ? { parameters: null } : {}),
    }),
    issuer: AsnConvert.parse(ISSUER_NAME_DER, Name),
    validity: new Validity({ notBefore: fields.notBefore, notAfter: fields.notAfter }),
    subject: new Name(),
    subjectPublicKeyInfo: AsnConvert.parse(fields.spki, SubjectPublicKeyInfo),
    extensions: new Extensions([
      ext("2.5.29.19", true, new BasicConstraints()),
      ext("2.5.29.15", true, new KeyUsage(keyUsage)),
      ext("2.5.29.37", false, new ExtendedKeyUsage(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"])),
      ext("2.5.29.14", false, new SubjectKeyIdentifier(referenceSki(fields.spki))),
      ext("2.5.29.35", false, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(ISSUER_SKI) })),
      ext(
        "2.5.29.17",
        true,
        new SubjectAlternativeName([
          new GeneralName({ uniformResourceIdentifier: SPIFFE_ID }),
          ...fields.dnsNames.map((dNSName) => new GeneralName({ dNSName })),
        ]),
      ),
      ext(
        "2.5.29.31",
        false,
        new CRLDistributionPoints([
          new DistributionPoint({
            distributionPoint: new DistributionPointName({
              fullName: [new GeneralName({ uniformResourceIdentifier: URLS.crlDistributionPointUrl })],
            }),
          }),
        ]),
      ),
      ext(
        "1.3.6.1.5.5.7.1.1",
        false,
        new AuthorityInfoAccessSyntax([
          new AccessDescription({
            accessMethod: "1.3.6.1.5.5.7.48.1",
            accessLocation: new GeneralName({ uniformResourceIdentifier: URLS.ocspUrl }),
          }),
          new AccessDescription({
            accessMethod: "1.3.6.1.5.5.7.48.2",
            accessLocation: new GeneralName({ uniformResourceIdentifier: URLS.caIssuersUrl }),
          }),
        ]),
      ),
    ]),
  });
  return Buffer.from(AsnConvert.serialize(tbs));
}

describe("WorkloadCertificateTemplate", () => {
  let keys: TestKey[];
  let issuerKey: { privateKey: KeyObject; publicKey: KeyObject };

  beforeAll(() => {
    const p256 = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" });
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    keys = [
      { label: "EC P-256", keyType: "ec", spki: spkiOf(p256.publicKey) },
      { label: "EC P-384", keyType: "ec", spki: spkiOf(p384.publicKey) },
      { label: "RSA 2048", keyType: "rsa", spki: spkiOf(rsa.publicKey) },
    ];
    issuerKey = generateKeyPairSync("ec", { namedCurve: "P-256" });
  });

  describe("matches the schema-class reference byte for byte", () => {
    for (const [keyIndex, label] of ["EC P-256", "EC P-384", "RSA 2048"].entries()) {
      for (const dnsNames of DNS_LISTS) {
        it(`${label} key, ${dnsNames.length} DNS name(s), every signature algorithm`, () => {
          const key = keys[keyIndex] as TestKey;
          for (const algorithm of ALGORITHMS) {
            const template = new WorkloadCertificateTemplate(issuerFor(algorithm));
            for (const serialNumber of [SERIAL_HIGH_BIT, SERIAL_LOW]) {
              const fields = {
                serialNumber,
                notBefore: NOT_BEFORE,
                notAfter: NOT_AFTER,
                spki: key.spki,
                keyType: key.keyType,
                dnsNames,
              };
              const tbs = template.buildTbs({ ...fields, subjectPublicKeyInfo: key.spki, spiffeId: SPIFFE_ID });
              expect(tbs.toString("hex")).toBe(referenceTbs(algorithm, fields).toString("hex"));
            }
          }
        });
      }
    }

    it("uses GeneralizedTime for a notAfter from 2050 on", () => {
      const key = keys[0] as TestKey;
      const template = new WorkloadCertificateTemplate(issuerFor("ecdsa-with-SHA256"));
      const fields = {
        serialNumber: SERIAL_HIGH_BIT,
        notBefore: NOT_BEFORE,
        notAfter: NOT_AFTER_2050,
        spki: key.spki,
        keyType: key.keyType,
        dnsNames: DNS_LISTS[1] as readonly string[],
      };
      const tbs = template.buildTbs({ ...fields, subjectPublicKeyInfo: key.spki, spiffeId: SPIFFE_ID });
      expect(tbs.toString("hex")).toBe(referenceTbs("ecdsa-with-SHA256", fields).toString("hex"));
      expect(tbs.includes(Buffer.from("\x18\x0f20500101000000Z", "latin1"))).toBe(true);
    });

    it("truncates milliseconds like the reference does", () => {
      const key = keys[0] as TestKey;
      const template = new WorkloadCertificateTemplate(issuerFor("ecdsa-with-SHA256"));
      const withMillis = {
        notBefore: new Date(NOT_BEFORE.getTime() + 999),
        notAfter: new Date(NOT_AFTER.getTime() + 1),
      };
      const common = {
        serialNumber: SERIAL_HIGH_BIT,
        subjectPublicKeyInfo: key.spki,
        keyType: "ec" as const,
        spiffeId: SPIFFE_ID,
        dnsNames: [],
      };
      expect(template.buildTbs({ ...common, ...withMillis }).equals(
        template.buildTbs({ ...common, notBefore: NOT_BEFORE, notAfter: NOT_AFTER }),
      )).toBe(true);
    });
  });

  it("pins the TBS for fixed inputs (golden hex)", () => {
    const template = new WorkloadCertificateTemplate(issuerFor("ecdsa-with-SHA256"));
    const tbs = template.buildTbs({
      serialNumber: SERIAL_HIGH_BIT,
      notBefore: NOT_BEFORE,
      notAfter: NOT_AFTER,
      subjectPublicKeyInfo: GOLDEN_SPKI,
      keyType: "ec",
      spiffeId: SPIFFE_ID,
      dnsNames: ["web.default.svc"],
    });
    expect(tbs.toString("hex")).toBe(GOLDEN_TBS_HEX);
  });

  describe("signed certificate, parsed by @peculiar/x509 and node:crypto", () => {
    for (const [keyIndex, label] of ["EC P-256", "EC P-384", "RSA 2048"].entries()) {
      it(`${label} key`, () => {
        const key = keys[keyIndex] as TestKey;
        const dnsNames = DNS_LISTS[2] as readonly string[];
        const template = new WorkloadCertificateTemplate(issuerFor("ecdsa-with-SHA256"));
        const tbs = template.buildTbs({
          serialNumber: SERIAL_HIGH_BIT,
          notBefore: NOT_BEFORE,
          notAfter: NOT_AFTER_2050,
          subjectPublicKeyInfo: key.spki,
          keyType: key.keyType,
          spiffeId: SPIFFE_ID,
          dnsNames,
        });
        const signature = sign("sha256", tbs, { key: issuerKey.privateKey, dsaEncoding: "der" });
        const der = assembleSignedStructure(tbs, "ecdsa-with-SHA256", signature);

        const node = new NodeX509Certificate(der);
        expect(node.verify(issuerKey.publicKey)).toBe(true);
        expect(node.subject).toBeUndefined(); // an empty Name
        expect(node.subjectAltName).toBe(`URI:${SPIFFE_ID}, ${dnsNames.map((n) => `DNS:${n}`).join(", ")}`);

        const cert = new X509Certificate(new Uint8Array(der));
        expect(cert.serialNumber).toBe(SERIAL_HIGH_BIT.toString("hex"));
        expect(cert.subject).toBe("");
        expect(Buffer.from(cert.subjectName.toArrayBuffer()).toString("hex")).toBe("3000");
        expect(Buffer.from(cert.issuerName.toArrayBuffer()).equals(ISSUER_NAME_DER)).toBe(true);
        expect(cert.notBefore.getTime()).toBe(NOT_BEFORE.getTime());
        expect(cert.notAfter.getTime()).toBe(NOT_AFTER_2050.getTime());
        expect(Buffer.from(cert.publicKey.rawData).equals(key.spki)).toBe(true);
        expect(cert.extensions.map((e) => e.type)).toEqual([
          "2.5.29.19",
          "2.5.29.15",
          "2.5.29.37",
          "2.5.29.14",
          "2.5.29.35",
          "2.5.29.17",
          "2.5.29.31",
          "1.3.6.1.5.5.7.1.1",
        ]);

        const basic = cert.getExtension(BasicConstraintsExtension);
        expect(basic?.critical).toBe(true);
        expect(basic?.ca).toBe(false);
        expect(basic?.pathLength).toBeUndefined();

        const keyUsage = cert.getExtension(KeyUsagesExtension);
        expect(keyUsage?.critical).toBe(true);
        expect(keyUsage?.usages).toBe(key.keyType === "rsa" ? 1 | 4 : 1); // digitalSignature (+ keyEncipherment)

        const eku = cert.getExtension(ExtendedKeyUsageExtension);
        expect(eku?.critical).toBe(false);
        expect(eku?.usages).toEqual(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);

        const ski = cert.getExtension(SubjectKeyIdentifierExtension);
        expect(ski?.critical).toBe(false);
        expect(ski?.keyId).toBe(referenceSki(key.spki).toString("hex"));

        const aki = cert.getExtension(AuthorityKeyIdentifierExtension);
        expect(aki?.critical).toBe(false);
        expect(aki?.keyId).toBe(ISSUER_SKI.toString("hex"));
        expect(aki?.certId).toBeUndefined();

        const san = cert.getExtension(SubjectAlternativeNameExtension);
        expect(san?.critical).toBe(true);
        expect(san?.names.items.map((n) => [n.type, n.value])).toEqual([
          ["url", SPIFFE_ID],
          ...dnsNames.map((n) => ["dns", n]),
        ]);

        const crlDp = cert.getExtension(CRLDistributionPointsExtension);
        expect(crlDp?.critical).toBe(false);
        expect(crlDp?.distributionPoints).toHaveLength(1);
        const fullName = crlDp?.distributionPoints[0]?.distributionPoint?.fullName;
        expect(fullName?.map((n) => n.uniformResourceIdentifier)).toEqual([URLS.crlDistributionPointUrl]);

        const aia = cert.getExtension(AuthorityInfoAccessExtension);
        expect(aia?.critical).toBe(false);
        expect(aia?.ocsp.map((n) => [n.type, n.value])).toEqual([["url", URLS.ocspUrl]]);
        expect(aia?.caIssuers.map((n) => [n.type, n.value])).toEqual([["url", URLS.caIssuersUrl]]);
      });
    }
  });

  describe("refuses input it cannot encode correctly", () => {
    const template = (): WorkloadCertificateTemplate => new WorkloadCertificateTemplate(issuerFor("ecdsa-with-SHA256"));
    const valid = (): Parameters<WorkloadCertificateTemplate["buildTbs"]>[0] => ({
      serialNumber: SERIAL_HIGH_BIT,
      notBefore: NOT_BEFORE,
      notAfter: NOT_AFTER,
      subjectPublicKeyInfo: (keys[0] as TestKey).spki,
      keyType: "ec",
      spiffeId: SPIFFE_ID,
      dnsNames: ["web.default.svc"],
    });

    it("a keyType that does not match the SPKI", () => {
      expect(() => template().buildTbs({ ...valid(), keyType: "rsa" })).toThrow(/not keyType "rsa"/);
      expect(() =>
        template().buildTbs({ ...valid(), subjectPublicKeyInfo: (keys[2] as TestKey).spki, keyType: "ec" }),
      ).toThrow(/rsa key, not keyType "ec"/);
    });

    it("an unsupported key algorithm", () => {
      const ed25519 = spkiOf(generateKeyPairSync("ed25519").publicKey);
      expect(() => template().buildTbs({ ...valid(), subjectPublicKeyInfo: ed25519 })).toThrow(/unsupported key/);
    });

    it("a malformed SPKI", () => {
      const spki = (keys[0] as TestKey).spki;
      const trailing = Buffer.concat([spki, Buffer.of(0)]);
      const truncated = spki.subarray(0, spki.length - 1);
      expect(() => template().buildTbs({ ...valid(), subjectPublicKeyInfo: trailing })).toThrow(TypeError);
      expect(() => template().buildTbs({ ...valid(), subjectPublicKeyInfo: truncated })).toThrow(TypeError);
    });

    it("serial numbers that are zero or longer than 20 octets", () => {
      expect(() => template().buildTbs({ ...valid(), serialNumber: Buffer.alloc(16) })).toThrow(RangeError);
      expect(() => template().buildTbs({ ...valid(), serialNumber: Buffer.alloc(20, 0xff) })).toThrow(RangeError);
      expect(template().buildTbs({ ...valid(), serialNumber: Buffer.alloc(20, 0x7f) }).length).toBeGreaterThan(0);
    });

    it("validity that is empty, inverted or out of range", () => {
      expect(() => template().buildTbs({ ...valid(), notAfter: NOT_BEFORE })).toThrow(RangeError);
      expect(() => template().buildTbs({ ...valid(), notBefore: new Date(Number.NaN) })).toThrow(TypeError);
      expect(() => template().buildTbs({ ...valid(), notBefore: new Date(Date.UTC(1949, 0, 1)) })).toThrow(RangeError);
    });

    it("names that are empty, not spiffe:// or not IA5", () => {
      expect(() => template().buildTbs({ ...valid(), spiffeId: "https://anchorage.test/x" })).toThrow(/spiffe/);
      expect(() => template().buildTbs({ ...valid(), spiffeId: "spiffe://anchorage.test/é" })).toThrow(/IA5/);
      expect(() => template().buildTbs({ ...valid(), dnsNames: ["bücher.example"] })).toThrow(/IA5/);
      expect(() => template().buildTbs({ ...valid(), dnsNames: [""] })).toThrow(/empty/);
    });

    it("a bad issuer", () => {
      const issuer = issuerFor("ecdsa-with-SHA256");
      const notAName = Buffer.from("3100", "hex");
      expect(() => new WorkloadCertificateTemplate({ ...issuer, issuerNameDer: notAName })).toThrow(/issuerNameDer/);
      expect(() => new WorkloadCertificateTemplate({ ...issuer, issuerSubjectKeyIdentifier: Buffer.alloc(0) })).toThrow(
        /issuerSubjectKeyIdentifier/,
      );
      expect(() => new WorkloadCertificateTemplate({ ...issuer, ocspUrl: "ocsp.anchorage.test" })).toThrow(/ocspUrl/);
      expect(() =>
        new WorkloadCertificateTemplate({ ...issuer, signatureAlgorithm: "md5WithRSA" as SignatureAlgorithmName }),
      ).toThrow(/unsupported signature algorithm/);
    });
  });

  it("returns a fresh buffer per call", () => {
    const template = new WorkloadCertificateTemplate(issuerFor("ecdsa-with-SHA256"));
    const fields = {
      serialNumber: SERIAL_HIGH_BIT,
      notBefore: NOT_BEFORE,
      notAfter: NOT_AFTER,
      subjectPublicKeyInfo: GOLDEN_SPKI,
      keyType: "ec" as const,
      spiffeId: SPIFFE_ID,
      dnsNames: [],
    };
    const first = template.buildTbs(fields);
    const copy = Buffer.from(first);
    first.fill(0);
    expect(template.buildTbs(fields).equals(copy)).toBe(true);
  });

  it("appends iPAddress SANs after the DNS names, for the service's own certificate", () => {
    const template = new WorkloadCertificateTemplate(issuerFor("ecdsa-with-SHA256"));
    const fields = {
      serialNumber: SERIAL_HIGH_BIT,
      notBefore: NOT_BEFORE,
      notAfter: NOT_AFTER,
      subjectPublicKeyInfo: GOLDEN_SPKI,
      keyType: "ec" as const,
      spiffeId: SPIFFE_ID,
      dnsNames: ["localhost"],
    };
    const withAddresses = template.buildTbs({
      ...fields,
      ipAddresses: [Buffer.from([127, 0, 0, 1]), Buffer.from("00000000000000000000000000000001", "hex")],
    });
    const tbs = AsnConvert.parse(withAddresses, TBSCertificate);
    const sanExtension = tbs.extensions?.find((extension) => extension.extnID === "2.5.29.17");
    const names = AsnConvert.parse(sanExtension?.extnValue.buffer as ArrayBuffer, SubjectAlternativeName);
    expect(names.map((name) => name.uniformResourceIdentifier ?? name.dNSName ?? name.iPAddress)).toEqual([
      SPIFFE_ID,
      "localhost",
      "127.0.0.1",
      "::1",
    ]);
    expect(() => template.buildTbs({ ...fields, ipAddresses: [Buffer.from([1, 2, 3])] })).toThrow(/4 or 16 octets/);
    // Without addresses the encoding is exactly what it was before they existed.
    expect(template.buildTbs({ ...fields, ipAddresses: [] }).equals(template.buildTbs(fields))).toBe(true);
  });
});
