/**
 * The X.509 builders checked by a tool we did not write: openssl verifies the chain (strict mode, name
 * constraints, revocation), the intermediate's CSR and the CRLs, and prints the leaf's extensions.
 */
import { generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { certificateToPem, encodePem } from "../../src/common/pem.js";
import type { SignatureAlgorithmName } from "../../src/signer/signer.js";
import { SIGNATURE_HASH_ALGORITHMS } from "../../src/ca/x509/algorithms.js";
import {
  buildCertificationRequestInfo,
  buildIntermediateTbs,
  buildName,
  buildRootTbs,
  certificateFields,
} from "../../src/ca/x509/ca-certificates.js";
import { buildCrlTbs } from "../../src/ca/x509/crl.js";
import { assembleSignedStructure } from "../../src/ca/x509/signed.js";
import { WorkloadCertificateTemplate } from "../../src/ca/x509/workload-template.js";

function probeOpenssl(): { available: true } | { available: false; reason: string } {
  const probe = spawnSync("openssl", ["version"], { encoding: "utf8" });
  if (probe.error) return { available: false, reason: `openssl is not on PATH (${probe.error.message})` };
  if (probe.status !== 0) return { available: false, reason: `"openssl version" exited with ${probe.status}` };
  return { available: true };
}

const openssl = probeOpenssl();
const skipReason = openssl.available ? undefined : openssl.reason;

// Locally a missing openssl skips these checks with the reason; in CI it is a failure.
if (skipReason !== undefined && process.env.CI) {
  describe("openssl in CI", () => {
    it("is on PATH", () => {
      throw new Error(`CI must provide openssl: ${skipReason}`);
    });
  });
}

const TRUST_DOMAIN = "anchorage.test";
const SPIFFE_ID = `spiffe://${TRUST_DOMAIN}/ns/default/sa/web`;
const DNS_NAME = "web.default.svc";
const BASE_URL = "http://127.0.0.1:8080";
// Validity periods are fixed; openssl checks them at this instant (-attime) instead of the wall clock.
const CHECK_TIME = new Date(Date.UTC(2026, 2, 1, 12, 0, 0));
const ATTIME = String(CHECK_TIME.getTime() / 1000);

type KeyPair = { privateKey: KeyObject; publicKey: KeyObject };
const spkiOf = (key: KeyObject): Buffer => key.export({ type: "spki", format: "der" });

function signed(tbs: Buffer, algorithm: SignatureAlgorithmName, key: KeyObject): Buffer {
  const signature = sign(SIGNATURE_HASH_ALGORITHMS[algorithm], tbs, { key, dsaEncoding: "der" });
  return assembleSignedStructure(tbs, algorithm, signature);
}

function run(args: readonly string[]): { status: number | null; output: string } {
  const result = spawnSync("openssl", args, { encoding: "utf8" });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

describe.skipIf(skipReason !== undefined)(
  `x509 builders checked by openssl${skipReason ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    let dir: string;
    const file = (name: string): string => join(dir, name);
    const verifyChain = (leaf: string, ...extra: string[]) =>
      run([
        "verify",
        "-x509_strict",
        "-attime",
        ATTIME,
        ...extra,
        "-CAfile",
        file("root.pem"),
        "-untrusted",
        file("inter.pem"),
        file(leaf),
      ]);

    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), "anchorage-x509-"));
      const rootKey: KeyPair = generateKeyPairSync("ec", { namedCurve: "P-384" });
      const interKey: KeyPair = generateKeyPairSync("ec", { namedCurve: "P-256" });

      // Root (P-384), self-signed.
      const rootName = buildName({ commonName: "Anchorage Test Root CA", organization: "Anchorage", country: "NL" });
      const rootDer = signed(
        buildRootTbs({
          subjectNameDer: rootName,
          subjectPublicKeyInfo: spkiOf(rootKey.publicKey),
          serialNumber: Buffer.from("9a7b6c5d4e3f20110213243546576879", "hex"),
          notBefore: new Date(Date.UTC(2025, 0, 1)),
          notAfter: new Date(Date.UTC(2055, 0, 1)), // GeneralizedTime, on purpose
          signatureAlgorithm: "ecdsa-with-SHA384",
        }),
        "ecdsa-with-SHA384",
        rootKey.privateKey,
      );
      const root = certificateFields(rootDer);

      // Intermediate (P-256): its CSR, then the certificate the root signs.
      const interName = buildName({ commonName: "Anchorage Test Intermediate CA 1", organization: "Anchorage" });
      const csrDer = signed(
        buildCertificationRequestInfo({ subjectNameDer: interName, subjectPublicKeyInfo: spkiOf(interKey.publicKey) }),
        "ecdsa-with-SHA256",
        interKey.privateKey,
      );
      const interSerial = Buffer.from("1a7b6c5d4e3f20110213243546576879", "hex");
      const interDer = signed(
        buildIntermediateTbs({
          subjectNameDer: interName,
          subjectPublicKeyInfo: spkiOf(interKey.publicKey),
          serialNumber: interSerial,
          notBefore: new Date(Date.UTC(2025, 0, 1)),
          notAfter: new Date(Date.UTC(2035, 0, 1)),
          signatureAlgorithm: "ecdsa-with-SHA384",
          issuerNameDer: root.subjectNameDer,
          issuerSubjectKeyIdentifier: root.subjectKeyIdentifier,
          // The trust domain as URI host; DNS names under it or under the cluster-local "svc" suffix.
          nameConstraints: { permittedUris: [TRUST_DOMAIN], permittedDnsNames: [TRUST_DOMAIN, "svc"] },
          crlDistributionPointUrl: `${BASE_URL}/crl/root.crl`,
        }),
        "ecdsa-with-SHA384",
        rootKey.privateKey,
      );
      const inter = certificateFields(interDer);

      // Leaves through the fast-path template.
      const template = new WorkloadCertificateTemplate({
        issuerNameDer: inter.subjectNameDer,
        issuerSubjectKeyIdentifier: inter.subjectKeyIdentifier,
        signatureAlgorithm: "ecdsa-with-SHA256",
        crlDistributionPointUrl: `${BASE_URL}/crl/inter-1.crl`,
        ocspUrl: `${BASE_URL}/ocsp`,
        caIssuersUrl: `${BASE_URL}/ca/inter-1.crt`,
      });
      const leaf = (serialHex: string, key: KeyObject, keyType: "ec" | "rsa", spiffeId: string, dnsNames: string[]) =>
        signed(
          template.buildTbs({
            serialNumber: Buffer.from(serialHex, "hex"),
            notBefore: new Date(Date.UTC(2026, 2, 1, 11, 55, 0)),
            notAfter: new Date(Date.UTC(2026, 2, 1, 13, 0, 0)),
            subjectPublicKeyInfo: spkiOf(key),
            keyType,
            spiffeId,
            dnsNames,
          }),
          "ecdsa-with-SHA256",
          interKey.privateKey,
        );
      const ecKey = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey;
      const rsaKey = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey;
      const rsaSerial = "c1d2e3f405162738495a6b7c8d9eafb0";
      const files: Record<string, string | Buffer> = {
        "root.pem": certificateToPem(rootDer),
        "inter.pem": certificateToPem(interDer),
        "csr.pem": encodePem(csrDer, "CERTIFICATE REQUEST"),
        "leaf-ec.pem": certificateToPem(leaf("81d2e3f405162738495a6b7c8d9eafb0", ecKey, "ec", SPIFFE_ID, [DNS_NAME])),
        "leaf-rsa.pem": certificateToPem(leaf(rsaSerial, rsaKey, "rsa", SPIFFE_ID, [DNS_NAME])),
        "leaf-other-domain.pem": certificateToPem(
          leaf("41d2e3f405162738495a6b7c8d9eafb0", ecKey, "ec", "spiffe://evil.test/ns/default/sa/web", []),
        ),
        "leaf-other-dns.pem": certificateToPem(
          leaf("51d2e3f405162738495a6b7c8d9eafb0", ecKey, "ec", SPIFFE_ID, [DNS_NAME, "web.evil.test"]),
        ),
        // The root's CRL: two entries, one with a reason and one without.
        "crl.der": signed(
          buildCrlTbs({
            issuerNameDer: root.subjectNameDer,
            issuerSubjectKeyIdentifier: root.subjectKeyIdentifier,
            signatureAlgorithm: "ecdsa-with-SHA384",
            thisUpdate: new Date(Date.UTC(2026, 1, 1)),
            nextUpdate: new Date(Date.UTC(2026, 7, 1)),
            crlNumber: 7n,
            entries: [
              { serialNumber: interSerial, revocationDate: new Date(Date.UTC(2026, 0, 15, 8, 0, 0)), reason: 1 },
              {
                serialNumber: Buffer.from("2a7b6c5d4e3f20110213243546576879", "hex"),
                revocationDate: new Date(Date.UTC(2026, 0, 16)),
              },
            ],
          }),
          "ecdsa-with-SHA384",
          rootKey.privateKey,
        ),
        // The intermediate's CRL, revoking the RSA leaf.
        "inter-crl.pem": encodePem(
          signed(
            buildCrlTbs({
              issuerNameDer: inter.subjectNameDer,
              issuerSubjectKeyIdentifier: inter.subjectKeyIdentifier,
              signatureAlgorithm: "ecdsa-with-SHA256",
              thisUpdate: new Date(Date.UTC(2026, 2, 1, 11, 0, 0)),
              nextUpdate: new Date(Date.UTC(2026, 2, 1, 17, 0, 0)),
              crlNumber: 1n,
              entries: [
                {
                  serialNumber: Buffer.from(rsaSerial, "hex"),
                  revocationDate: new Date(Date.UTC(2026, 2, 1, 11, 58)),
                  reason: 1,
                },
              ],
            }),
            "ecdsa-with-SHA256",
            interKey.privateKey,
          ),
          "X509 CRL",
        ),
      };
      for (const [name, content] of Object.entries(files)) writeFileSync(file(name), content);
    });

    afterAll(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it("verifies the EC leaf chain strictly, for TLS server and client use", () => {
      for (const purpose of [[], ["-purpose", "sslserver"], ["-purpose", "sslclient"]]) {
        const result = verifyChain("leaf-ec.pem", ...purpose);
        expect(result.output).toContain("leaf-ec.pem: OK");
        expect(result.status).toBe(0);
      }
    });

    it("verifies the RSA leaf chain strictly", () => {
      const result = verifyChain("leaf-rsa.pem", "-purpose", "sslserver");
      expect(result.output).toContain("leaf-rsa.pem: OK");
      expect(result.status).toBe(0);
    });

    it("rejects a SPIFFE ID in another trust domain because of the name constraints", () => {
      const result = verifyChain("leaf-other-domain.pem");
      expect(result.status).not.toBe(0);
      expect(result.output).toMatch(/permitted subtree violation/);
    });

    it("rejects a DNS name outside the permitted DNS subtrees", () => {
      const result = verifyChain("leaf-other-dns.pem");
      expect(result.status).not.toBe(0);
      expect(result.output).toMatch(/permitted subtree violation/);
    });

    it("finds the RSA leaf revoked through the intermediate's CRL, and the EC leaf not", () => {
      const crlArgs = ["-crl_check", "-CRLfile", file("inter-crl.pem")];
      const revoked = verifyChain("leaf-rsa.pem", ...crlArgs);
      expect(revoked.status).not.toBe(0);
      expect(revoked.output).toMatch(/certificate revoked/);
      const good = verifyChain("leaf-ec.pem", ...crlArgs);
      expect(good.output).toContain("leaf-ec.pem: OK");
      expect(good.status).toBe(0);
    });

    it("verifies the intermediate's CSR", () => {
      const result = run(["req", "-verify", "-in", file("csr.pem"), "-noout"]);
      expect(result.output).toMatch(/verify OK/);
      expect(result.status).toBe(0);
    });

    it("verifies the root CRL and shows its number and a reason", () => {
      const crl = ["crl", "-in", file("crl.der"), "-inform", "DER"];
      const verified = run([...crl, "-CAfile", file("root.pem"), "-verify", "-noout"]);
      expect(verified.output).toMatch(/verify OK/);
      expect(verified.status).toBe(0);

      const text = run([...crl, "-text", "-noout"]);
      expect(text.status).toBe(0);
      expect(text.output).toMatch(/Version 2/);
      expect(text.output).toMatch(/X509v3 CRL Number:\s*\n\s*7\b/);
      expect(text.output).toMatch(/X509v3 Authority Key Identifier/);
      expect(text.output).toMatch(/Serial Number: 1A7B6C5D4E3F20110213243546576879/i);
      expect(text.output).toMatch(/X509v3 CRL Reason Code:\s*\n\s*Key Compromise/);
      expect(text.output.match(/CRL Reason Code/g)).toHaveLength(1);
    });

    it("prints the leaf's critical SAN with the SPIFFE ID and DNS name", () => {
      const result = run(["x509", "-in", file("leaf-ec.pem"), "-text", "-noout"]);
      expect(result.status).toBe(0);
      expect(result.output).toContain("X509v3 Subject Alternative Name: critical");
      expect(result.output).toContain(`URI:${SPIFFE_ID}, DNS:${DNS_NAME}`);
      expect(result.output).toContain("X509v3 Basic Constraints: critical");
      expect(result.output).toMatch(/X509v3 Key Usage: critical\s*\n\s*Digital Signature\s*\n/);
      expect(result.output).toMatch(/TLS Web Server Authentication, TLS Web Client Authentication/);
      expect(result.output).toMatch(/OCSP - URI:http:\/\/127\.0\.0\.1:8080\/ocsp/);
      expect(result.output).toMatch(/CA Issuers - URI:http:\/\/127\.0\.0\.1:8080\/ca\/inter-1\.crt/);

      const rsa = run(["x509", "-in", file("leaf-rsa.pem"), "-text", "-noout"]);
      expect(rsa.output).toMatch(/X509v3 Key Usage: critical\s*\n\s*Digital Signature, Key Encipherment/);
    });
  },
);
