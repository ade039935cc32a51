/**
 * The running service as operators and relying parties see it: public endpoints checked with openssl, HSM key
 * attributes and token separation as pkcs11-tool (OpenSC) reports them, graceful restart on the same data
 * folder, and a request in flight when SIGTERM arrives.
 *
 * One data folder for the whole file; the service is stopped and started again on it as the tests go (the
 * tests run in order).
 */
import { spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, renameSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeCsr, requireTools, openssl, scratchDir, startService, type RunningService } from "../support/service.js";

const missing = requireTools(["softhsm2-util", "openssl", "pkcs11-tool"]);

const MODULE = process.env.ANCHORAGE_PKCS11_MODULE ?? "/usr/lib/softhsm/libsofthsm2.so";
const ONLINE_TOKEN = "anchorage-online";
const ROOT_TOKEN = "anchorage-root";
const ROOT_KEY_LABEL = "anchorage-root";
const CREATED_LOG = "development root and intermediate created";
const TRUST_DOMAIN = "anchorage.test";

const ISSUED_FIELDS = "serial certificatePem chainPem notBefore notAfter spiffeId dnsNames";
const CREATE_TOKEN = `mutation ($input: CreateEnrollmentTokenInput!) { createEnrollmentToken(input: $input) { id token usesLeft } }`;
const ISSUE = `mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { ${ISSUED_FIELDS} } }`;
const ISSUE_BATCH = `mutation ($inputs: [IssueCertificateInput!]!) {
  issueCertificates(inputs: $inputs) { certificate { ${ISSUED_FIELDS} } error { code message } }
}`;
const AUTHORITIES = "{ authorities { id kind status subject parentId certificatePem } }";

interface Authority {
  id: string;
  kind: "ROOT" | "INTERMEDIATE";
  status: string;
  subject: string;
  parentId: string | null;
  certificatePem: string;
}

function derOfPem(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----(BEGIN|END) [^-]+-----/g, "").replace(/\s+/g, ""), "base64");
}

/** Each PEM certificate of a bundle, DER. */
function pemBlocks(pem: string): Buffer[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((match) => derOfPem(match[0]));
}

describe.skipIf(missing !== undefined)(`the service's lifecycle${missing ? ` (skipped: ${missing})` : ""}`, () => {
  /** The first instance: owns the data folder, which its cleanup removes. */
  let first: RunningService;
  /** Whichever instance is current. */
  let service: RunningService;
  const scratch = scratchDir("anchorage-lifecycle-");

  const admin = (query: string, variables?: Record<string, unknown>) => service.gql(query, variables, { bearer: service.adminKey });
  const secret = (name: string): string => readFileSync(join(first.dataDir, "secrets", name), "utf8").trim();

  /** pkcs11-tool against the service's SoftHSM store: a tool we did not write reading the same tokens. */
  function pkcs11Tool(args: string[]): { status: number | null; output: string } {
    const result = spawnSync("pkcs11-tool", ["--module", MODULE, ...args], {
      encoding: "utf8",
      env: { ...process.env, SOFTHSM2_CONF: join(first.dataDir, "softhsm2.conf") },
    });
    return { status: result.status, output: `${result.stdout ?? ""}${result.stderr ?? ""}` };
  }

  async function authorities(): Promise<Authority[]> {
    const response = await service.gql(AUTHORITIES);
    expect(response.body.errors).toBeUndefined();
    return response.body.data.authorities as Authority[];
  }

  async function createToken(spiffeId: string, uses = 1): Promise<string> {
    const response = await admin(CREATE_TOKEN, { input: { spiffeId, uses } });
    expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
    return response.body.data.createEnrollmentToken.token as string;
  }

  beforeAll(async () => {
    first = await startService({ env: { ANCHORAGE_TRUST_DOMAIN: TRUST_DOMAIN } });
    service = first;
  }, 90_000);

  afterAll(async () => {
    scratch.remove();
    if (service && service !== first) await service.stop();
    if (first) await first.cleanup();
  }, 40_000);

  it("serves health, readiness, CA certificates, the root CRL and the trust bundle over plain HTTP", async () => {
    const health = await service.http("/healthz");
    expect(health.status).toBe(200);

    const ready = await service.http("/readyz");
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body.toString("utf8"))).toMatchObject({ database: true, hsm: true });

    const all = await authorities();
    const root = all.find((authority) => authority.kind === "ROOT");
    const intermediate = all.find((authority) => authority.kind === "INTERMEDIATE" && authority.status === "ACTIVE");
    expect(root).toBeDefined();
    expect(intermediate).toBeDefined();
    expect(intermediate?.parentId).toBe(root?.id);
    expect(derOfPem(root?.certificatePem as string).equals(derOfPem(service.rootPem))).toBe(true);

    // AIA caIssuers: the intermediate as DER, which openssl parses and which openssl says root.pem signed.
    const crt = await service.http(`/ca/${intermediate?.id}.crt`);
    expect(crt.status).toBe(200);
    expect(crt.body.equals(derOfPem(intermediate?.certificatePem as string))).toBe(true);
    const crtPath = scratch.file("intermediate.der", crt.body);
    const parsed = openssl(["x509", "-inform", "DER", "-in", crtPath, "-noout", "-subject", "-issuer"]);
    expect(parsed.status, parsed.stderr).toBe(0);
    expect(parsed.stdout).toMatch(/subject=.*Intermediate/);
    const intermediatePem = scratch.file("intermediate.pem", intermediate?.certificatePem as string);
    const rootPath = scratch.file("root.pem", service.rootPem);
    const chained = openssl(["verify", "-x509_strict", "-CAfile", rootPath, intermediatePem]);
    expect(chained.status, chained.stderr).toBe(0);

    const unknown = await service.http(`/ca/${"ab".repeat(20)}.crt`);
    expect(unknown.status).toBe(404);

    // The root CRL, signed by the root (during the ceremony), verified by openssl against root.pem.
    const crl = await service.http(`/crl/${root?.id}.crl`);
    expect(crl.status).toBe(200);
    const crlPath = scratch.file("root.crl", crl.body);
    const verified = openssl(["crl", "-inform", "DER", "-in", crlPath, "-CAfile", rootPath, "-verify", "-noout"]);
    expect(verified.status, verified.stderr).toBe(0);
    expect(`${verified.stdout}${verified.stderr}`).toContain("verify OK");

    // Trust bundle as PEM: the root among its certificates.
    const bundlePem = await service.http("/bundle.pem");
    expect(bundlePem.status).toBe(200);
    const blocks = pemBlocks(bundlePem.body.toString("utf8"));
    expect(blocks.some((der) => der.equals(derOfPem(service.rootPem)))).toBe(true);

    // SPIFFE bundle: a JWKS whose x509-svid keys carry the root in x5c.
    const bundle = await service.http("/bundle");
    expect(bundle.status).toBe(200);
    const jwks = JSON.parse(bundle.body.toString("utf8")) as { keys: { use: string; x5c?: string[] }[] };
    expect(Array.isArray(jwks.keys)).toBe(true);
    const svidKeys = jwks.keys.filter((key) => key.use === "x509-svid");
    expect(svidKeys.length).toBeGreaterThanOrEqual(1);
    for (const key of svidKeys) expect(key.x5c?.length).toBe(1);
    expect(svidKeys.some((key) => Buffer.from(key.x5c?.[0] ?? "", "base64").equals(derOfPem(service.rootPem)))).toBe(true);
  });

  it("keeps the intermediate's private key sensitive and never extractable in the online token (pkcs11-tool)", () => {
    const keyLabel = service.sqlValue("SELECT key_label FROM authorities WHERE kind = 'intermediate' AND status = 'active'") as string;
    expect(keyLabel).toMatch(/\S/);
    const listing = pkcs11Tool(["--token-label", ONLINE_TOKEN, "--login", "--pin", secret("online-token.pin"), "--list-objects", "--type", "privkey"]);
    expect(listing.status, listing.output).toBe(0);
    const objects = listing.output.split(/\n(?=\S)/);
    const key = objects.find((object) => object.startsWith("Private Key Object") && new RegExp(`label:\\s+${keyLabel}\\s*\\n`).test(`${object}\n`));
    expect(key, listing.output).toBeDefined();
    const access = /Access:\s+(.*)/.exec(key as string)?.[1] ?? "";
    const attributes = access.split(",").map((attribute) => attribute.trim());
    expect(attributes).toContain("sensitive");
    expect(attributes).toContain("always sensitive");
    expect(attributes).toContain("never extractable");
    expect(attributes).not.toContain("extractable");
  });

  it("cannot sign with the root: the root key is not on the online token and the service holds no root PIN", async () => {
    // Why this proves it. The service signs only through PKCS#11, and PKCS#11 only uses a private key after a
    // login to the token that holds it. (1) The online token, the only one the service logs in to, holds no
    // object labelled anchorage-root, while (control) the root token does hold that key. (2) The online PIN,
    // the only PIN the service has, does not open the root token (CKR_PIN_INCORRECT). (3) The root PIN is in
    // neither the service's environment, command line nor logs. With no key and no way into the token that
    // has it, the running service cannot produce a root signature.
    const onlinePin = secret("online-token.pin");
    const rootPin = secret("root-token.pin");
    expect(rootPin).not.toBe(onlinePin);

    const online = pkcs11Tool(["--token-label", ONLINE_TOKEN, "--login", "--pin", onlinePin, "--list-objects"]);
    expect(online.status, online.output).toBe(0);
    expect(online.output).toMatch(/Private Key Object/);
    expect(online.output).not.toMatch(new RegExp(`label:\\s+${ROOT_KEY_LABEL}\\s*$`, "m"));

    const control = pkcs11Tool(["--token-label", ROOT_TOKEN, "--login", "--pin", rootPin, "--list-objects", "--type", "privkey"]);
    expect(control.status, control.output).toBe(0);
    expect(control.output).toMatch(new RegExp(`label:\\s+${ROOT_KEY_LABEL}\\s*$`, "m"));

    const wrongPin = pkcs11Tool(["--token-label", ROOT_TOKEN, "--login", "--pin", onlinePin, "--list-objects"]);
    expect(wrongPin.status).not.toBe(0);
    expect(wrongPin.output).toMatch(/CKR_PIN_INCORRECT/);

    expect(service.logs()).not.toContain(rootPin);
    if (existsSync(`/proc/${service.pid}/environ`)) {
      expect(readFileSync(`/proc/${service.pid}/environ`, "utf8")).not.toContain(rootPin);
      expect(readFileSync(`/proc/${service.pid}/cmdline`, "utf8")).not.toContain(rootPin);
    }
    // Still serving after all that (pkcs11-tool shared the token store with the running service).
    const ready = await service.http("/readyz");
    expect(ready.status).toBe(200);
  });

  it("restarts gracefully on the same data folder with the same root, authorities, keys and history", async () => {
    const spiffeId = `spiffe://${TRUST_DOMAIN}/ns/restart/sa/app`;
    const token = await createToken(spiffeId);
    const issued = await service.gql(ISSUE, { input: { csr: makeCsr({ spiffeId }).csrPem, token } });
    expect(issued.body.errors).toBeUndefined();
    const serial = issued.body.data.issueCertificate.serial as string;

    const rootBefore = readFileSync(join(first.dataDir, "root.pem"));
    const authoritiesBefore = (await authorities()).map(({ id, kind, status }) => ({ id, kind, status }));
    const totalBefore = (await admin("{ certificates { totalCount } }")).body.data.certificates.totalCount as number;
    const adminKey = service.adminKey;
    expect(first.logs()).toContain(CREATED_LOG);

    const code = await service.stop();
    expect(code).toBe(0);
    expect(first.logs()).toMatch(/"msg":"stopped"/);

    service = await startService({ dataDir: first.dataDir, env: { ANCHORAGE_TRUST_DOMAIN: TRUST_DOMAIN } });
    expect(service.pid).not.toBe(first.pid);
    expect(readFileSync(join(first.dataDir, "root.pem")).equals(rootBefore)).toBe(true);
    expect(service.rootPem).toBe(rootBefore.toString("utf8"));
    expect(service.adminKey).toBe(adminKey);
    expect((await authorities()).map(({ id, kind, status }) => ({ id, kind, status }))).toEqual(authoritiesBefore);

    const looked = await service.gql(`query ($serial: String!) { certificate(serial: $serial) { serial status spiffeId } }`, { serial }, { bearer: adminKey });
    expect(looked.body.errors).toBeUndefined();
    expect(looked.body.data.certificate).toEqual({ serial, status: "VALID", spiffeId });
    const totalAfter = (await admin("{ certificates { totalCount } }")).body.data.certificates.totalCount as number;
    // The restarted service issued itself a new HTTPS certificate; nothing else was added or lost.
    expect(totalAfter).toBe(totalBefore + 1);

    expect(service.logs()).not.toContain(CREATED_LOG);
    expect((await service.http("/readyz")).status).toBe(200);

    // And it still issues with the same intermediate.
    const again = await service.gql(ISSUE, { input: { csr: makeCsr({ spiffeId }).csrPem, token: await createToken(spiffeId) } });
    expect(again.body.errors).toBeUndefined();
    const leaf = new X509Certificate(again.body.data.issueCertificate.certificatePem as string);
    const intermediate = (await authorities()).find((authority) => authority.kind === "INTERMEDIATE" && authority.status === "ACTIVE");
    expect(leaf.checkIssued(new X509Certificate(intermediate?.certificatePem as string))).toBe(true);
  }, 60_000);

  it("finishes a batch that is in flight when SIGTERM arrives, then exits 0", async () => {
    const spiffeId = `spiffe://${TRUST_DOMAIN}/ns/shutdown/sa/app`;
    const token = await createToken(spiffeId, 16);
    const inputs = Array.from({ length: 16 }, () => ({ csr: makeCsr({ spiffeId }).csrPem, token }));
    const body = Buffer.from(JSON.stringify({ query: ISSUE_BATCH, variables: { inputs } }));
    const rowsBefore = service.countCertificateRows();
    const target = service;

    // The request is sent in two parts so that it is provably in flight: the headers and all but the last
    // bytes of the body first; SIGTERM once the service has them (and has logged that it is shutting down);
    // then the rest. A service that drops open requests on SIGTERM fails here.
    const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const request = httpsRequest(
        {
          host: "127.0.0.1",
          port: target.graphqlPort,
          path: "/graphql",
          method: "POST",
          headers: { "content-type": "application/json", "content-length": body.length },
          ca: target.rootPem,
          servername: "localhost",
          agent: false,
        },
        (answer) => {
          const chunks: Buffer[] = [];
          answer.on("data", (chunk: Buffer) => chunks.push(chunk));
          answer.on("end", () => resolve({ status: answer.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
          answer.on("error", reject);
        },
      );
      request.on("error", reject);
      request.write(body.subarray(0, body.length - 64), () => {
        void (async () => {
          // Give the service time to read the request line and headers, so the connection is busy, not idle.
          await sleep(300);
          process.kill(target.pid, "SIGTERM");
          for (let waited = 0; !target.logs().includes('"msg":"shutting down"') && waited < 5000; waited += 20) await sleep(20);
          request.end(body.subarray(body.length - 64));
        })().catch(reject);
      });
    });

    const answer = await response;
    expect(target.logs()).toContain('"msg":"shutting down"');
    expect(answer.status).toBe(200);
    const parsed = JSON.parse(answer.body) as { data?: { issueCertificates: { certificate: { serial: string } | null; error: unknown }[] }; errors?: unknown };
    expect(parsed.errors).toBeUndefined();
    const results = parsed.data?.issueCertificates ?? [];
    expect(results).toHaveLength(16);
    for (const result of results) {
      expect(result.error).toBeNull();
      expect(result.certificate?.serial).toMatch(/^[0-9a-f]{32}$/);
    }

    const code = await target.exited;
    expect(code).toBe(0);
    expect(target.logs()).toMatch(/"msg":"stopped"/);
    // Everything returned was recorded before the process went away.
    expect(target.countCertificateRows()).toBe(rowsBefore + 16);
    for (const result of results) {
      expect(target.sqlValue("SELECT state FROM certificates WHERE serial = ?", result.certificate?.serial)).toBe("issued");
    }
  }, 60_000);

  it("starts without the root PIN once the root exists, and does not invent one", async () => {
    // Production keeps the root PIN offline with the root token; the online service must neither need it
    // nor write one. Take it away and start again.
    const rootPinPath = join(first.dataDir, "secrets", "root-token.pin");
    const offline = join(scratch.dir, "root-token.pin.offline");
    renameSync(rootPinPath, offline);

    service = await startService({ dataDir: first.dataDir, env: { ANCHORAGE_TRUST_DOMAIN: TRUST_DOMAIN } });
    expect((await service.http("/readyz")).status).toBe(200);
    expect(service.logs()).not.toContain(CREATED_LOG);
    const code = await service.stop();
    expect(code).toBe(0);
    expect(existsSync(rootPinPath), "the service wrote a root PIN file of its own").toBe(false);
  }, 60_000);
});
