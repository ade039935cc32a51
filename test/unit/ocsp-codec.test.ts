import { execFileSync, spawnSync } from "node:child_process";
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildIntermediateTbs,
  buildName,
  buildRootTbs,
  certificateFields,
  inspectSubjectPublicKeyInfo,
} from "../../src/ca/x509/ca-certificates.js";
import { contextExplicit, integer, nullValue, octetString, oid, sequence } from "../../src/ca/x509/der.js";
import { buildOcspSignerTbs } from "../../src/ca/x509/ocsp-signer.js";
import { assembleSignedStructure } from "../../src/ca/x509/signed.js";
import { WorkloadCertificateTemplate } from "../../src/ca/x509/workload-template.js";
import {
  OcspMalformedRequestError,
  assembleOcspResponse,
  buildResponseData,
  certIdMatches,
  issuerHashes,
  ocspErrorResponse,
  parseOcspRequest,
  type CertId,
  type OcspCertStatus,
} from "../../src/revocation/ocsp-codec.js";

const HOUR_MS = 3_600_000;
const ALGORITHM = "ecdsa-with-SHA256" as const;

function opensslAvailable(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "pipe" });
    return true;
  } catch {
    return false;
  }
}
const HAVE_OPENSSL = opensslAvailable();
if (!HAVE_OPENSSL && process.env.CI) throw new Error("openssl is required on CI for the OCSP interoperability tests");

const ecKey = (): { privateKey: KeyObject; spki: Buffer } => {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return { privateKey, spki: publicKey.export({ format: "der", type: "spki" }) };
};
const signDer = (key: KeyObject, data: Buffer): Buffer => sign("sha256", data, { key, dsaEncoding: "der" });
const pem = (der: Buffer): string =>
  `-----BEGIN CERTIFICATE-----\n${der.toString("base64").replace(/.{64}/g, "$&\n").replace(/\n?$/, "\n")}-----END CERTIFICATE-----\n`;

// Hand-built requests for the refusals, so they do not depend on openssl.
const SHA1_ALG = sequence(oid("1.3.14.3.2.26"), nullValue());
function certIdDer(options: { alg?: Buffer; nameHash?: Buffer; keyHash?: Buffer; serial?: Buffer } = {}): Buffer {
  return sequence(
    options.alg ?? SHA1_ALG,
    octetString(options.nameHash ?? Buffer.alloc(20, 1)),
    octetString(options.keyHash ?? Buffer.alloc(20, 2)),
    options.serial ?? integer(Buffer.from("0123456789abcdef", "hex")),
  );
}
function requestDer(certIds: Buffer[], nonceExtnValue?: Buffer): Buffer {
  const list = sequence(...certIds.map((id) => sequence(id)));
  const extensions =
    nonceExtnValue === undefined
      ? []
      : [contextExplicit(2, sequence(sequence(oid("1.3.6.1.5.5.7.48.1.2"), octetString(nonceExtnValue))))];
  return sequence(sequence(list, ...extensions));
}

describe("parseOcspRequest refusals", () => {
  const refuse = (der: Buffer, options?: { maxRequests?: number }): void => {
    expect(() => parseOcspRequest(der, options)).toThrow(OcspMalformedRequestError);
  };

  it("accepts the hand-built baseline", () => {
    const parsed = parseOcspRequest(requestDer([certIdDer()], octetString(Buffer.alloc(32, 7))));
    expect(parsed.requests).toHaveLength(1);
    expect(parsed.requests[0]?.serialNumber.toString("hex")).toBe("0123456789abcdef");
    expect(parsed.requests[0]?.der.equals(certIdDer())).toBe(true);
    expect(parsed.nonce?.equals(Buffer.alloc(32, 7))).toBe(true);
  });

  it("refuses random bytes, truncation, trailing bytes and BER lengths", () => {
    const good = requestDer([certIdDer()]);
    refuse(randomBytes(64));
    refuse(Buffer.alloc(0));
    refuse(good.subarray(0, good.length - 1));
    refuse(Buffer.concat([good, Buffer.of(0)]));
    // Indefinite length on the outer SEQUENCE (BER only).
    refuse(Buffer.concat([Buffer.of(0x30, 0x80), good.subarray(2), Buffer.of(0, 0)]));
    // Non-minimal long-form length.
    refuse(Buffer.concat([Buffer.of(0x30, 0x81, good.length - 2), good.subarray(2)]));
  });

  it("refuses more CertIDs than maxRequests (default 16)", () => {
    const ids = Array.from({ length: 17 }, () => certIdDer());
    refuse(requestDer(ids));
    expect(parseOcspRequest(requestDer(ids.slice(0, 16))).requests).toHaveLength(16);
    expect(parseOcspRequest(requestDer(ids), { maxRequests: 17 }).requests).toHaveLength(17);
    refuse(requestDer([]));
  });

  it("refuses MD5, other hashes and hash lengths that do not match", () => {
    refuse(requestDer([certIdDer({ alg: sequence(oid("1.2.840.113549.2.5"), nullValue()), nameHash: Buffer.alloc(16), keyHash: Buffer.alloc(16) })]));
    refuse(requestDer([certIdDer({ alg: sequence(oid("2.16.840.1.101.3.4.2.2"), nullValue()), nameHash: Buffer.alloc(48), keyHash: Buffer.alloc(48) })]));
    refuse(requestDer([certIdDer({ nameHash: Buffer.alloc(32) })]));
    refuse(requestDer([certIdDer({ alg: sequence(oid("2.16.840.1.101.3.4.2.1")) })]));
    const sha256 = parseOcspRequest(
      requestDer([certIdDer({ alg: sequence(oid("2.16.840.1.101.3.4.2.1")), nameHash: Buffer.alloc(32), keyHash: Buffer.alloc(32) })]),
    );
    expect(sha256.requests[0]?.hashAlgorithm).toBe("sha256");
  });

  it("refuses empty, zero, negative, non-minimal and over-long serials", () => {
    refuse(requestDer([certIdDer({ serial: Buffer.of(0x02, 0x00) })]));
    refuse(requestDer([certIdDer({ serial: Buffer.of(0x02, 0x01, 0x00) })]));
    refuse(requestDer([certIdDer({ serial: Buffer.of(0x02, 0x01, 0x80) })]));
    refuse(requestDer([certIdDer({ serial: Buffer.of(0x02, 0x02, 0x00, 0x01) })]));
    refuse(requestDer([certIdDer({ serial: Buffer.concat([Buffer.of(0x02, 21), Buffer.alloc(21, 0x11)]) })]));
    const highBit = parseOcspRequest(requestDer([certIdDer({ serial: Buffer.of(0x02, 0x02, 0x00, 0x80) })]));
    expect(highBit.requests[0]?.serialNumber.toString("hex")).toBe("80");
  });

  it("refuses nonces that are not an OCTET STRING of 1 to 32 octets", () => {
    refuse(requestDer([certIdDer()], octetString(Buffer.alloc(33, 1))));
    refuse(requestDer([certIdDer()], octetString(Buffer.alloc(0))));
    refuse(requestDer([certIdDer()], Buffer.alloc(16, 1))); // raw value, no OCTET STRING
    expect(parseOcspRequest(requestDer([certIdDer()], octetString(Buffer.of(9)))).nonce).toEqual(Buffer.of(9));
  });
});

describe("ocspErrorResponse", () => {
  it("is the constant DER of each status", () => {
    expect(ocspErrorResponse("malformedRequest").toString("hex")).toBe("30030a0101");
    expect(ocspErrorResponse("internalError").toString("hex")).toBe("30030a0102");
    expect(ocspErrorResponse("tryLater").toString("hex")).toBe("30030a0103");
    expect(ocspErrorResponse("sigRequired").toString("hex")).toBe("30030a0105");
    expect(ocspErrorResponse("unauthorized").toString("hex")).toBe("30030a0106");
  });
});

describe.skipIf(!HAVE_OPENSSL)("OCSP codec against openssl (skipped: openssl not on PATH)", () => {
  let dir: string;
  let interDer: Buffer;
  let interKey: KeyObject;
  let responderKey: KeyObject;
  let responderDer: Buffer;
  let leafSerialHex: string;
  let leaf2SerialHex: string;

  const path = (name: string): string => join(dir, name);
  const openssl = (args: string[]): { status: number | null; output: string } => {
    const result = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
    return { status: result.status, output: `${result.stdout}${result.stderr}` };
  };
  const makeRequest = (name: string, extra: string[], certs = ["leaf.pem"]): Buffer => {
    const args = ["ocsp", ...extra, "-issuer", "inter.pem"];
    for (const cert of certs) args.push("-cert", cert);
    execFileSync("openssl", [...args, "-reqout", name], { cwd: dir, stdio: "pipe" });
    return readFileSync(path(name));
  };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "anchorage-ocsp-"));
    const now = Date.now();
    const notBefore = new Date(now - HOUR_MS);
    const notAfter = new Date(now + 24 * HOUR_MS);
    const root = ecKey();
    const inter = ecKey();
    const responder = ecKey();
    interKey = inter.privateKey;
    responderKey = responder.privateKey;

    const rootName = buildName({ commonName: "OCSP Test Root", organization: "Anchorage" });
    const rootTbs = buildRootTbs({
      subjectNameDer: rootName,
      subjectPublicKeyInfo: root.spki,
      serialNumber: randomBytes(16),
      notBefore,
      notAfter,
      signatureAlgorithm: ALGORITHM,
    });
    const rootDer = assembleSignedStructure(rootTbs, ALGORITHM, signDer(root.privateKey, rootTbs));
    const rootFields = certificateFields(rootDer);
    const interTbs = buildIntermediateTbs({
      subjectNameDer: buildName({ commonName: "OCSP Test Intermediate", organization: "Anchorage" }),
      subjectPublicKeyInfo: inter.spki,
      serialNumber: randomBytes(16),
      notBefore,
      notAfter,
      signatureAlgorithm: ALGORITHM,
      issuerNameDer: rootFields.subjectNameDer,
      issuerSubjectKeyIdentifier: rootFields.subjectKeyIdentifier,
    });
    interDer = assembleSignedStructure(interTbs, ALGORITHM, signDer(root.privateKey, interTbs));
    const interFields = certificateFields(interDer);

    const template = new WorkloadCertificateTemplate({
      issuerNameDer: interFields.subjectNameDer,
      issuerSubjectKeyIdentifier: interFields.subjectKeyIdentifier,
      signatureAlgorithm: ALGORITHM,
      crlDistributionPointUrl: "http://ca.anchorage.test/crl",
      ocspUrl: "http://ca.anchorage.test/ocsp",
      caIssuersUrl: "http://ca.anchorage.test/ca.crt",
    });
    const leaf = (serial: Buffer): Buffer => {
      const tbs = template.buildTbs({
        serialNumber: serial,
        notBefore,
        notAfter: new Date(now + HOUR_MS),
        subjectPublicKeyInfo: ecKey().spki,
        keyType: "ec",
        spiffeId: "spiffe://anchorage.test/ns/default/sa/web",
        dnsNames: [],
      });
      return assembleSignedStructure(tbs, ALGORITHM, signDer(inter.privateKey, tbs));
    };
    const leafSerial = Buffer.concat([Buffer.of(0x8f), randomBytes(15)]);
    const leaf2Serial = Buffer.concat([Buffer.of(0x1f), randomBytes(15)]);
    leafSerialHex = leafSerial.toString("hex");
    leaf2SerialHex = leaf2Serial.toString("hex");

    const responderTbs = buildOcspSignerTbs({
      subjectNameDer: buildName({ commonName: "OCSP Test Responder", organization: "Anchorage" }),
      subjectPublicKeyInfo: responder.spki,
      serialNumber: randomBytes(16),
      notBefore,
      notAfter,
      signatureAlgorithm: ALGORITHM,
      issuerNameDer: interFields.subjectNameDer,
      issuerSubjectKeyIdentifier: interFields.subjectKeyIdentifier,
    });
    responderDer = assembleSignedStructure(responderTbs, ALGORITHM, signDer(inter.privateKey, responderTbs));

    writeFileSync(path("root.pem"), pem(rootDer));
    writeFileSync(path("inter.pem"), pem(interDer));
    writeFileSync(path("chain.pem"), pem(rootDer) + pem(interDer));
    writeFileSync(path("leaf.pem"), pem(leaf(leafSerial)));
    writeFileSync(path("leaf2.pem"), pem(leaf(leaf2Serial)));
    writeFileSync(path("responder.pem"), pem(responderDer));
  });

  afterAll(() => {
    if (dir && !process.env.KEEP_OCSP_DIR) rmSync(dir, { recursive: true, force: true });
  });

  it("issues a responder certificate openssl accepts as an OCSP signer", () => {
    const text = openssl(["x509", "-in", "responder.pem", "-noout", "-text"]).output;
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature\n/);
    expect(text).toMatch(/X509v3 Extended Key Usage:\s+OCSP Signing/);
    expect(text).toContain("OCSP No Check");
    expect(text).toContain("X509v3 Subject Key Identifier");
    expect(text).toContain("X509v3 Authority Key Identifier");
    const verified = openssl(["verify", "-purpose", "ocsphelper", "-CAfile", "chain.pem", "responder.pem"]);
    expect(verified.output).toContain("responder.pem: OK");
  });

  it("parses openssl requests: SHA-1 without nonce, with nonce, SHA-256, two certificates", () => {
    const hashes = issuerHashes(interDer);
    const interSpkiKey = inspectSubjectPublicKeyInfo(certificateFields(interDer).subjectPublicKeyInfo).subjectPublicKey;
    expect(hashes.keyHashes.sha1.equals(createHash("sha1").update(interSpkiKey).digest())).toBe(true);

    const plain = parseOcspRequest(makeRequest("plain.der", ["-no_nonce"]));
    expect(plain.nonce).toBeUndefined();
    expect(plain.requests).toHaveLength(1);
    const [id] = plain.requests as [CertId];
    expect(id.hashAlgorithm).toBe("sha1");
    expect(id.serialNumber.toString("hex")).toBe(leafSerialHex);
    expect(id.issuerNameHash.equals(hashes.nameHashes.sha1)).toBe(true);
    expect(id.issuerKeyHash.equals(hashes.keyHashes.sha1)).toBe(true);
    expect(certIdMatches(id, hashes)).toBe(true);
    expect(certIdMatches(id, issuerHashes(responderDer))).toBe(false);

    const withNonce = parseOcspRequest(makeRequest("nonce.der", ["-nonce"]));
    expect(withNonce.nonce?.length).toBeGreaterThanOrEqual(1);

    const sha256 = parseOcspRequest(makeRequest("sha256.der", ["-no_nonce", "-sha256"]));
    expect(sha256.requests[0]?.hashAlgorithm).toBe("sha256");
    expect(sha256.requests[0]?.issuerNameHash.equals(hashes.nameHashes.sha256)).toBe(true);
    expect(sha256.requests[0]?.issuerKeyHash.equals(hashes.keyHashes.sha256)).toBe(true);
    expect(certIdMatches(sha256.requests[0] as CertId, hashes)).toBe(true);

    const two = parseOcspRequest(makeRequest("two.der", ["-no_nonce"], ["leaf.pem", "leaf2.pem"]));
    expect(two.requests.map((r) => r.serialNumber.toString("hex"))).toEqual([leafSerialHex, leaf2SerialHex]);
  });

  it("refuses an openssl request with an MD5 CertID", () => {
    const md5 = makeRequest("md5.der", ["-no_nonce", "-md5"]);
    expect(() => parseOcspRequest(md5)).toThrow(OcspMalformedRequestError);
  });

  const respond = (requestFile: string, status: OcspCertStatus, key = responderKey): string => {
    const request = parseOcspRequest(readFileSync(path(requestFile)));
    const now = new Date();
    const responderSpki = certificateFields(responderDer).subjectPublicKeyInfo;
    const responseData = buildResponseData({
      responderKeyHash: createHash("sha1").update(inspectSubjectPublicKeyInfo(responderSpki).subjectPublicKey).digest(),
      producedAt: now,
      responses: request.requests.map((certId) => ({
        certId,
        status,
        thisUpdate: new Date(now.getTime() - 60_000),
        nextUpdate: new Date(now.getTime() + HOUR_MS),
      })),
      ...(request.nonce ? { nonce: request.nonce } : {}),
    });
    const response = assembleOcspResponse(responseData, ALGORITHM, signDer(key, responseData), responderDer);
    writeFileSync(path("resp.der"), response);
    // With -cert, openssl builds its own request (hence -no_nonce); the nonce test checks with -reqin instead.
    return openssl([
      "ocsp", "-respin", "resp.der", "-no_nonce", "-issuer", "inter.pem", "-cert", "leaf.pem",
      "-CAfile", "chain.pem", "-resp_text",
    ]).output;
  };

  it("builds responses openssl verifies: good, revoked (keyCompromise), unknown", () => {
    makeRequest("plain.der", ["-no_nonce"]);
    const good = respond("plain.der", { kind: "good" });
    expect(good).toContain("Response verify OK");
    expect(good).toMatch(/leaf\.pem: good/);
    expect(good).toMatch(/Responder Id: [0-9A-F]{40}/);
    expect(good).not.toMatch(/WARNING|error/i);

    const revokedAt = new Date(Date.now() - 10 * 60_000);
    const revoked = respond("plain.der", { kind: "revoked", revokedAt, reason: 1 });
    expect(revoked).toContain("Response verify OK");
    expect(revoked).toMatch(/leaf\.pem: revoked/);
    expect(revoked).toContain("Reason: keyCompromise");

    const unknown = respond("plain.der", { kind: "unknown" });
    expect(unknown).toContain("Response verify OK");
    expect(unknown).toMatch(/leaf\.pem: unknown/);
  });

  it("echoes the request nonce", () => {
    makeRequest("nonce.der", ["-nonce"]);
    const nonce = parseOcspRequest(readFileSync(path("nonce.der"))).nonce as Buffer;
    respond("nonce.der", { kind: "good" });
    // -reqin without -cert: openssl compares the response nonce with the request's (OCSP_check_nonce).
    const output = openssl(["ocsp", "-respin", "resp.der", "-reqin", "nonce.der", "-CAfile", "chain.pem", "-resp_text"]).output;
    expect(output).toContain("Response verify OK");
    expect(output).toContain("OCSP Nonce");
    expect(output.replace(/[\s:]/g, "").toUpperCase()).toContain(nonce.toString("hex").toUpperCase());
    expect(output).not.toMatch(/Nonce Verify error|WARNING: no nonce/i);
  });

  it("answers SHA-256 CertIDs", () => {
    makeRequest("sha256.der", ["-no_nonce", "-sha256"]);
    const request = parseOcspRequest(readFileSync(path("sha256.der")));
    expect(request.requests[0]?.hashAlgorithm).toBe("sha256");
    respond("sha256.der", { kind: "good" });
    const output = openssl([
      "ocsp", "-respin", "resp.der", "-no_nonce", "-sha256", "-issuer", "inter.pem", "-cert", "leaf.pem", "-CAfile", "chain.pem",
    ]).output;
    expect(output).toContain("Response verify OK");
    expect(output).toMatch(/leaf\.pem: good/);
  });

  it("produces a response that fails verification when signed with the wrong key", () => {
    makeRequest("plain.der", ["-no_nonce"]);
    const output = respond("plain.der", { kind: "good" }, ecKey().privateKey);
    expect(output).not.toContain("Response verify OK");
    expect(output).toContain("Response Verify Failure");
    // Same for a response signed by the intermediate key while carrying the responder certificate.
    expect(respond("plain.der", { kind: "good" }, interKey)).toContain("Response Verify Failure");
  });

  it("writes error responses openssl reads", () => {
    const statuses = [
      ["malformedRequest", "malformedrequest (1)"],
      ["internalError", "internalerror (2)"],
      ["tryLater", "trylater (3)"],
      ["sigRequired", "sigrequired (5)"],
      ["unauthorized", "unauthorized (6)"],
    ] as const;
    for (const [status, wording] of statuses) {
      writeFileSync(path("error.der"), ocspErrorResponse(status));
      const output = openssl(["ocsp", "-respin", "error.der", "-resp_text"]).output;
      expect(output).toContain(`Responder Error: ${wording}`);
    }
  });
});
