/**
 * Issuance end to end against the real service (child process, SoftHSM, SQLite file, HTTPS): certificates
 * checked by openssl and by a mutual-TLS handshake, batches, key types, lifetimes, token use under
 * concurrency, every refusal leaving nothing behind but its audit event, admin authentication, hostile
 * GraphQL, pagination, and logs that never carry a secret.
 *
 * One service for the whole file; the tests run in order and some build on state earlier ones left (the
 * pagination test counts what the others issued, the log test looks for every secret handed out).
 */
import { randomBytes, X509Certificate } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { connect as tlsConnect, createServer as createTlsServer, type PeerCertificate, type Server, type TLSSocket } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { refusal, type Issued } from "../support/graphql.js";
import { makeCsr, requireTools, onceWithin, openssl, scratchDir, startService, type CsrKeyType, type GqlResponse, type RunningService } from "../support/service.js";

const missing = requireTools(["softhsm2-util", "openssl"]);

const TRUST_DOMAIN = "anchorage.test";
const spiffe = (path: string): string => `spiffe://${TRUST_DOMAIN}/${path}`;

const ISSUED_FIELDS = "serial certificatePem chainPem notBefore notAfter spiffeId dnsNames";
const CREATE_TOKEN = `mutation ($input: CreateEnrollmentTokenInput!) {
  createEnrollmentToken(input: $input) { id token spiffeId dnsNames maxTtlSeconds expiresAt usesLeft }
}`;
const ISSUE = `mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { ${ISSUED_FIELDS} } }`;
const ISSUE_BATCH = `mutation ($inputs: [IssueCertificateInput!]!) {
  issueCertificates(inputs: $inputs) { certificate { ${ISSUED_FIELDS} } error { code message } }
}`;

interface Token {
  id: string;
  token: string;
  spiffeId: string;
  dnsNames: string[];
  maxTtlSeconds: number;
  expiresAt: string;
  usesLeft: number;
}

function sanEntries(certificatePem: string): string[] {
  const san = new X509Certificate(certificatePem).subjectAltName ?? "";
  return san.split(", ").filter((entry) => entry !== "");
}

function pemOf(der: Buffer, label = "CERTIFICATE REQUEST"): string {
  const lines = der.toString("base64").match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

function derOf(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----(BEGIN|END) [^-]+-----/g, "").replace(/\s+/g, ""), "base64");
}

describe.skipIf(missing !== undefined)(`issuance through the running service${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let service: RunningService;
  const scratch = scratchDir("anchorage-issuance-");
  /** Every enrollment token and API key secret handed out in this file, for the log check at the end. */
  const secretsHandedOut: string[] = [];

  const admin = (query: string, variables?: Record<string, unknown>) => service.gql(query, variables, { bearer: service.adminKey });

  async function createToken(input: Record<string, unknown>): Promise<Token> {
    const response = await admin(CREATE_TOKEN, { input });
    expect(response.body.errors, JSON.stringify(response.body)).toBeUndefined();
    const token = response.body.data.createEnrollmentToken as Token;
    secretsHandedOut.push(token.token);
    return token;
  }

  async function issue(input: Record<string, unknown>): Promise<GqlResponse> {
    return service.gql(ISSUE, { input });
  }

  async function issueOk(input: Record<string, unknown>): Promise<Issued> {
    const response = await issue(input);
    expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
    expect(response.status).toBe(200);
    return response.body.data.issueCertificate as Issued;
  }

  function verifyWithOpenssl(issued: Issued, name: string): { status: number | null; stdout: string; stderr: string } {
    const root = scratch.file(`${name}-root.pem`, service.rootPem);
    const chain = scratch.file(`${name}-chain.pem`, issued.chainPem);
    const leaf = scratch.file(`${name}-leaf.pem`, issued.certificatePem);
    return openssl(["verify", "-x509_strict", "-CAfile", root, "-untrusted", chain, leaf]);
  }

  function x509Text(certificatePem: string): string {
    const result = openssl(["x509", "-noout", "-text"], certificatePem);
    expect(result.status, result.stderr).toBe(0);
    return result.stdout;
  }

  beforeAll(async () => {
    service = await startService({ env: { ANCHORAGE_TRUST_DOMAIN: TRUST_DOMAIN } });
  }, 90_000);

  afterAll(async () => {
    scratch.remove();
    if (service) {
      const code = await service.stop();
      await service.cleanup();
      expect(code).toBe(0);
    }
  }, 30_000);

  it("issues a certificate that openssl verifies up to root.pem, with the identity, lifetime and serial asked for", async () => {
    const spiffeId = spiffe("ns/default/sa/web");
    const dnsNames = ["web.default.svc", "web.anchorage.test"];
    const token = await createToken({ spiffeId, dnsNames, uses: 1 });
    expect(token).toMatchObject({ spiffeId, usesLeft: 1 });
    expect([...token.dnsNames].sort()).toEqual([...dnsNames].sort());
    expect(token.token).toMatch(/\S{32,}/);

    const rowsBefore = service.countCertificateRows();
    const { csrPem } = makeCsr({ spiffeId, dnsNames });
    const requestedAt = Date.now();
    const issued = await issueOk({ csr: csrPem, token: token.token });

    const verified = verifyWithOpenssl(issued, "basic");
    expect(verified.status, `${verified.stdout}${verified.stderr}`).toBe(0);
    expect(verified.stdout.trim()).toMatch(/: OK$/);

    const leaf = new X509Certificate(issued.certificatePem);
    expect(sanEntries(issued.certificatePem).sort()).toEqual([`URI:${spiffeId}`, ...dnsNames.map((name) => `DNS:${name}`)].sort());
    expect(issued.spiffeId).toBe(spiffeId);
    expect([...issued.dnsNames].sort()).toEqual([...dnsNames].sort());
    expect(leaf.ca).toBe(false);

    // Default lifetime one hour from now; notBefore backdated for clock skew (but not absurdly far).
    const notAfter = new Date(issued.notAfter).getTime();
    const notBefore = new Date(issued.notBefore).getTime();
    expect(Math.abs((notAfter - requestedAt) / 1000 - 3600)).toBeLessThanOrEqual(60);
    expect(notBefore).toBeLessThan(requestedAt - 60_000);
    expect(notBefore).toBeGreaterThan(requestedAt - 3600_000);
    expect(new Date(leaf.validTo).getTime()).toBe(Math.floor(notAfter / 1000) * 1000);
    expect(new Date(leaf.validFrom).getTime()).toBe(Math.floor(notBefore / 1000) * 1000);

    // Serial: 128 bits as 32 lower-case hex digits, the same number as in the certificate.
    expect(issued.serial).toMatch(/^[0-9a-f]{32}$/);
    expect(leaf.serialNumber.toLowerCase().replace(/^0+/, "")).toBe(issued.serial.replace(/^0+/, ""));

    // Workload profile, as openssl prints it.
    const text = x509Text(issued.certificatePem);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature\s*\n/);
    expect(text).toMatch(/TLS Web Server Authentication, TLS Web Client Authentication|TLS Web Client Authentication, TLS Web Server Authentication/);

    // Recorded, and visible to an admin.
    expect(service.countCertificateRows()).toBe(rowsBefore + 1);
    expect(service.sqlValue("SELECT state FROM certificates WHERE serial = ?", issued.serial)).toBe("issued");
    const lookedUp = await admin(`query ($serial: String!) { certificate(serial: $serial) { serial status spiffeId dnsNames certificatePem requester } }`, {
      serial: issued.serial,
    });
    expect(lookedUp.body.errors).toBeUndefined();
    expect(lookedUp.body.data.certificate).toMatchObject({
      serial: issued.serial,
      status: "VALID",
      spiffeId,
      certificatePem: issued.certificatePem,
      requester: `token:${token.id}`,
    });

    // The token was for one use.
    const again = refusal(await issue({ csr: csrPem, token: token.token }));
    expect(again.code).toBe("UNAUTHENTICATED");
    expect(service.countCertificateRows()).toBe(rowsBefore + 1);
  });

  it("issues certificates with which two workloads complete a mutual-TLS handshake", async () => {
    const serverId = spiffe("ns/mesh/sa/server");
    const clientId = spiffe("ns/mesh/sa/client");
    const serverCsr = makeCsr({ spiffeId: serverId, dnsNames: ["server.mesh.anchorage.test"] });
    const clientCsr = makeCsr({ spiffeId: clientId });
    const serverToken = await createToken({ spiffeId: serverId, dnsNames: ["server.mesh.anchorage.test"] });
    const clientToken = await createToken({ spiffeId: clientId });
    const serverCert = await issueOk({ csr: serverCsr.csrPem, token: serverToken.token });
    const clientCert = await issueOk({ csr: clientCsr.csrPem, token: clientToken.token });

    let server!: Server;
    const seenByServer = new Promise<{ authorized: boolean; error: string | undefined; san: string | undefined }>((resolve, reject) => {
      server = createTlsServer(
        {
          key: serverCsr.keyPem,
          cert: serverCert.certificatePem + serverCert.chainPem,
          ca: service.rootPem,
          requestCert: true,
          rejectUnauthorized: true,
        },
        (socket: TLSSocket) => {
          const peer = socket.getPeerCertificate() as PeerCertificate;
          resolve({ authorized: socket.authorized, error: socket.authorizationError?.message, san: peer.subjectaltname });
          socket.end("hello from the server\n");
          server.close();
        },
      );
      server.on("tlsClientError", (error) => {
        server.close();
        reject(error);
      });
    });
    server.listen(0, "127.0.0.1");
    await onceWithin(server, "listening", 5000);
    const seenPort = (server.address() as AddressInfo).port;

    const seenByClient = await new Promise<{ authorized: boolean; san: string | undefined; data: string }>((resolve, reject) => {
      const socket = tlsConnect({
        host: "127.0.0.1",
        port: seenPort,
        key: clientCsr.keyPem,
        cert: clientCert.certificatePem + clientCert.chainPem,
        ca: service.rootPem,
        servername: "server.mesh.anchorage.test",
        // SPIFFE authentication: the peer is who its URI SAN says, not what its DNS name is.
        checkServerIdentity: (_host, certificate) =>
          (certificate.subjectaltname ?? "").split(", ").includes(`URI:${serverId}`)
            ? undefined
            : new Error(`the server is not ${serverId}: ${certificate.subjectaltname}`),
      });
      let data = "";
      let authorized = false;
      let san: string | undefined;
      socket.setEncoding("utf8");
      socket.on("secureConnect", () => {
        authorized = socket.authorized;
        san = socket.getPeerCertificate().subjectaltname;
      });
      socket.on("data", (chunk: string) => {
        data += chunk;
      });
      socket.on("end", () => {
        socket.end();
        resolve({ authorized, san, data });
      });
      socket.on("error", reject);
    });

    const byServer = await seenByServer;
    expect(byServer.error).toBeUndefined();
    expect(byServer.authorized).toBe(true);
    expect((byServer.san ?? "").split(", ")).toContain(`URI:${clientId}`);
    expect(seenByClient.authorized).toBe(true);
    expect((seenByClient.san ?? "").split(", ")).toContain(`URI:${serverId}`);
    expect(seenByClient.data).toBe("hello from the server\n");
  });

  it("answers a batch item by item: one bad CSR fails alone", async () => {
    const spiffeId = spiffe("ns/batch/sa/agent");
    const token = await createToken({ spiffeId, uses: 3 });
    const rowsBefore = service.countCertificateRows();
    const inputs = [
      { csr: makeCsr({ spiffeId }).csrPem, token: token.token },
      { csr: "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n-----END CERTIFICATE REQUEST-----\n", token: token.token },
      { csr: makeCsr({ spiffeId }).csrPem, token: token.token },
    ];
    const response = await service.gql(ISSUE_BATCH, { inputs });
    expect(response.status).toBe(200);
    expect(response.body.errors, "a bad item must come back as its own IssueError, not fail the whole response").toBeUndefined();
    const results = response.body.data.issueCertificates as { certificate: Issued | null; error: { code: string; message: string } | null }[];
    expect(results).toHaveLength(3);
    expect(results[0]?.error).toBeNull();
    expect(results[2]?.error).toBeNull();
    expect(results[1]?.certificate).toBeNull();
    expect(results[1]?.error?.code).toBe("BAD_CSR");
    expect(results[1]?.error?.message).toMatch(/CSR/);
    for (const result of [results[0], results[2]]) {
      expect(result?.certificate?.spiffeId).toBe(spiffeId);
      expect(verifyWithOpenssl(result?.certificate as Issued, "batch").status).toBe(0);
    }
    expect(results[0]?.certificate?.serial).not.toBe(results[2]?.certificate?.serial);
    expect(service.countCertificateRows()).toBe(rowsBefore + 2);
    // The bad item did not use up the token.
    expect(service.sqlValue("SELECT uses_left FROM enrollment_tokens WHERE id = ?", token.id)).toBe(1);
  });

  it.each([
    { keyType: "P-384" as CsrKeyType, keyEncipherment: false },
    { keyType: "RSA-2048" as CsrKeyType, keyEncipherment: true },
  ])("accepts a $keyType key (keyEncipherment: $keyEncipherment)", async ({ keyType, keyEncipherment }) => {
    const spiffeId = spiffe(`ns/keys/sa/${keyType.toLowerCase()}`);
    const token = await createToken({ spiffeId });
    const issued = await issueOk({ csr: makeCsr({ spiffeId, keyType }).csrPem, token: token.token });
    const verified = verifyWithOpenssl(issued, keyType);
    expect(verified.status, verified.stderr).toBe(0);
    const text = x509Text(issued.certificatePem);
    const keyUsage = /X509v3 Key Usage: critical\s*\n\s*(.*)\n/.exec(text)?.[1] ?? "";
    expect(keyUsage).toContain("Digital Signature");
    if (keyEncipherment) expect(keyUsage).toContain("Key Encipherment");
    else expect(keyUsage).not.toContain("Key Encipherment");
    expect(text).toContain(keyType.startsWith("RSA") ? "Public-Key: (2048 bit)" : "Public-Key: (384 bit)");
  });

  it("holds requested lifetimes to the token's maximum and the minimum", async () => {
    const spiffeId = spiffe("ns/ttl/sa/short");
    const token = await createToken({ spiffeId, maxTtlSeconds: 600, uses: 5 });
    expect(token.maxTtlSeconds).toBe(600);
    const { csrPem } = makeCsr({ spiffeId });
    const rowsBefore = service.countCertificateRows();

    const tooLong = refusal(await issue({ csr: csrPem, token: token.token, ttlSeconds: 1200 }));
    expect(tooLong.code).toBe("POLICY_VIOLATION");
    expect(tooLong.message).toMatch(/600/);
    const aboveOperatorMaximum = refusal(await issue({ csr: csrPem, token: token.token, ttlSeconds: 90_000 }));
    expect(aboveOperatorMaximum.code).toBe("POLICY_VIOLATION");
    const tooShort = refusal(await issue({ csr: csrPem, token: token.token, ttlSeconds: 30 }));
    expect(tooShort.code).toBe("BAD_USER_INPUT");
    expect(tooShort.message).toMatch(/ttlSeconds/);
    expect(service.countCertificateRows()).toBe(rowsBefore);
    expect(service.sqlValue("SELECT uses_left FROM enrollment_tokens WHERE id = ?", token.id)).toBe(5);

    const requestedAt = Date.now();
    const issued = await issueOk({ csr: csrPem, token: token.token, ttlSeconds: 300 });
    expect(Math.abs((new Date(issued.notAfter).getTime() - requestedAt) / 1000 - 300)).toBeLessThanOrEqual(60);
    // Without ttlSeconds the token's smaller maximum wins over the one-hour default.
    const defaulted = await issueOk({ csr: csrPem, token: token.token });
    expect(new Date(defaulted.notAfter).getTime() - Date.now()).toBeLessThanOrEqual(600_000 + 5_000);
  });

  it("lets a token with 3 uses obtain exactly 3 certificates when 6 requests race for it", async () => {
    const spiffeId = spiffe("ns/race/sa/worker");
    const token = await createToken({ spiffeId, uses: 3 });
    expect(token.usesLeft).toBe(3);
    const csrs = Array.from({ length: 6 }, () => makeCsr({ spiffeId }).csrPem);
    const rowsBefore = service.countCertificateRows();
    const responses = await Promise.all(csrs.map((csr) => issue({ csr, token: token.token })));
    const succeeded = responses.filter((response) => response.body.data?.issueCertificate);
    const refused = responses.filter((response) => response.body.errors);
    expect(succeeded).toHaveLength(3);
    expect(refused).toHaveLength(3);
    for (const response of refused) {
      const { code, message } = refusal(response);
      expect(code).toBe("UNAUTHENTICATED");
      expect(message).toMatch(/token/i);
    }
    expect(new Set(succeeded.map((response) => response.body.data.issueCertificate.serial)).size).toBe(3);
    expect(service.countCertificateRows()).toBe(rowsBefore + 3);
    expect(service.sqlValue("SELECT uses_left FROM enrollment_tokens WHERE id = ?", token.id)).toBe(0);

    // Used up: a seventh try is refused too.
    const usedUp = refusal(await issue({ csr: csrs[0], token: token.token }));
    expect(usedUp.code).toBe("UNAUTHENTICATED");
    expect(usedUp.message).toMatch(/used up|expired|unknown/);
    expect(service.countCertificateRows()).toBe(rowsBefore + 3);
  });

  describe("refusals leave nothing behind but an issuance.refused audit event", () => {
    const spiffeId = spiffe("ns/refusals/sa/app");
    const allowedDns = "app.refusals.anchorage.test";
    let token: Token;
    let goodCsr: string;

    beforeAll(async () => {
      token = await createToken({ spiffeId, dnsNames: [allowedDns], uses: 100 });
      goodCsr = makeCsr({ spiffeId, dnsNames: [allowedDns] }).csrPem;
    });

    function flippedSignature(csrPem: string): string {
      const der = derOf(csrPem);
      der[der.length - 1] = (der[der.length - 1] as number) ^ 0x01;
      return pemOf(der);
    }

    const cases: {
      name: string;
      input: () => Record<string, unknown>;
      code: string;
      message: RegExp;
    }[] = [
      { name: "no token", input: () => ({ csr: goodCsr }), code: "UNAUTHENTICATED", message: /token/i },
      {
        name: "an unknown token",
        input: () => ({ csr: goodCsr, token: `anc_enroll_${randomBytes(32).toString("base64url")}` }),
        code: "UNAUTHENTICATED",
        message: /token/i,
      },
      {
        name: "a CSR for another identity",
        input: () => ({ csr: makeCsr({ spiffeId: spiffe("ns/refusals/sa/other") }).csrPem, token: token.token }),
        code: "POLICY_VIOLATION",
        message: /ns\/refusals\/sa\/other/,
      },
      {
        name: "a DNS name the token does not allow",
        input: () => ({ csr: makeCsr({ spiffeId, dnsNames: ["evil.anchorage.test"] }).csrPem, token: token.token }),
        code: "POLICY_VIOLATION",
        message: /evil\.anchorage\.test/,
      },
      { name: "malformed PEM", input: () => ({ csr: "this is not a CSR", token: token.token }), code: "BAD_CSR", message: /PEM|CSR/ },
      {
        name: "random DER in a PEM frame",
        input: () => ({ csr: pemOf(randomBytes(400)), token: token.token }),
        code: "BAD_CSR",
        message: /CSR/,
      },
      {
        name: "a CSR with a flipped signature byte",
        input: () => ({ csr: flippedSignature(goodCsr), token: token.token }),
        code: "BAD_CSR",
        message: /signature/i,
      },
      {
        name: "an RSA-1024 key",
        input: () => ({ csr: makeCsr({ spiffeId, keyType: "RSA-1024" }).csrPem, token: token.token }),
        code: "BAD_CSR",
        message: /RSA.*1024|1024.*RSA|2048/,
      },
      {
        name: "a P-521 key",
        input: () => ({ csr: makeCsr({ spiffeId, keyType: "P-521" }).csrPem, token: token.token }),
        code: "BAD_CSR",
        message: /P-521/,
      },
      {
        name: "an Ed25519 key",
        input: () => ({ csr: makeCsr({ spiffeId, keyType: "Ed25519" }).csrPem, token: token.token }),
        code: "BAD_CSR",
        message: /Ed25519/,
      },
      {
        name: "two URI SANs",
        input: () => ({ csr: makeCsr({ spiffeId, extraSan: `URI:${spiffe("ns/refusals/sa/second")}` }).csrPem, token: token.token }),
        code: "BAD_CSR",
        message: /URI|spiffe/,
      },
      {
        name: "a wildcard DNS name",
        input: () => ({ csr: makeCsr({ spiffeId, dnsNames: ["*.refusals.anchorage.test"] }).csrPem, token: token.token }),
        code: "BAD_CSR",
        message: /wildcard/i,
      },
      {
        name: "an IP SAN",
        input: () => ({ csr: makeCsr({ spiffeId, extraSan: "IP:10.0.0.1" }).csrPem, token: token.token }),
        code: "BAD_CSR",
        message: /IP/,
      },
      {
        name: "a non-SPIFFE URI",
        input: () => ({ csr: makeCsr({ spiffeId: "https://app.refusals.anchorage.test/workload" }).csrPem, token: token.token }),
        code: "BAD_CSR",
        message: /spiffe/i,
      },
    ];

    it.each(cases)("refuses $name with $code", async ({ input, code, message }) => {
      const rowsBefore = service.countCertificateRows();
      const refusedBefore = service.countAuditEvents("issuance.refused");
      const eventsBefore = service.countAuditEvents();
      const usesBefore = service.sqlValue("SELECT uses_left FROM enrollment_tokens WHERE id = ?", token.id);

      const response = await issue(input());
      expect(response.status).toBe(200);
      const error = refusal(response);
      expect(error.code).toBe(code);
      expect(error.message).toMatch(message);
      expect(error.message).not.toMatch(/internal error|stack|at .*\.ts:\d+/i);

      expect(service.countCertificateRows()).toBe(rowsBefore);
      expect(service.countAuditEvents("issuance.refused")).toBe(refusedBefore + 1);
      expect(service.countAuditEvents()).toBe(eventsBefore + 1);
      expect(service.sqlValue("SELECT uses_left FROM enrollment_tokens WHERE id = ?", token.id)).toBe(usesBefore);
    });

    it("still issues with the same token afterwards (the refusals did not use it up)", async () => {
      const issued = await issueOk({ csr: goodCsr, token: token.token });
      expect(issued.spiffeId).toBe(spiffeId);
      expect(service.sqlValue("SELECT uses_left FROM enrollment_tokens WHERE id = ?", token.id)).toBe(99);
    });
  });

  describe("admin authentication", () => {
    const TOKEN_ROWS = "SELECT count(*) FROM enrollment_tokens";

    it("refuses admin operations without an API key with UNAUTHENTICATED", async () => {
      const tokensBefore = service.sqlValue(TOKEN_ROWS);
      const create = refusal(await service.gql(CREATE_TOKEN, { input: { spiffeId: spiffe("ns/x/sa/y") } }));
      expect(create.code).toBe("UNAUTHENTICATED");
      expect(create.message).toMatch(/API key|Authorization/);
      const list = refusal(await service.gql("{ certificates(first: 1) { totalCount } }"));
      expect(list.code).toBe("UNAUTHENTICATED");
      const one = refusal(await service.gql(`{ certificate(serial: "00") { serial } }`));
      expect(one.code).toBe("UNAUTHENTICATED");
      expect(service.sqlValue(TOKEN_ROWS)).toBe(tokensBefore);
    });

    it("answers a bogus or malformed API key with HTTP 401 UNAUTHENTICATED", async () => {
      const tokensBefore = service.sqlValue(TOKEN_ROWS);
      const bogus = await service.gql(CREATE_TOKEN, { input: { spiffeId: spiffe("ns/x/sa/y") } }, { bearer: `anc_admin_${randomBytes(32).toString("base64url")}` });
      expect(bogus.status).toBe(401);
      expect(bogus.body.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
      const malformed = await service.gql("{ certificates(first: 1) { totalCount } }", undefined, { authorization: `Basic ${Buffer.from("admin:admin").toString("base64")}` });
      expect(malformed.status).toBe(401);
      expect(malformed.body.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
      expect(service.sqlValue(TOKEN_ROWS)).toBe(tokensBefore);
    });

    it("creates API keys: a new admin key works, an auditor key may not create tokens (FORBIDDEN)", async () => {
      const create = `mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) { id name role key } }`;
      const adminKey = await admin(create, { input: { name: "second admin", role: "ADMIN" } });
      expect(adminKey.body.errors).toBeUndefined();
      const auditorKey = await admin(create, { input: { name: "auditor", role: "AUDITOR" } });
      expect(auditorKey.body.errors).toBeUndefined();
      const secondAdmin = adminKey.body.data.createApiKey.key as string;
      const auditor = auditorKey.body.data.createApiKey.key as string;
      secretsHandedOut.push(secondAdmin, auditor);

      const listed = await service.gql("{ certificates(first: 1) { totalCount } }", undefined, { bearer: secondAdmin });
      expect(listed.body.errors).toBeUndefined();
      expect(listed.body.data.certificates.totalCount).toBeGreaterThan(0);

      const tokensBefore = service.sqlValue(TOKEN_ROWS);
      const forbidden = refusal(await service.gql(CREATE_TOKEN, { input: { spiffeId: spiffe("ns/x/sa/y") } }, { bearer: auditor }));
      expect(forbidden.code).toBe("FORBIDDEN");
      expect(service.sqlValue(TOKEN_ROWS)).toBe(tokensBefore);
    });

    it.each([
      { name: "a string that is not a SPIFFE ID", spiffeId: "web.default.svc", message: /spiffe:\/\// },
      { name: "a SPIFFE ID of another trust domain", spiffeId: "spiffe://other.test/ns/default/sa/web", message: /trust domain/ },
      { name: "a SPIFFE ID without a path", spiffeId: `spiffe://${TRUST_DOMAIN}`, message: /path/ },
      { name: "an upper-case scheme", spiffeId: `SPIFFE://${TRUST_DOMAIN}/ns/a`, message: /lower case|spiffe/ },
    ])("refuses to create a token for $name with BAD_USER_INPUT and stores nothing", async ({ spiffeId, message }) => {
      const tokensBefore = service.sqlValue(TOKEN_ROWS);
      const error = refusal(await admin(CREATE_TOKEN, { input: { spiffeId } }));
      expect(error.code).toBe("BAD_USER_INPUT");
      expect(error.message).toMatch(message);
      expect(service.sqlValue(TOKEN_ROWS)).toBe(tokensBefore);
    });
  });

  describe("hostile GraphQL", () => {
    it("refuses a query nested 50 levels deep quickly, before executing it", async () => {
      const nesting = 46;
      const deep = `{ __schema { types { fields { type { ${"ofType { ".repeat(nesting)}name${" }".repeat(nesting)} } } } } }`;
      const started = performance.now();
      // As an admin: anyone else is refused introspection as such, and the depth limit must hold for admins too.
      const response = await service.gql(deep, {}, { bearer: service.adminKey });
      const elapsed = performance.now() - started;
      expect(response.body.errors?.[0]?.extensions?.code, "the 50-level query was executed instead of refused").toBe("BAD_USER_INPUT");
      const error = refusal(response);
      expect(error.code).toBe("BAD_USER_INPUT");
      expect(error.message).toMatch(/depth/i);
      expect(elapsed).toBeLessThan(2000);
    });

    it("refuses the same depth hidden in fragments", async () => {
      const fragments = Array.from({ length: 48 }, (_, i) => `fragment F${i} on __Type { name ofType { ...F${i + 1} } }`);
      fragments.push("fragment F48 on __Type { name }");
      const query = `{ __schema { types { ...F0 } } } ${fragments.join(" ")}`;
      const response = await service.gql(query, {}, { bearer: service.adminKey });
      expect(response.body.errors?.[0]?.extensions?.code, "the 50-level query was executed instead of refused").toBe("BAD_USER_INPUT");
      const error = refusal(response);
      expect(error.code).toBe("BAD_USER_INPUT");
      expect(error.message).toMatch(/depth/i);
    });

    it("refuses 200 aliases of one field", async () => {
      const query = `{ ${Array.from({ length: 200 }, (_, i) => `a${i}: authorities { id }`).join(" ")} }`;
      const error = refusal(await service.gql(query));
      expect(error.code).toBe("BAD_USER_INPUT");
      expect(error.message).toMatch(/alias/i);
    });

    it("refuses a JSON array of operations (HTTP batching)", async () => {
      const operation = { query: "{ authorities { id } }" };
      const response = await service.postGraphql(JSON.stringify([operation, operation, operation]));
      expect(Array.isArray(response.body)).toBe(false);
      const refused = response.status >= 400 || (Array.isArray(response.body?.errors) && response.body.errors.length > 0);
      expect(refused, JSON.stringify(response.body)).toBe(true);
      expect(response.body?.data ?? null).toBeNull();
    });

    it("answers an oversized body (600 KiB) with 413 and BAD_USER_INPUT", async () => {
      const body = JSON.stringify({ query: "{ authorities { id } }", variables: { padding: "x".repeat(600 * 1024) } });
      const response = await service.postGraphql(body);
      expect(response.status).toBe(413);
      expect(response.body.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
      expect(response.body.errors?.[0]?.message).toMatch(/limit|exceeds|large/i);
    });

    it("stops reading a 10 MiB chunked body (413 or a closed connection) and keeps serving", async () => {
      const total = 10 * 1024 * 1024;
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const outcome = await new Promise<{ status?: number; error?: string; sent: number }>((resolve) => {
        let sent = 0;
        let done = false;
        const finish = (result: { status?: number; error?: string }) => {
          if (done) return;
          done = true;
          request.destroy();
          resolve({ ...result, sent });
        };
        const request = httpsRequest(
          {
            host: "127.0.0.1",
            port: service.graphqlPort,
            path: "/graphql",
            method: "POST",
            headers: { "content-type": "application/json" },
            ca: service.rootPem,
            servername: "localhost",
            agent: false,
          },
          (response) => {
            response.resume();
            finish({ status: response.statusCode ?? 0 });
          },
        );
        request.on("error", (error) => finish({ error: error.message }));
        request.on("close", () => finish({ error: "closed" }));
        const pump = (): void => {
          while (!done && sent < total) {
            sent += chunk.length;
            if (!request.write(chunk)) {
              request.once("drain", pump);
              return;
            }
          }
          if (!done) request.end();
        };
        request.write('{"query":"{ authorities { id } }","padding":"');
        pump();
      });
      expect(request413OrClosed(outcome), JSON.stringify(outcome)).toBe(true);

      const health = await service.http("/healthz");
      expect(health.status).toBe(200);
      const authorities = await service.gql("{ authorities { id } }");
      expect(authorities.body.errors).toBeUndefined();
      expect(authorities.body.data.authorities.length).toBeGreaterThanOrEqual(2);
    });

    function request413OrClosed(outcome: { status?: number; error?: string }): boolean {
      if (outcome.status !== undefined) return outcome.status === 413;
      return outcome.error !== undefined;
    }
  });

  it("pages through certificates two at a time without repeats, and refuses a forged cursor", async () => {
    const page = `query ($after: String) {
      certificates(first: 2, after: $after) { totalCount edges { cursor node { serial } } pageInfo { hasNextPage endCursor } }
    }`;
    const issuedRows = Number(service.sqlValue("SELECT count(*) FROM certificates WHERE state = 'issued'"));
    expect(issuedRows).toBeGreaterThan(6);

    const serials: string[] = [];
    let after: string | null = null;
    let pages = 0;
    let totalCount = -1;
    for (;;) {
      const response = await admin(page, { after });
      expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
      const connection = response.body.data.certificates as {
        totalCount: number;
        edges: { cursor: string; node: { serial: string } }[];
        pageInfo: { hasNextPage: boolean; endCursor: string | null };
      };
      pages += 1;
      expect(connection.edges.length).toBeLessThanOrEqual(2);
      if (totalCount === -1) totalCount = connection.totalCount;
      expect(connection.totalCount).toBe(totalCount);
      serials.push(...connection.edges.map((edge) => edge.node.serial));
      if (connection.edges.length > 0) expect(connection.pageInfo.endCursor).toBe(connection.edges.at(-1)?.cursor);
      if (!connection.pageInfo.hasNextPage) break;
      expect(connection.edges).toHaveLength(2);
      after = connection.pageInfo.endCursor;
      expect(pages).toBeLessThan(500);
    }
    expect(totalCount).toBe(issuedRows);
    expect(serials).toHaveLength(totalCount);
    expect(new Set(serials).size).toBe(serials.length);
    expect(pages).toBe(Math.max(1, Math.ceil(totalCount / 2)));

    for (const garbage of ["garbage", Buffer.from("c:abc").toString("base64url"), "!!!"]) {
      const error = refusal(await admin(page, { after: garbage }));
      expect(error.code).toBe("BAD_USER_INPUT");
      expect(error.message).toMatch(/cursor/);
    }
  });

  it("never writes the admin key, enrollment tokens, API keys or HSM PINs to its logs", () => {
    const pins = readdirSync(join(service.dataDir, "secrets")).map((name) => readFileSync(join(service.dataDir, "secrets", name), "utf8").trim());
    expect(pins.length).toBeGreaterThanOrEqual(2);
    const secrets = [service.adminKey, ...secretsHandedOut, ...pins];
    // Enough secrets were handed out for this check to mean something.
    expect(secretsHandedOut.length).toBeGreaterThan(10);
    const logs = service.logs();
    expect(logs).toContain('"msg":"listening"');
    for (const secret of secrets) {
      expect(secret.length).toBeGreaterThanOrEqual(16);
      expect(logs.includes(secret), `a secret beginning ${secret.slice(0, 12)}… appears in the logs`).toBe(false);
    }
  });
});
