import "reflect-metadata";
/**
 * The offline root ceremony CLI (src/cli/ceremony.ts) run as an operator runs it: a child process with an
 * argument array, SOFTHSM2_CONF pointing at this file's SoftHSM, the PIN in a file. Its outputs are judged by
 * openssl (and the root key's attributes by pkcs11-tool), never by our own parsers; every refusal must exit
 * non-zero, say why on stderr, write no output file and never echo the PIN.
 *
 * One SoftHSM for the file with a fresh root token and an "online" token on which the intermediate key is
 * generated in process (as the service does). The tests run in order: init-root first, the rest use its root.
 */
import { spawnSync } from "node:child_process";
import { createPublicKey, X509Certificate } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIntermediateCsr } from "../../src/ca/ceremony.js";
import { encodePem } from "../../src/common/pem.js";
import { Pkcs11KeyStore } from "../../src/signer/pkcs11/pkcs11-key-store.js";
import { makeCsr, requireTools, openssl, REPO_ROOT, scratchDir } from "../support/service.js";
import { createSoftHsm, type SoftHsm } from "../support/softhsm.js";

const missing = requireTools(["softhsm2-util", "openssl", "pkcs11-tool"]);

const CLI = join(REPO_ROOT, "src", "cli", "ceremony.ts");
// The CLI's defaults for both labels: the tests rely on them rather than passing --token-label/--key-label.
const ROOT_TOKEN = "anchorage-root";
const ROOT_KEY = "anchorage-root";
const ROOT_PIN = "root-ceremony-pin-5309";
const WRONG_PIN = "wrong-ceremony-pin-8675";
const ONLINE_TOKEN = "anchorage-online";
const ONLINE_PIN = "online-ceremony-pin-1123";
const DAY_MS = 86_400_000;

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Both halves of the intermediate request: the signer's public key and the CSR as PEM. */
interface IntermediateRequest {
  readonly spkiDer: Buffer;
  readonly csrPem: string;
  readonly csrDer: Buffer;
}

describe.skipIf(missing !== undefined)(`the root ceremony CLI${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let hsm: SoftHsm;
  const scratch = scratchDir("anchorage-ceremony-");
  const rootPem = scratch.file("root.pem");
  const pinFile = scratch.file("root.pin");
  const wrongPinFile = scratch.file("wrong.pin");
  let intermediate: IntermediateRequest;
  /** Everything the CLI printed in this file, for the check that no PIN ever appears. */
  const transcripts: string[] = [];

  /** The environment of an operator's shell: nothing of ours from the test process, SoftHSM pointed at this file's store. */
  function cliEnvironment(extra: Record<string, string> = {}): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [name, value] of Object.entries(process.env)) {
      if (value === undefined || name.startsWith("ANCHORAGE_") || name === "SOFTHSM2_CONF") continue;
      env[name] = value;
    }
    return { ...env, SOFTHSM2_CONF: hsm.confPath, ...extra };
  }

  /** Runs the ceremony CLI with an argument array (no shell), the module of this file's SoftHSM and, unless told otherwise, the PIN file. */
  function ceremony(args: readonly string[], options: { pinFile?: string | null; env?: Record<string, string> } = {}): Run {
    const pin = options.pinFile === null ? [] : ["--pin-file", options.pinFile ?? pinFile];
    const result = spawnSync(process.execPath, ["--import", "tsx", CLI, ...args, "--module", hsm.modulePath, ...pin], {
      cwd: REPO_ROOT,
      env: cliEnvironment(options.env),
      encoding: "utf8",
      timeout: 30_000,
    });
    if (result.error) throw result.error;
    const run = { status: result.status, stdout: result.stdout ?? "", stderr: result.stderr ?? "" };
    transcripts.push(`${run.stdout}${run.stderr}`);
    return run;
  }

  function expectSuccess(run: Run): void {
    expect(run.status, `the ceremony failed:\n${run.stdout}${run.stderr}`).toBe(0);
  }

  /** Non-zero exit, a "ceremony: …" line on stderr matching `message`, no output file, no PIN anywhere. */
  function expectRefusal(run: Run, out: string, message: RegExp): void {
    expect(run.status, `expected a refusal, got exit ${run.status}:\n${run.stdout}${run.stderr}`).not.toBe(0);
    expect(run.status).not.toBeNull(); // exited by itself, not killed by the timeout
    expect(run.stderr).toMatch(/^ceremony: /m);
    expect(run.stderr).toMatch(message);
    // A clear message, not a stack trace.
    expect(run.stderr).not.toMatch(/^\s+at /m);
    expect(existsSync(out), `${out} must not be written by a refused ceremony`).toBe(false);
    for (const pin of [ROOT_PIN, WRONG_PIN, ONLINE_PIN]) expect(`${run.stdout}${run.stderr}`).not.toContain(pin);
  }

  function x509Text(path: string): string {
    const result = openssl(["x509", "-in", path, "-noout", "-text"]);
    expect(result.status, result.stderr).toBe(0);
    return result.stdout;
  }

  function validityDays(certificate: X509Certificate): number {
    return (new Date(certificate.validTo).getTime() - new Date(certificate.validFrom).getTime()) / DAY_MS;
  }

  beforeAll(async () => {
    hsm = await createSoftHsm([
      { label: ROOT_TOKEN, pin: ROOT_PIN },
      { label: ONLINE_TOKEN, pin: ONLINE_PIN },
    ]);
    scratch.file("root.pin", `${ROOT_PIN}\n`);
    scratch.file("wrong.pin", `${WRONG_PIN}\n`);

    // The intermediate's key is made inside the online token, as the service does; only its CSR leaves.
    const online = await Pkcs11KeyStore.open({ modulePath: hsm.modulePath, tokenLabel: ONLINE_TOKEN, pin: ONLINE_PIN });
    try {
      const signer = await online.generateKey("ceremony-intermediate", { type: "ec", curve: "P-256" });
      const csrDer = await createIntermediateCsr({ signer, subject: { commonName: "Ceremony Test Intermediate CA", organization: "Anchorage" } });
      intermediate = { spkiDer: signer.publicKeySpki, csrDer, csrPem: encodePem(csrDer, "CERTIFICATE REQUEST") };
    } finally {
      // Closed before any CLI runs: the ceremony machine has the root token to itself.
      await online.close();
    }
    scratch.file("intermediate.csr", intermediate.csrPem);
  }, 60_000);

  afterAll(async () => {
    scratch.remove();
    await hsm?.cleanup();
  });

  describe("init-root", () => {
    let run: Run;

    beforeAll(() => {
      run = ceremony(["init-root", "--out", rootPem]);
    });

    it("writes a self-signed P-384 CA certificate valid for 10 years that openssl verifies", () => {
      expectSuccess(run);
      expect(run.stdout).toContain(rootPem);
      const text = x509Text(rootPem);
      expect(text).toMatch(/X509v3 Basic Constraints: critical\s*\n\s*CA:TRUE\s*\n/);
      expect(text).toMatch(/X509v3 Key Usage: critical\s*\n\s*Certificate Sign, CRL Sign\s*\n/);
      expect(text).toContain("Public-Key: (384 bit)");
      expect(text).toMatch(/NIST CURVE: P-384|ASN1 OID: secp384r1/);
      expect(text).toContain("Signature Algorithm: ecdsa-with-SHA384");

      const root = new X509Certificate(readFileSync(rootPem));
      expect(root.ca).toBe(true);
      expect(root.subject).toBe(root.issuer);
      expect(root.subject).toContain("CN=Anchorage Root CA");
      expect(root.checkIssued(root)).toBe(true);
      // Ten years by default (3650 days; a calendar decade is 3652-3653): within a day of either reading.
      const days = validityDays(root);
      expect(days).toBeGreaterThanOrEqual(3650 - 1);
      expect(days).toBeLessThanOrEqual(3653 + 1);
      // Valid now (backdated a little for slow clocks, never post-dated).
      expect(new Date(root.validFrom).getTime()).toBeLessThanOrEqual(Date.now());
      expect(new Date(root.validFrom).getTime()).toBeGreaterThan(Date.now() - 2 * DAY_MS);

      const verified = openssl(["verify", "-x509_strict", "-CAfile", rootPem, rootPem]);
      expect(verified.status, `${verified.stdout}${verified.stderr}`).toBe(0);
      expect(verified.stdout.trim()).toMatch(/: OK$/);
    });

    it("never prints the PIN", () => {
      expect(`${run.stdout}${run.stderr}`).not.toContain(ROOT_PIN);
    });

    it("leaves the root key in the token, sensitive and never extractable, as pkcs11-tool lists it", () => {
      const listed = spawnSync(
        "pkcs11-tool",
        ["--module", hsm.modulePath, "--token-label", ROOT_TOKEN, "--login", "--pin", ROOT_PIN, "--list-objects", "--type", "privkey"],
        { encoding: "utf8", env: cliEnvironment() },
      );
      expect(listed.status, listed.stderr).toBe(0);
      const block = listed.stdout.split(/\n(?=\S)/).find((entry) => new RegExp(`label:\\s+${ROOT_KEY}\\s*$`, "m").test(entry));
      expect(block, listed.stdout).toBeDefined();
      expect(block).toMatch(/Access:\s+sensitive, always sensitive, never extractable/);
      expect(block).toMatch(/^Private Key Object; EC/);
      expect(block).toMatch(/Usage:\s+sign\s*$/m);
    });

    it("refuses to create a second root key under the same label, and writes nothing", () => {
      const out = scratch.file("second-root.pem");
      expectRefusal(ceremony(["init-root", "--out", out]), out, /already exists/);
      // The first root's key is still the one on the token: a CRL signed now verifies under root.pem.
      const crl = scratch.file("still-root.crl");
      expectSuccess(ceremony(["root-crl", "--root-cert", rootPem, "--out", crl, "--crl-number", "1"]));
      const verified = openssl(["crl", "-inform", "DER", "-in", crl, "-CAfile", rootPem, "-verify", "-noout"]);
      expect(verified.status, verified.stderr).toBe(0);
    });
  });

  describe("sign-intermediate", () => {
    it("signs the online token's CSR: pathlen 0, a critical URI name constraint, 730 days, verified by openssl", () => {
      const out = scratch.file("intermediate.pem");
      const run = ceremony([
        "sign-intermediate",
        "--root-cert",
        rootPem,
        "--csr",
        scratch.file("intermediate.csr"),
        "--out",
        out,
        "--days",
        "730",
        "--trust-domain",
        "example.org",
      ]);
      expectSuccess(run);
      expect(`${run.stdout}${run.stderr}`).not.toContain(ROOT_PIN);

      const text = x509Text(out);
      expect(text).toMatch(/X509v3 Basic Constraints: critical\s*\n\s*CA:TRUE, pathlen:0\s*\n/);
      expect(text).toMatch(/X509v3 Key Usage: critical\s*\n\s*[^\n]*Certificate Sign, CRL Sign/);
      expect(text).toMatch(/X509v3 Name Constraints: critical\s*\n\s*Permitted:\s*\n\s*URI:example\.org\s*\n/);
      expect(text).not.toMatch(/Excluded:/);

      const certificate = new X509Certificate(readFileSync(out));
      const root = new X509Certificate(readFileSync(rootPem));
      expect(certificate.ca).toBe(true);
      expect(certificate.subject).toContain("CN=Ceremony Test Intermediate CA");
      expect(certificate.issuer).toBe(root.subject);
      expect(certificate.checkIssued(root)).toBe(true);
      // The key certified is the one inside the online token, untouched by the ceremony.
      const certifiedKey = certificate.publicKey.export({ type: "spki", format: "der" });
      expect(certifiedKey.equals(createPublicKey({ key: intermediate.spkiDer, format: "der", type: "spki" }).export({ type: "spki", format: "der" }))).toBe(true);
      expect(Math.abs(validityDays(certificate) - 730)).toBeLessThanOrEqual(1 / 24);

      const verified = openssl(["verify", "-x509_strict", "-CAfile", rootPem, out]);
      expect(verified.status, `${verified.stdout}${verified.stderr}`).toBe(0);
      expect(verified.stdout.trim()).toMatch(/: OK$/);
    });

    it.each([
      { days: "100", why: "shorter than a year" },
      { days: "4000", why: "longer than five years" },
    ])("refuses --days $days ($why)", ({ days }) => {
      const out = scratch.file(`days-${days}.pem`);
      const run = ceremony(["sign-intermediate", "--root-cert", rootPem, "--csr", scratch.file("intermediate.csr"), "--out", out, "--days", days]);
      expectRefusal(run, out, /1 to 5 years|365 to 18\d\d days/);
    });

    it("refuses a CSR whose signature was damaged", () => {
      const damaged = Buffer.from(intermediate.csrDer);
      damaged[damaged.length - 1] = (damaged[damaged.length - 1] as number) ^ 0x01;
      const csr = scratch.file("damaged.csr", encodePem(damaged, "CERTIFICATE REQUEST"));
      const out = scratch.file("damaged.pem");
      const run = ceremony(["sign-intermediate", "--root-cert", rootPem, "--csr", csr, "--out", out, "--days", "730"]);
      expectRefusal(run, out, /signature/i);
    });

    it("refuses a CSR for an Ed25519 key made by openssl", () => {
      const csr = scratch.file("ed25519.csr", makeCsr({ spiffeId: "spiffe://example.org/not-a-ca", keyType: "Ed25519" }).csrPem);
      const out = scratch.file("ed25519.pem");
      const run = ceremony(["sign-intermediate", "--root-cert", rootPem, "--csr", csr, "--out", out, "--days", "730"]);
      expectRefusal(run, out, /unsupported|must be EC P-256, P-384 or RSA/i);
    });

    it("refuses when --out is missing", () => {
      const before = readdirSync(scratch.dir).sort();
      const run = ceremony(["sign-intermediate", "--root-cert", rootPem, "--csr", scratch.file("intermediate.csr"), "--days", "730"]);
      expectRefusal(run, scratch.file("never-named.pem"), /--out is required/);
      // Nothing written anywhere in the working folder either.
      expect(readdirSync(scratch.dir).sort()).toEqual(before);
    });

    it("refuses a root certificate that is not the certificate of the key on the token", () => {
      // A genuine root made by the same CLI on the same token, under another key label.
      const otherRoot = scratch.file("other-root.pem");
      expectSuccess(ceremony(["init-root", "--out", otherRoot, "--key-label", "other-root", "--cn", "Other Root CA"]));
      const out = scratch.file("mismatch.pem");
      const run = ceremony(["sign-intermediate", "--root-cert", otherRoot, "--csr", scratch.file("intermediate.csr"), "--out", out, "--days", "730"]);
      expectRefusal(run, out, /not the key of the given root certificate/);
    });

    it("refuses a wrong PIN without printing either PIN", () => {
      const out = scratch.file("wrong-pin.pem");
      const run = ceremony(
        ["sign-intermediate", "--root-cert", rootPem, "--csr", scratch.file("intermediate.csr"), "--out", out, "--days", "730"],
        { pinFile: wrongPinFile },
      );
      expectRefusal(run, out, /PIN/);
    });

    it("refuses when the PIN is given nowhere (no --pin-file, no ANCHORAGE_ROOT_PIN)", () => {
      const out = scratch.file("no-pin.pem");
      const run = ceremony(
        ["sign-intermediate", "--root-cert", rootPem, "--csr", scratch.file("intermediate.csr"), "--out", out, "--days", "730"],
        { pinFile: null },
      );
      expectRefusal(run, out, /--pin-file|ANCHORAGE_ROOT_PIN/);
    });

    it("takes the PIN from ANCHORAGE_ROOT_PIN when no file is given", () => {
      const out = scratch.file("env-pin.pem");
      const run = ceremony(
        ["sign-intermediate", "--root-cert", rootPem, "--csr", scratch.file("intermediate.csr"), "--out", out, "--days", "365"],
        { pinFile: null, env: { ANCHORAGE_ROOT_PIN: ROOT_PIN } },
      );
      expectSuccess(run);
      expect(`${run.stdout}${run.stderr}`).not.toContain(ROOT_PIN);
      expect(openssl(["verify", "-CAfile", rootPem, out]).status).toBe(0);
    });
  });

  describe("root-crl", () => {
    it("signs a CRL that openssl verifies, with the CRL number, both serials and the reason given", () => {
      const out = scratch.file("root.crl");
      const run = ceremony([
        "root-crl",
        "--root-cert",
        rootPem,
        "--out",
        out,
        "--crl-number",
        "7",
        "--revoke",
        "0abc:keyCompromise",
        "--revoke",
        "0def",
      ]);
      expectSuccess(run);

      const verified = openssl(["crl", "-inform", "DER", "-in", out, "-CAfile", rootPem, "-verify", "-noout"]);
      expect(verified.status, verified.stderr).toBe(0);
      expect(`${verified.stdout}${verified.stderr}`).toContain("verify OK");

      const text = openssl(["crl", "-inform", "DER", "-in", out, "-noout", "-text"]);
      expect(text.status, text.stderr).toBe(0);
      expect(text.stdout).toMatch(/X509v3 CRL Number:\s*\n\s*7\s*\n/);
      expect(text.stdout).toMatch(/Issuer: O = Anchorage, CN = Anchorage Root CA\s*\n/);
      // Each revoked entry, with its own extensions (if any) up to the next entry.
      const entries = new Map(
        [...text.stdout.matchAll(/Serial Number: ([0-9A-F]+)\n([\s\S]*?)(?=\n\s*Serial Number:|\n\s*Signature Algorithm:)/g)].map((match) => [
          match[1] as string,
          match[2] as string,
        ]),
      );
      expect([...entries.keys()].sort()).toEqual(["0ABC", "0DEF"]);
      expect(entries.get("0ABC")).toMatch(/X509v3 CRL Reason Code:\s*\n\s*Key Compromise/);
      // No reason given: unspecified, which RFC 5280 says to express by leaving the extension out.
      expect(entries.get("0DEF")).not.toMatch(/Reason Code/);
    });

    it("refuses a reason it does not offer (certificateHold)", () => {
      const out = scratch.file("hold.crl");
      const run = ceremony(["root-crl", "--root-cert", rootPem, "--out", out, "--crl-number", "8", "--revoke", "01:certificateHold"]);
      expectRefusal(run, out, /reason must be one of/);
    });
  });

  it("never printed the root PIN in any run", () => {
    expect(transcripts.length).toBeGreaterThan(10);
    for (const transcript of transcripts) expect(transcript).not.toContain(ROOT_PIN);
  });
});
