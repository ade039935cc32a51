import { execFileSync } from "node:child_process";
import { type KeyObject, createPublicKey, generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { parseCsr, parseCsrOffThread } from "../../src/ca/csr.js";
import { BadCsrError } from "../../src/common/errors.js";
import { decodePem, encodePem } from "../../src/common/pem.js";

// ---------------------------------------------------------------------------------------------------------------
// A minimal DER writer, so that tests can build exactly the (mal)formed requests they need and sign them with a
// real key: a BER trick or a wrong version must be refused even when the signature is valid.

function derLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...content: Uint8Array[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

const seq = (...content: Uint8Array[]): Buffer => tlv(0x30, ...content);
const set = (...content: Uint8Array[]): Buffer => tlv(0x31, ...content);
const NULL = Buffer.from([0x05, 0x00]);
const octetString = (content: Uint8Array): Buffer => tlv(0x04, content);
const bitString = (content: Uint8Array): Buffer => tlv(0x03, Buffer.from([0]), content);
const integer = (value: number): Buffer => tlv(0x02, Buffer.from([value]));

function unsignedInteger(bytes: Uint8Array): Buffer {
  return tlv(0x02, (bytes[0] as number) & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes);
}

function oid(dotted: string): Buffer {
  const [first, second, ...rest] = dotted.split(".").map(Number) as [number, number, ...number[]];
  const bytes: number[] = [];
  for (const arc of [first * 40 + second, ...rest]) {
    const chunk = [arc & 0x7f];
    for (let value = Math.floor(arc / 128); value > 0; value = Math.floor(value / 128)) chunk.unshift(0x80 | (value & 0x7f));
    bytes.push(...chunk);
  }
  return tlv(0x06, Buffer.from(bytes));
}

/** A copy of `bytes` with the byte at `index` (negative: from the end) XORed with `mask`. */
function flipped(bytes: Buffer, index: number, mask = 0xff): Buffer {
  const copy = Buffer.from(bytes);
  const at = index < 0 ? copy.length + index : index;
  copy[at] = (copy[at] as number) ^ mask;
  return copy;
}

const uri = (value: string): Buffer => tlv(0x86, Buffer.from(value, "latin1"));
const dns = (value: string): Buffer => tlv(0x82, Buffer.from(value, "latin1"));

const OID = {
  extensionRequest: "1.2.840.113549.1.9.14",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  ecPublicKey: "1.2.840.10045.2.1",
  p256: "1.2.840.10045.3.1.7",
  rsaEncryption: "1.2.840.113549.1.1.1",
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  ecdsaWithSha512: "1.2.840.10045.4.3.4",
  sha256WithRsa: "1.2.840.113549.1.1.11",
};

const ECDSA_SHA256 = seq(oid(OID.ecdsaWithSha256));
const ECDSA_SHA512 = seq(oid(OID.ecdsaWithSha512));
const RSA_SHA256 = seq(oid(OID.sha256WithRsa), NULL);

/** An Extensions SEQUENCE holding one subjectAltName with `names` (already-encoded GeneralNames). */
const sanExtensions = (...names: Buffer[]): Buffer =>
  seq(seq(oid(OID.subjectAltName), octetString(seq(...names))));

/** The [0] attributes of a CertificationRequestInfo carrying one extensionRequest with `extensions`. */
const extensionRequest = (extensions: Buffer): Buffer => tlv(0xa0, seq(oid(OID.extensionRequest), set(extensions)));

const WORKLOAD_ID = "spiffe://example.org/ns/default/sa/web";

interface CsrParts {
  key?: { publicKey: KeyObject; privateKey: KeyObject };
  version?: Buffer;
  subject?: Buffer;
  spki?: Buffer;
  attributes?: Buffer;
  signatureAlgorithm?: Buffer;
  hash?: string;
}

/** A DER CSR built from `parts`, signed with the key unless a test swaps in parts that make signing moot. */
function buildCsr(parts: CsrParts = {}): Buffer {
  const key = parts.key ?? p256Key;
  const info = seq(
    parts.version ?? integer(0),
    parts.subject ?? seq(),
    parts.spki ?? key.publicKey.export({ format: "der", type: "spki" }),
    parts.attributes ?? extensionRequest(sanExtensions(uri(WORKLOAD_ID), dns("web.example.org"))),
  );
  const signature = sign(parts.hash ?? "sha256", info, key.privateKey);
  return seq(info, parts.signatureAlgorithm ?? ECDSA_SHA256, bitString(signature));
}

const toPem = (der: Uint8Array, label = "CERTIFICATE REQUEST"): string => encodePem(der, label);

/** Asserts that parsing `input` is refused with a BadCsrError whose message contains `fragment`. */
function expectBadCsr(input: string, fragment: string, options?: { maxPemBytes?: number }): BadCsrError {
  let thrown: unknown;
  try {
    parseCsr(input, options);
  } catch (error) {
    thrown = error;
  }
  expect(thrown, `expected a refusal containing "${fragment}"`).toBeInstanceOf(BadCsrError);
  expect((thrown as BadCsrError).code).toBe("BAD_CSR");
  expect((thrown as Error).message).toContain(fragment);
  return thrown as BadCsrError;
}

// Generated once for the whole file: key generation is what would make this suite slow.
const p256Key = generateKeyPairSync("ec", { namedCurve: "P-256" });

// ---------------------------------------------------------------------------------------------------------------

describe("parseCsr on hand-built CSRs", () => {
  it("accepts a P-256 CSR and returns what issuance needs", () => {
    const der = buildCsr({
      attributes: extensionRequest(
        sanExtensions(dns("Web.Example.org"), uri(WORKLOAD_ID), dns("web.example.org"), dns("api"), dns("WEB.example.ORG")),
      ),
    });
    const parsed = parseCsr(toPem(der));
    expect(parsed.der.equals(der)).toBe(true);
    expect(parsed.subjectPublicKeyInfo.equals(p256Key.publicKey.export({ format: "der", type: "spki" }))).toBe(true);
    expect(parsed.keyType).toBe("ec");
    expect(parsed.keyDescription).toBe("P-256");
    expect(parsed.publicKey.equals(p256Key.publicKey)).toBe(true);
    expect(parsed.spiffeId).toBe(WORKLOAD_ID);
    expect(parsed.dnsNames).toEqual(["web.example.org", "api"]);
    expect(Object.isFrozen(parsed)).toBe(true);
  });

  it("accepts the legacy NEW CERTIFICATE REQUEST label", () => {
    expect(parseCsr(toPem(buildCsr(), "NEW CERTIFICATE REQUEST")).spiffeId).toBe(WORKLOAD_ID);
  });

  it("accepts ecdsa-with-SHA512 and a CSR without DNS names", () => {
    const parsed = parseCsr(
      toPem(buildCsr({ signatureAlgorithm: ECDSA_SHA512, hash: "sha512", attributes: extensionRequest(sanExtensions(uri(WORKLOAD_ID))) })),
    );
    expect(parsed.dnsNames).toEqual([]);
  });

  it("ignores other requested extensions, even a request to be a CA (the profile decides them)", () => {
    const basicConstraintsCaTrue = seq(oid(OID.basicConstraints), tlv(0x01, Buffer.from([0xff])), octetString(seq(tlv(0x01, Buffer.from([0xff])))));
    const extensions = seq(basicConstraintsCaTrue, seq(oid(OID.subjectAltName), octetString(seq(uri(WORKLOAD_ID)))));
    expect(parseCsr(toPem(buildCsr({ attributes: extensionRequest(extensions) }))).spiffeId).toBe(WORKLOAD_ID);
  });

  it("accepts exactly 100 DNS names and refuses 101", () => {
    const names = Array.from({ length: 101 }, (_, i) => dns(`host${i}.example.org`));
    const hundred = buildCsr({ attributes: extensionRequest(sanExtensions(uri(WORKLOAD_ID), ...names.slice(0, 100))) });
    expect(parseCsr(toPem(hundred)).dnsNames).toHaveLength(100);
    const hundredAndOne = buildCsr({ attributes: extensionRequest(sanExtensions(uri(WORKLOAD_ID), ...names)) });
    expectBadCsr(toPem(hundredAndOne), "asks for 101 DNS names, more than the 100 allowed");
  });

  describe("refuses", () => {
    it("a version other than v1 (0), even when properly signed", () => {
      expectBadCsr(toPem(buildCsr({ version: integer(1) })), "version field is 1");
    });

    it("BER inside the request (a non-minimal INTEGER), even when properly signed", () => {
      expectBadCsr(toPem(buildCsr({ version: tlv(0x02, Buffer.from([0, 0])) })), "not DER-encoded");
    });

    it("a non-minimal length on the outer SEQUENCE", () => {
      const der = buildCsr();
      const body = der.subarray(der[1] === 0x81 ? 3 : 2);
      const ber = Buffer.concat([Buffer.from([0x30, 0x83, 0, 0, body.length]), body]);
      expectBadCsr(toPem(ber), "non-minimal length");
    });

    it("an indefinite length", () => {
      const der = buildCsr();
      const body = der.subarray(der[1] === 0x81 ? 3 : 2);
      expectBadCsr(toPem(Buffer.concat([Buffer.from([0x30, 0x80]), body, Buffer.from([0, 0])])), "indefinite length");
    });

    it("BER inside the extensionRequest (critical FALSE written out)", () => {
      const extensions = seq(seq(oid(OID.subjectAltName), tlv(0x01, Buffer.from([0])), octetString(seq(uri(WORKLOAD_ID)))));
      expectBadCsr(toPem(buildCsr({ attributes: extensionRequest(extensions) })), "extensionRequest attribute is not DER-encoded");
    });

    it("BER inside the subjectAltName (a long-form length for a short value)", () => {
      const names = Buffer.concat([Buffer.from([0x30, 0x81, uri(WORKLOAD_ID).length]), uri(WORKLOAD_ID)]);
      const extensions = seq(seq(oid(OID.subjectAltName), octetString(names)));
      expectBadCsr(toPem(buildCsr({ attributes: extensionRequest(extensions) })), "subjectAltName extension is not DER-encoded");
    });

    it("a signature algorithm that does not match the key", () => {
      expectBadCsr(toPem(buildCsr({ signatureAlgorithm: RSA_SHA256 })), "does not match its EC key");
    });

    it("ECDSA signature algorithm parameters (RFC 5758 wants them absent)", () => {
      expectBadCsr(toPem(buildCsr({ signatureAlgorithm: seq(oid(OID.ecdsaWithSha256), NULL) })), "has malformed parameters");
    });

    it("an EC point that is not on the curve", () => {
      const spki = flipped(p256Key.publicKey.export({ format: "der", type: "spki" }), -1, 0x01);
      expectBadCsr(toPem(buildCsr({ spki })), "not a valid point on P-256");
    });

    it("an EC point that is not on the curve, on the path issuance takes (raw import, verification off the event loop)", async () => {
      const spki = flipped(p256Key.publicKey.export({ format: "der", type: "spki" }), -1, 0x01);
      const refusal = await parseCsrOffThread(toPem(buildCsr({ spki }))).catch((error: unknown) => error);
      expect(refusal).toBeInstanceOf(BadCsrError);
      expect((refusal as Error).message).toContain("not a valid point on P-256");
      const accepted = await parseCsrOffThread(toPem(buildCsr({})));
      expect(accepted.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    });

    it("a compressed EC point", () => {
      const point = p256Key.publicKey.export({ format: "der", type: "spki" }).subarray(-65);
      const compressed = Buffer.concat([Buffer.from([2 + ((point[64] as number) & 1)]), point.subarray(1, 33)]);
      const spki = seq(seq(oid(OID.ecPublicKey), oid(OID.p256)), bitString(compressed));
      expectBadCsr(toPem(buildCsr({ spki })), "must be an uncompressed point");
    });

    describe("RSA keys outside the profile (made-up moduli: the key check comes before the signature)", () => {
      const rsaSpki = (modulusBits: number, exponent: number): Buffer => {
        const modulus = randomBytes(Math.ceil(modulusBits / 8));
        const topBits = modulusBits % 8 === 0 ? 8 : modulusBits % 8;
        modulus[0] = ((modulus[0] as number) & ((1 << topBits) - 1)) | (1 << (topBits - 1));
        modulus[modulus.length - 1] = (modulus[modulus.length - 1] as number) | 1;
        const exponentBytes = Buffer.from(exponent.toString(16).padStart(exponent > 0xffff ? 6 : 2, "0"), "hex");
        const rsaPublicKey = seq(unsignedInteger(modulus), unsignedInteger(exponentBytes));
        return seq(seq(oid(OID.rsaEncryption), NULL), bitString(rsaPublicKey));
      };

      it.each([
        [2048, 3, "RSA-2048 with public exponent 3 (only 65537 is accepted)"],
        [2050, 65537, "RSA-2050 (modulus size must be a multiple of 8)"],
        [4104, 65537, "unsupported key: RSA-4104, use P-256, P-384 or RSA 2048-4096"],
        [1536, 65537, "unsupported key: RSA-1536, use P-256, P-384 or RSA 2048-4096"],
      ])("%i bits, exponent %i", (bits, exponent, fragment) => {
        expectBadCsr(toPem(buildCsr({ spki: rsaSpki(bits, exponent), signatureAlgorithm: RSA_SHA256 })), fragment);
      });
    });

    it("a request without the attributes field", () => {
      const key = p256Key;
      const info = seq(integer(0), seq(), key.publicKey.export({ format: "der", type: "spki" }));
      const der = seq(info, ECDSA_SHA256, bitString(sign("sha256", info, key.privateKey)));
      expectBadCsr(toPem(der), "no attributes field ([0])");
    });

    it("no extensionRequest at all", () => {
      expectBadCsr(toPem(buildCsr({ attributes: tlv(0xa0) })), "must carry exactly one spiffe:// URI SAN, found no subjectAltName at all");
    });

    it("an extensionRequest without a subjectAltName", () => {
      const extensions = seq(seq(oid(OID.basicConstraints), octetString(seq())));
      expectBadCsr(toPem(buildCsr({ attributes: extensionRequest(extensions) })), "found no subjectAltName at all");
    });

    it("a subjectAltName with DNS names only", () => {
      expectBadCsr(toPem(buildCsr({ attributes: extensionRequest(sanExtensions(dns("web"))) })), "found no URI SAN");
    });

    it("two subjectAltName extensions", () => {
      const san = seq(oid(OID.subjectAltName), octetString(seq(uri(WORKLOAD_ID))));
      expectBadCsr(toPem(buildCsr({ attributes: extensionRequest(seq(san, san)) })), "more than one subjectAltName extension");
    });

    it("two extensionRequest attributes", () => {
      const attribute = seq(oid(OID.extensionRequest), set(sanExtensions(uri(WORKLOAD_ID))));
      expectBadCsr(toPem(buildCsr({ attributes: tlv(0xa0, attribute, attribute) })), "more than one extensionRequest attribute");
    });

    it("an extensionRequest with two values", () => {
      const extensions = sanExtensions(uri(WORKLOAD_ID));
      const attribute = seq(oid(OID.extensionRequest), set(extensions, extensions));
      expectBadCsr(toPem(buildCsr({ attributes: tlv(0xa0, attribute) })), "must hold exactly one value");
    });

    it.each([
      ["otherName", tlv(0xa0, oid("1.3.6.1.4.1.311.20.2.3"), tlv(0xa0, tlv(0x0c, Buffer.from("x")))), "an otherName SAN"],
      ["directoryName", tlv(0xa4, seq()), "a directoryName SAN"],
      ["registeredID", tlv(0x88, oid("1.2.3.4").subarray(2)), "a registeredID SAN"],
      ["iPAddress", tlv(0x87, Buffer.from([10, 0, 0, 1])), "an IP address SAN"],
      ["rfc822Name", tlv(0x81, Buffer.from("a@example.org")), "an email address SAN"],
    ])("SAN type %s", (_type, name, fragment) => {
      expectBadCsr(toPem(buildCsr({ attributes: extensionRequest(sanExtensions(uri(WORKLOAD_ID), name)) })), fragment);
    });

    it.each([
      ["spiffe://example.org", "has no path"],
      ["spiffe://Example.org/x", "upper-case letters in its trust domain"],
      ["spiffe://example.org/x%2e", "percent-encoding"],
      ["spiffe://example.org/caf\u00e9", "characters other than letters"],
    ])("the URI SAN %j", (id, fragment) => {
      const error = expectBadCsr(toPem(buildCsr({ attributes: extensionRequest(sanExtensions(uri(id))) })), fragment);
      expect(error.message).toContain("not a valid workload SPIFFE ID");
      expect(error.cause).toBeInstanceOf(Error);
    });

    it.each([
      ["web_1.example.org", "characters other than letters, digits and '-'"],
      ["caf\u00e9.example.org", "non-ASCII"],
      ["10.1.2.3", "IP address"],
      ["web.example.org.", "ends with a dot"],
    ])("the DNS SAN %j", (name, fragment) => {
      const error = expectBadCsr(toPem(buildCsr({ attributes: extensionRequest(sanExtensions(uri(WORKLOAD_ID), dns(name))) })), fragment);
      expect(error.message).toContain("DNS SAN is not usable");
    });
  });
});

describe("parseCsr on malformed input", () => {
  let goodPem: string;
  let goodDer: Buffer;

  beforeAll(() => {
    goodDer = buildCsr();
    goodPem = toPem(goodDer);
  });

  it.each([
    ["an empty string", "", "the CSR is empty"],
    ["whitespace", " \n\t", "the CSR is empty"],
    ["plain text", "hello", "the CSR is not PEM"],
    ["a PEM frame whose body is not base64", "-----BEGIN CERTIFICATE REQUEST-----\n@@@@\n-----END CERTIFICATE REQUEST-----\n", "not base64"],
    ["an empty PEM block", "-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n", "block is empty"],
    ["mismatched BEGIN and END labels", "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE-----\n", "the CSR is not PEM"],
  ])("%s", (_what, input, fragment) => {
    expectBadCsr(input, fragment);
  });

  it("a value that is not a string", () => {
    expectBadCsr(Buffer.from("x") as unknown as string, "must be a PEM string");
    expectBadCsr(undefined as unknown as string, "must be a PEM string");
  });

  it("random base64 in a PEM frame", () => {
    const random = randomBytes(300);
    random[0] = 0x04; // never an accidental SEQUENCE
    expectBadCsr(toPem(random), "not a valid DER certificate request");
  });

  it("a SEQUENCE that is not a CertificationRequest", () => {
    expectBadCsr(toPem(seq(integer(1), integer(2))), "cannot be parsed as a PKCS#10 certificate request");
  });

  it("truncated DER", () => {
    expectBadCsr(toPem(goodDer.subarray(0, goodDer.length - 10)), "truncated");
  });

  it("DER with a trailing byte", () => {
    expectBadCsr(toPem(Buffer.concat([goodDer, Buffer.from([0])])), "1 trailing byte(s)");
  });

  it("a CSR whose signature bytes were flipped (no proof of possession)", () => {
    // The last bytes are the low end of the ECDSA s value: the DER structure stays intact.
    expectBadCsr(toPem(flipped(flipped(goodDer, -1), -2)), "signature does not verify");
  });

  it("a CSR whose content was changed after signing", () => {
    const tampered = Buffer.from(goodDer);
    const at = tampered.indexOf(Buffer.from("web.example.org"));
    tampered[at] = "x".charCodeAt(0);
    expectBadCsr(toPem(tampered), "signature does not verify");
  });

  it("a CSR signed by another key", () => {
    const other = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const info = decodeInfo(goodDer);
    const forged = seq(info, ECDSA_SHA256, bitString(sign("sha256", info, other.privateKey)));
    expectBadCsr(toPem(forged), "signature does not verify");
  });

  it("two CSR blocks", () => {
    expectBadCsr(goodPem + goodPem, "holds 2 PEM blocks");
  });

  it("a PEM block with another label", () => {
    expectBadCsr(toPem(goodDer, "PRIVATE KEY"), 'found "PRIVATE KEY"');
  });

  it("text around the PEM block", () => {
    expectBadCsr(`Certificate Request:\n    Data: ...\n${goodPem}`, "unexpected text around the PEM block");
  });

  it("oversized input (100 KiB), before trying to parse it", () => {
    expectBadCsr(goodPem + " ".repeat(100 * 1024), "larger than 16384 bytes");
    expectBadCsr("\u00e9".repeat(9000), "larger than 16384 bytes"); // 9000 characters, 18000 UTF-8 bytes
  });

  it("input above a configured limit", () => {
    expectBadCsr(goodPem, "larger than 100 bytes", { maxPemBytes: 100 });
    expect(parseCsr(goodPem, { maxPemBytes: goodPem.length }).spiffeId).toBe(WORKLOAD_ID);
  });

  it("throws RangeError (a programming error, not bad input) for a nonsensical limit", () => {
    expect(() => parseCsr(goodPem, { maxPemBytes: 0 })).toThrow(RangeError);
    expect(() => parseCsr(goodPem, { maxPemBytes: Number.NaN })).toThrow(RangeError);
  });

  it("never lets anything but BadCsrError escape, whatever single byte is damaged or wherever the DER ends", () => {
    const unexpected: string[] = [];
    const check = (der: Buffer, what: string): void => {
      try {
        parseCsr(toPem(der));
        unexpected.push(`${what}: accepted`);
      } catch (error) {
        if (!(error instanceof BadCsrError)) unexpected.push(`${what}: ${String(error)}`);
      }
    };
    for (let i = 0; i < goodDer.length; i++) {
      for (const mask of [0x01, 0xff]) check(flipped(goodDer, i, mask), `byte ${i} ^ ${mask}`);
      if (i > 0) check(goodDer.subarray(0, i), `truncated to ${i}`);
    }
    expect(unexpected).toEqual([]);
  });
});

/** The CertificationRequestInfo of a DER CSR, from its known layout (outer header, then the info SEQUENCE). */
function decodeInfo(der: Buffer): Buffer {
  const offset = der[1] === 0x81 ? 3 : der[1] === 0x82 ? 4 : 2;
  const lengthByte = der[offset + 1] as number;
  const headerLength = lengthByte < 0x80 ? 2 : 2 + (lengthByte & 0x7f);
  let length = lengthByte;
  if (lengthByte >= 0x80) {
    length = 0;
    for (let i = 0; i < (lengthByte & 0x7f); i++) length = length * 256 + (der[offset + 2 + i] as number);
  }
  return der.subarray(offset, offset + headerLength + length);
}

// ---------------------------------------------------------------------------------------------------------------
// CSRs made by a tool we did not write, as workloads will send them.

function findOpenssl(): string | undefined {
  try {
    const version = execFileSync("openssl", ["version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    return version.split(" ").slice(0, 2).join(" ");
  } catch {
    return undefined;
  }
}

const opensslVersion = findOpenssl();
const describeOpenssl = opensslVersion === undefined && !process.env.CI ? describe.skip : describe;

describeOpenssl(
  opensslVersion === undefined ? "parseCsr on openssl CSRs (openssl is not on PATH: skipped, or failed under CI)" : `parseCsr on CSRs made by ${opensslVersion}`,
  () => {
    let dir: string;
    let ecKey: string;
    let rsaKey: string;
    const csrs = new Map<string, string>();

    const openssl = (...args: string[]): string =>
      execFileSync("openssl", args, { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

    /** `openssl req -new` with an empty subject and the given SAN (none when undefined), PEM on stdout. */
    const request = (keyArgs: string[], san: string | undefined, ...extra: string[]): string =>
      openssl("req", "-new", ...keyArgs, "-subj", "/", ...(san === undefined ? [] : ["-addext", `subjectAltName=${san}`]), ...extra);

    const newKey = (...algorithm: string[]): string[] => ["-newkey", ...algorithm, "-nodes", "-keyout", join(dir, "throwaway.key")];

    beforeAll(() => {
      if (opensslVersion === undefined) throw new Error("openssl must be on PATH in CI (it checks our CSR parsing against a real tool)");
      dir = mkdtempSync(join(tmpdir(), "anchorage-csr-"));
      ecKey = join(dir, "p256.key");
      rsaKey = join(dir, "rsa2048.key");
      openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ecKey);
      openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsaKey);

      const id = `URI:${WORKLOAD_ID}`;
      const ec = ["-key", ecKey];
      csrs.set("p256", request(ec, `${id},DNS:web.example.org,DNS:Web.Example.ORG`));
      csrs.set("p384", request(newKey("ec", "-pkeyopt", "ec_paramgen_curve:P-384"), id));
      csrs.set("rsa2048", request(["-key", rsaKey], `${id},DNS:web`));
      csrs.set("rich subject", request(ec, id, "-utf8", "-subj", "/C=DE/O=Zürich Ops/OU=x/CN=not the identity/emailAddress=ops@example.org"));
      csrs.set("extra extensions", request(ec, id, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign"));
      csrs.set("rsa1024", request(newKey("rsa:1024"), id));
      csrs.set("p521", request(newKey("ec", "-pkeyopt", "ec_paramgen_curve:P-521"), id));
      csrs.set("ed25519", request(newKey("ed25519"), id));
      csrs.set("secp256k1", request(newKey("ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"), id));
      csrs.set("sha1", request(["-key", rsaKey, "-sha1"], id));
      csrs.set("ip", request(ec, `${id},IP:10.0.0.1`));
      csrs.set("email", request(ec, `${id},email:ops@example.org`));
      csrs.set("two uris", request(ec, `${id},URI:spiffe://example.org/ns/other`));
      csrs.set("wildcard", request(ec, `${id},DNS:*.example.org`));
      csrs.set("https uri", request(ec, "URI:https://example.org/workload"));
      csrs.set("dot-dot", request(ec, "URI:spiffe://example.org/ns/../admin"));
      csrs.set("no san", request(ec, undefined));
      openssl("ec", "-in", ecKey, "-conv_form", "compressed", "-out", join(dir, "compressed.key"));
      csrs.set("compressed", request(["-key", join(dir, "compressed.key")], id));
      csrs.set("certificate", openssl("req", "-x509", "-new", "-key", ecKey, "-subj", "/CN=x", "-days", "1"));
    });

    afterAll(() => {
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    });

    const csr = (name: string): string => {
      const pem = csrs.get(name);
      if (pem === undefined) throw new Error(`no CSR "${name}"`);
      return pem;
    };

    it.each([
      ["p256", "ec", "P-256", ["web.example.org"]],
      ["p384", "ec", "P-384", []],
      ["rsa2048", "rsa", "RSA-2048", ["web"]],
      ["rich subject", "ec", "P-256", []],
      ["extra extensions", "ec", "P-256", []],
    ])("accepts %s", (name, keyType, keyDescription, dnsNames) => {
      const pem = csr(name);
      const parsed = parseCsr(pem);
      expect(parsed).toMatchObject({ keyType, keyDescription, spiffeId: WORKLOAD_ID, dnsNames });
      expect(parsed.der.equals(decodePem(pem, "CERTIFICATE REQUEST"))).toBe(true);
    });

    it("slices exactly the SubjectPublicKeyInfo of the key openssl signed with", () => {
      const spki = execFileSync("openssl", ["pkey", "-in", ecKey, "-pubout", "-outform", "DER"], { stdio: ["ignore", "pipe", "pipe"] });
      expect(parseCsr(csr("p256")).subjectPublicKeyInfo.equals(spki)).toBe(true);
      expect(parseCsr(csr("p256")).publicKey.equals(createPublicKey(readFileSync(ecKey)))).toBe(true);
    });

    it.each([
      ["rsa1024", "unsupported key: RSA-1024, use P-256, P-384 or RSA 2048-4096"],
      ["p521", "unsupported key: P-521, use P-256, P-384 or RSA 2048-4096"],
      ["ed25519", "unsupported key: Ed25519, use P-256, P-384 or RSA 2048-4096"],
      ["secp256k1", "unsupported key: secp256k1, use P-256, P-384 or RSA 2048-4096"],
      ["sha1", "unsupported CSR signature algorithm sha1WithRSAEncryption (SHA-1 is broken)"],
      ["ip", "an IP address SAN (iPAddress)"],
      ["email", "an email address SAN (rfc822Name)"],
      ["two uris", "must carry exactly one spiffe:// URI SAN, found 2 URI SANs"],
      ["wildcard", "wildcard certificates are not issued"],
      ["https uri", 'does not start with "spiffe://"'],
      ["dot-dot", "has a '..' path segment"],
      ["no san", "must carry exactly one spiffe:// URI SAN, found no subjectAltName at all"],
      ["compressed", "must be an uncompressed point"],
      ["certificate", 'found "CERTIFICATE": a certificate was sent where a certificate request (CSR) is expected'],
    ])("refuses %s", (name, fragment) => {
      expectBadCsr(csr(name), fragment);
    });
  },
);
