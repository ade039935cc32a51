import {
  X509Certificate as NodeX509Certificate,
  createHash,
  generateKeyPairSync,
  sign,
  type KeyObject,
} from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { NameConstraints, SubjectPublicKeyInfo, TBSCertificate, id_ce_nameConstraints } from "@peculiar/asn1-x509";
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  CRLDistributionPointsExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  Pkcs10CertificateRequest,
  SubjectKeyIdentifierExtension,
  X509Certificate,
} from "@peculiar/x509";
import { beforeAll, describe, expect, it } from "vitest";
import type { SignatureAlgorithmName } from "../../../src/signer/signer.js";
import {
  buildCertificationRequestInfo,
  buildIntermediateTbs,
  buildName,
  buildRootTbs,
  certificateFields,
  serialNumberHex,
  subjectKeyIdentifier,
} from "../../../src/ca/x509/ca-certificates.js";
import { assembleSignedStructure } from "../../../src/ca/x509/signed.js";

const ROOT_SERIAL = Buffer.from("9a7b6c5d4e3f20110213243546576879", "hex");
const INTERMEDIATE_SERIAL = Buffer.from("1a7b6c5d4e3f20110213243546576879", "hex");
const NOT_BEFORE = new Date(Date.UTC(2025, 0, 1, 0, 0, 0));
const ROOT_NOT_AFTER = new Date(Date.UTC(2055, 0, 1, 0, 0, 0));
const INTERMEDIATE_NOT_AFTER = new Date(Date.UTC(2035, 0, 1, 0, 0, 0));
const CRL_URL = "http://ca.anchorage.test:8080/crl/root.crl";

type KeyPair = { privateKey: KeyObject; publicKey: KeyObject };
const spkiOf = (key: KeyObject): Buffer => key.export({ type: "spki", format: "der" });
const HASH: Record<SignatureAlgorithmName, string> = {
  "ecdsa-with-SHA256": "sha256",
  "ecdsa-with-SHA384": "sha384",
  sha256WithRSAEncryption: "sha256",
};

function signWith(key: KeyObject, algorithm: SignatureAlgorithmName, tbs: Buffer): Buffer {
  return sign(HASH[algorithm], tbs, { key, dsaEncoding: "der" });
}

/** The signed structure around `tbs`, signed by `key` with `algorithm`. */
function signedBy(key: KeyObject, algorithm: SignatureAlgorithmName, tbs: Buffer): Buffer {
  return assembleSignedStructure(tbs, algorithm, signWith(key, algorithm, tbs));
}

let selfSignedKey: KeyPair;
beforeAll(() => {
  selfSignedKey = generateKeyPairSync("ec", { namedCurve: "P-256" });
});

describe("buildName", () => {
  it("encodes C, O, OU, CN in that order with the pinned string types", () => {
    const der = buildName({ commonName: "Anchorage Intermediate CA 1", organization: "Anchorage", country: "NL" });
    expect(der.toString("hex")).toBe(
      "3047310b3009060355040613024e4c31123010060355040a0c09416e63686f726167653124302206035504030c1b" +
        "416e63686f7261676520496e7465726d6564696174652043412031",
    );
    const full = buildName({ commonName: "CN", organizationalUnit: "Ops", organization: "Org", country: "DE" });
    // Read the Name back through an independent parser, as the subject of a throwaway certificate.
    expect(new X509Certificate(new Uint8Array(selfSignedWithSubject(full))).subject).toBe("C=DE, O=Org, OU=Ops, CN=CN");
  });

  it("refuses bad attributes", () => {
    expect(() => buildName({ commonName: "" })).toThrow(/commonName/);
    expect(() => buildName({ commonName: "x".repeat(65) })).toThrow(/commonName/);
    expect(() => buildName({ commonName: " padded" })).toThrow(/commonName/);
    expect(() => buildName({ commonName: "ok", country: "nl" })).toThrow(/country/);
    expect(() => buildName({ commonName: "ok", organization: "" })).toThrow(/organization/);
    expect(buildName({ commonName: "é".repeat(64) }).length).toBeGreaterThan(128);
  });
});

function selfSignedWithSubject(subjectNameDer: Buffer): Buffer {
  const tbs = buildRootTbs({
    subjectNameDer,
    subjectPublicKeyInfo: spkiOf(selfSignedKey.publicKey),
    serialNumber: ROOT_SERIAL,
    notBefore: NOT_BEFORE,
    notAfter: ROOT_NOT_AFTER,
    signatureAlgorithm: "ecdsa-with-SHA256",
  });
  return signedBy(selfSignedKey.privateKey, "ecdsa-with-SHA256", tbs);
}

describe("CA certificates", () => {
  let rootKey: KeyPair;
  let intermediateKey: KeyPair;
  let rsaRootKey: KeyPair;
  const rootName = buildName({ commonName: "Anchorage Root CA", organization: "Anchorage" });
  const intermediateName = buildName({ commonName: "Anchorage Intermediate CA 1", organization: "Anchorage" });

  beforeAll(() => {
    rootKey = generateKeyPairSync("ec", { namedCurve: "P-384" });
    intermediateKey = generateKeyPairSync("ec", { namedCurve: "P-256" });
    rsaRootKey = generateKeyPairSync("rsa", { modulusLength: 2048 });
  });

  function root(key: KeyPair, algorithm: SignatureAlgorithmName): { der: Buffer; tbs: Buffer; signature: Buffer } {
    const tbs = buildRootTbs({
      subjectNameDer: rootName,
      subjectPublicKeyInfo: spkiOf(key.publicKey),
      serialNumber: ROOT_SERIAL,
      notBefore: NOT_BEFORE,
      notAfter: ROOT_NOT_AFTER,
      signatureAlgorithm: algorithm,
    });
    const signature = signWith(key.privateKey, algorithm, tbs);
    return { der: assembleSignedStructure(tbs, algorithm, signature), tbs, signature };
  }

  for (const [label, algorithm] of [["P-384", "ecdsa-with-SHA384"], ["RSA", "sha256WithRSAEncryption"]] as const) {
    it(`builds a self-signed root (${label}) with the root profile`, () => {
      const key = label === "RSA" ? rsaRootKey : rootKey;
      const { der } = root(key, algorithm);
      const node = new NodeX509Certificate(der);
      expect(node.ca).toBe(true);
      expect(node.verify(key.publicKey)).toBe(true);
      expect(node.checkIssued(node)).toBe(true);

      const cert = new X509Certificate(new Uint8Array(der));
      expect(cert.subject).toBe("O=Anchorage, CN=Anchorage Root CA");
      expect(cert.issuer).toBe(cert.subject);
      expect(cert.notAfter.getTime()).toBe(ROOT_NOT_AFTER.getTime());
      const basic = cert.getExtension(BasicConstraintsExtension);
      expect([basic?.critical, basic?.ca, basic?.pathLength]).toEqual([true, true, undefined]);
      const keyUsage = cert.getExtension(KeyUsagesExtension);
      expect([keyUsage?.critical, keyUsage?.usages]).toEqual([true, KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign]);
      const ski = cert.getExtension(SubjectKeyIdentifierExtension);
      expect(ski?.keyId).toBe(subjectKeyIdentifier(spkiOf(key.publicKey)).toString("hex"));
      expect(cert.getExtension(AuthorityKeyIdentifierExtension)?.keyId).toBe(ski?.keyId);
    });
  }

  it("builds an intermediate with pathLen 0, digitalSignature, name constraints and a CRL DP", () => {
    const rootCert = root(rootKey, "ecdsa-with-SHA384");
    const rootFields = certificateFields(rootCert.der);
    const tbs = buildIntermediateTbs({
      subjectNameDer: intermediateName,
      subjectPublicKeyInfo: spkiOf(intermediateKey.publicKey),
      serialNumber: INTERMEDIATE_SERIAL,
      notBefore: NOT_BEFORE,
      notAfter: INTERMEDIATE_NOT_AFTER,
      signatureAlgorithm: "ecdsa-with-SHA384",
      issuerNameDer: rootFields.subjectNameDer,
      issuerSubjectKeyIdentifier: rootFields.subjectKeyIdentifier,
      nameConstraints: { permittedUris: ["anchorage.test"], permittedDnsNames: ["anchorage.test", "svc"] },
      crlDistributionPointUrl: CRL_URL,
    });
    const der = signedBy(rootKey.privateKey, "ecdsa-with-SHA384", tbs);

    const node = new NodeX509Certificate(der);
    expect(node.verify(rootKey.publicKey)).toBe(true);
    expect(node.checkIssued(new NodeX509Certificate(rootCert.der))).toBe(true);

    const cert = new X509Certificate(new Uint8Array(der));
    const basic = cert.getExtension(BasicConstraintsExtension);
    expect([basic?.critical, basic?.ca, basic?.pathLength]).toEqual([true, true, 0]);
    expect(cert.getExtension(KeyUsagesExtension)?.usages).toBe(
      KeyUsageFlags.digitalSignature | KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign,
    );
    const aki = cert.getExtension(AuthorityKeyIdentifierExtension);
    expect(aki?.keyId).toBe(rootFields.subjectKeyIdentifier.toString("hex"));
    expect(
      cert.getExtension(CRLDistributionPointsExtension)?.distributionPoints[0]?.distributionPoint?.fullName?.[0]
        ?.uniformResourceIdentifier,
    ).toBe(CRL_URL);

    const constraints = cert.extensions.find((e) => e.type === id_ce_nameConstraints);
    expect(constraints?.critical).toBe(true);
    const parsed = AsnConvert.parse(constraints?.value as ArrayBuffer, NameConstraints);
    expect(parsed.excludedSubtrees).toBeUndefined();
    expect(parsed.permittedSubtrees?.map((s) => s.base.uniformResourceIdentifier ?? `dns:${s.base.dNSName}`)).toEqual([
      "anchorage.test",
      "dns:anchorage.test",
      "dns:svc",
    ]);
  });

  it("omits name constraints and the CRL DP when not asked, and honours pathLenConstraint", () => {
    const tbs = buildIntermediateTbs({
      subjectNameDer: intermediateName,
      subjectPublicKeyInfo: spkiOf(intermediateKey.publicKey),
      serialNumber: INTERMEDIATE_SERIAL,
      notBefore: NOT_BEFORE,
      notAfter: INTERMEDIATE_NOT_AFTER,
      signatureAlgorithm: "ecdsa-with-SHA384",
      issuerNameDer: rootName,
      issuerSubjectKeyIdentifier: subjectKeyIdentifier(spkiOf(rootKey.publicKey)),
      pathLenConstraint: 1,
    });
    const parsed = AsnConvert.parse(tbs, TBSCertificate);
    expect(parsed.extensions?.map((e) => e.extnID)).toEqual(["2.5.29.19", "2.5.29.15", "2.5.29.14", "2.5.29.35"]);
    const der = signedBy(rootKey.privateKey, "ecdsa-with-SHA384", tbs);
    expect(new X509Certificate(new Uint8Array(der)).getExtension(BasicConstraintsExtension)?.pathLength).toBe(1);
  });

  it("refuses bad intermediate inputs", () => {
    const valid = {
      subjectNameDer: intermediateName,
      subjectPublicKeyInfo: spkiOf(intermediateKey.publicKey),
      serialNumber: INTERMEDIATE_SERIAL,
      notBefore: NOT_BEFORE,
      notAfter: INTERMEDIATE_NOT_AFTER,
      signatureAlgorithm: "ecdsa-with-SHA384" as const,
      issuerNameDer: rootName,
      issuerSubjectKeyIdentifier: Buffer.alloc(20, 1),
    };
    expect(() => buildIntermediateTbs({ ...valid, nameConstraints: {} })).toThrow(/at least one/);
    const withScheme = { permittedUris: ["spiffe://anchorage.test"] };
    expect(() => buildIntermediateTbs({ ...valid, nameConstraints: withScheme })).toThrow(/permittedUris/);
    expect(() => buildIntermediateTbs({ ...valid, pathLenConstraint: -1 })).toThrow(RangeError);
    const ldap = "ldap://x";
    expect(() => buildIntermediateTbs({ ...valid, crlDistributionPointUrl: ldap })).toThrow(/crlDistributionPointUrl/);
    expect(() => buildIntermediateTbs({ ...valid, notAfter: NOT_BEFORE })).toThrow(RangeError);
    expect(() => buildIntermediateTbs({ ...valid, serialNumber: Buffer.of(0) })).toThrow(RangeError);
    // A Name in BER (long-form length where the short form fits) would be silently re-encoded.
    const ber = Buffer.concat([Buffer.from([0x30, 0x81, rootName[1] as number]), rootName.subarray(2)]);
    expect(() => buildIntermediateTbs({ ...valid, issuerNameDer: ber })).toThrow(/canonical DER/);
  });

  it("reads the fields of a stored certificate back byte for byte", () => {
    const { der, tbs, signature } = root(rootKey, "ecdsa-with-SHA384");
    const fields = certificateFields(der);
    expect(fields.subjectNameDer.equals(rootName)).toBe(true);
    expect(fields.issuerNameDer.equals(rootName)).toBe(true);
    expect(fields.subjectPublicKeyInfo.equals(spkiOf(rootKey.publicKey))).toBe(true);
    expect(fields.subjectKeyIdentifier.equals(subjectKeyIdentifier(spkiOf(rootKey.publicKey)))).toBe(true);
    expect(fields.serialNumberHex).toBe(ROOT_SERIAL.toString("hex"));
    expect(fields.notBefore.getTime()).toBe(NOT_BEFORE.getTime());
    expect(fields.notAfter.getTime()).toBe(ROOT_NOT_AFTER.getTime());
    expect(fields.tbsDer.equals(tbs)).toBe(true);
    expect(fields.signatureAlgorithmOid).toBe("1.2.840.10045.4.3.3");
    expect(fields.signatureValue.equals(signature)).toBe(true);

    expect(() => certificateFields(Buffer.concat([der, Buffer.of(0)]))).toThrow(TypeError);
    expect(() => certificateFields(der.subarray(0, der.length - 1))).toThrow(TypeError);
  });

  it("computes the SKI by RFC 5280 method 1", () => {
    const spki = spkiOf(intermediateKey.publicKey);
    const key = Buffer.from(AsnConvert.parse(spki, SubjectPublicKeyInfo).subjectPublicKey);
    expect(subjectKeyIdentifier(spki).equals(createHash("sha1").update(key).digest())).toBe(true);
  });

  it("builds a CertificationRequestInfo that makes a verifiable PKCS#10 request", async () => {
    const info = buildCertificationRequestInfo({
      subjectNameDer: intermediateName,
      subjectPublicKeyInfo: spkiOf(intermediateKey.publicKey),
    });
    expect(info.subarray(info.length - 2).toString("hex")).toBe("a000"); // empty attributes [0]
    const der = signedBy(intermediateKey.privateKey, "ecdsa-with-SHA256", info);
    const csr = new Pkcs10CertificateRequest(new Uint8Array(der));
    expect(csr.subject).toBe("O=Anchorage, CN=Anchorage Intermediate CA 1");
    expect(await csr.verify()).toBe(true);
  });
});

describe("serialNumberHex", () => {
  it("is the minimal unsigned value in lower-case hex", () => {
    expect(serialNumberHex(Buffer.from("8F00", "hex"))).toBe("8f00");
    expect(serialNumberHex(Buffer.from("008f00", "hex"))).toBe("8f00");
    expect(serialNumberHex(Buffer.from("000f00", "hex"))).toBe("0f00");
    expect(serialNumberHex(Buffer.from("00", "hex"))).toBe("00");
  });
});
