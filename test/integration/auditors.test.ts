/**
 * Auditors end to end against the real service (child process, SoftHSM, SQLite file): the read-only AUDITOR
 * role, the issuance history with its filters, pagination and streaming export, the audit events, and the
 * transparency log, judged by the standalone verifier `scripts/verify-log.ts` — including after rows have
 * been edited behind the service's back.
 *
 * One service for the whole file; the tests run in order and build on what earlier ones issued.
 */
import { spawnSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { request } from "node:https";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { refusal, ok } from "../support/graphql.js";
import { verifierKey } from "../../src/audit/checkpoint.js";
import { makeCsr, REPO_ROOT, requireTools, scratchDir, startService, type RunningService } from "../support/service.js";

const missing = requireTools(["softhsm2-util", "openssl"]);

const spiffe = (path: string): string => `spiffe://anchorage.test/${path}`;
const CREATE_TOKEN = `mutation ($input: CreateEnrollmentTokenInput!) { createEnrollmentToken(input: $input) { id token } }`;
const ISSUE = `mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { serial certificatePem } }`;
const CREATE_KEY = `mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) { id key role } }`;
const CERTIFICATES = `query ($filter: CertificateFilter, $first: Int, $after: String) {
  certificates(filter: $filter, first: $first, after: $after) {
    edges { cursor node { serial spiffeId dnsNames status issuerId requester issuedAt } }
    pageInfo { hasNextPage endCursor }
    totalCount
  }
}`;
const AUDIT_EVENTS = `query ($filter: AuditEventFilter, $first: Int, $after: String) {
  auditEvents(filter: $filter, first: $first, after: $after) {
    edges { cursor node { sequence occurredAt type actor outcome subject code remoteAddress details } }
    pageInfo { hasNextPage endCursor }
    totalCount
  }
}`;
const LOG = "{ transparencyLog { origin verifierKey checkpoint treeSize maxMergeDelaySeconds } }";

interface Issued {
  serial: string;
  certificatePem: string;
  spiffeId: string;
}

describe.skipIf(missing !== undefined)(`auditors: history, audit events and the transparency log${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let service: RunningService;
  const scratch = scratchDir("anchorage-auditors-");
  let auditorKey: string;
  let auditorId: string;
  const issued: Issued[] = [];

  const admin = (query: string, variables?: Record<string, unknown>) => service.gql(query, variables, { bearer: service.adminKey });
  const auditor = (query: string, variables?: Record<string, unknown>) => service.gql(query, variables, { bearer: auditorKey });

  /** A GET on the HTTPS listener (the export endpoints live beside /graphql). */
  function httpsGet(path: string, bearer?: string): Promise<{ status: number; type: string | undefined; body: string }> {
    return new Promise((resolve, reject) => {
      const outgoing = request(
        { host: "127.0.0.1", port: service.graphqlPort, path, ca: service.rootPem, servername: "localhost", headers: bearer ? { authorization: `Bearer ${bearer}` } : {} },
        (response) => {
          let body = "";
          response.setEncoding("utf8");
          response.on("data", (chunk: string) => (body += chunk));
          response.on("end", () => resolve({ status: response.statusCode ?? 0, type: response.headers["content-type"], body }));
        },
      );
      outgoing.on("error", reject);
      outgoing.end();
    });
  }

  async function issue(path: string, dnsNames: string[] = []): Promise<Issued> {
    const spiffeId = spiffe(path);
    const token = ok(await admin(CREATE_TOKEN, { input: { spiffeId, dnsNames } })).createEnrollmentToken.token as string;
    const { csrPem } = makeCsr({ spiffeId, dnsNames });
    const certificate = ok(await service.gql(ISSUE, { input: { csr: csrPem, token } })).issueCertificate as Issued;
    const result = { ...certificate, spiffeId };
    issued.push(result);
    return result;
  }

  /** Runs the standalone verifier with the auditor's key and the pinned verifier key. */
  function verifyLog(vkey: string, ...args: string[]): { status: number | null; output: string } {
    const result = spawnSync(
      process.execPath,
      ["--import", "tsx", "scripts/verify-log.ts", "--url", `https://localhost:${service.graphqlPort}`, "--ca", scratch.file("root.pem", service.rootPem), "--vkey", vkey, ...args],
      { cwd: REPO_ROOT, env: { ...process.env, ANCHORAGE_API_KEY: auditorKey }, encoding: "utf8", timeout: 60_000 },
    );
    return { status: result.status, output: `${result.stdout}${result.stderr}` };
  }

  async function logState(): Promise<{ verifierKey: string; checkpoint: string | null; treeSize: number; maxMergeDelaySeconds: number }> {
    return ok(await auditor(LOG)).transparencyLog;
  }

  /** Waits until the latest checkpoint covers every leaf there is now (the merge delay is bounded). */
  async function waitForCheckpointCovering(minimumSize: number): Promise<number> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const state = await logState();
      if (state.treeSize >= minimumSize) return state.treeSize;
      if (Date.now() > deadline) throw new Error(`no checkpoint of ${minimumSize} leaves within 15 s (latest ${state.treeSize})`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  const leafCount = (): number => Number(service.sqlValue("SELECT count(*) FROM certificates WHERE issued_seq IS NOT NULL")) + Number(service.sqlValue("SELECT count(*) FROM audit_events"));

  beforeAll(async () => {
    service = await startService({ env: { ANCHORAGE_LOG_INTERVAL_MS: "200" } });
    const created = ok(await admin(CREATE_KEY, { input: { name: "external auditor", role: "AUDITOR" } })).createApiKey;
    expect(created.role).toBe("AUDITOR");
    auditorKey = created.key;
    auditorId = created.id;
    await issue("ns/payments/sa/api", ["api.payments.svc"]);
    await issue("ns/payments/sa/worker", ["worker.payments.svc", "shared.svc"]);
    await issue("ns/web/sa/frontend", ["frontend.web.svc", "shared.svc"]);
  });

  afterAll(async () => {
    await service?.cleanup();
    scratch.remove();
  });

  describe("the AUDITOR role", () => {
    it("reads certificates, one certificate, audit events and the log", async () => {
      const list = ok(await auditor(CERTIFICATES, { first: 10 })).certificates;
      expect(list.totalCount).toBeGreaterThanOrEqual(3);
      const one = ok(await auditor(`query ($serial: String!) { certificate(serial: $serial) { serial spiffeId profile } }`, { serial: issued[0]?.serial }));
      expect(one.certificate).toEqual({ serial: issued[0]?.serial, spiffeId: issued[0]?.spiffeId, profile: "WORKLOAD" });
      expect(ok(await auditor(AUDIT_EVENTS, { first: 5 })).auditEvents.edges).toHaveLength(5);
      expect((await logState()).verifierKey).toMatch(/^anchorage\.test\/log\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+$/);
    });

    it("is FORBIDDEN every mutation, even with a valid enrollment token, and changes nothing", async () => {
      const spiffeId = spiffe("ns/audit/sa/forbidden");
      const token = ok(await admin(CREATE_TOKEN, { input: { spiffeId } })).createEnrollmentToken;
      const { csrPem } = makeCsr({ spiffeId });
      const rowsBefore = service.countCertificateRows();
      const attempts: [string, Record<string, unknown>][] = [
        [CREATE_KEY, { input: { name: "escalation", role: "ADMIN" } }],
        [CREATE_TOKEN, { input: { spiffeId } }],
        [ISSUE, { input: { csr: csrPem, token: token.token } }],
        [`mutation ($inputs: [IssueCertificateInput!]!) { issueCertificates(inputs: $inputs) { error { code } } }`, { inputs: [{ csr: csrPem, token: token.token }] }],
        [`mutation ($serial: String!) { revokeCertificate(input: { serial: $serial }) { serial } }`, { serial: issued[0]?.serial }],
        [`mutation ($id: ID!) { revokeApiKey(id: $id) { id } }`, { id: auditorId }],
      ];
      for (const [query, variables] of attempts) {
        expect(refusal(await auditor(query, variables)), query).toEqual({ code: "FORBIDDEN", message: "the AUDITOR role is read-only" });
      }
      expect(refusal(await auditor("{ apiKeys { id } }")).code).toBe("FORBIDDEN");
      expect(service.countCertificateRows()).toBe(rowsBefore);
      expect(service.sqlValue("SELECT revoked_at FROM certificates WHERE serial = ?", issued[0]?.serial)).toBeNull();
      expect(service.sqlValue("SELECT uses_left FROM enrollment_tokens WHERE id = ?", token.id)).toBe(1);
      expect(service.sqlValue("SELECT count(*) FROM api_keys WHERE name = 'escalation'")).toBe(0);
      // The token the auditor could not use still works for its workload.
      const certificate = ok(await service.gql(ISSUE, { input: { csr: csrPem, token: token.token } })).issueCertificate;
      issued.push({ ...certificate, spiffeId });
    });

    it("is refused once revoked, and the revocation is an audit event", async () => {
      const spare = ok(await admin(CREATE_KEY, { input: { name: "short-lived auditor", role: "AUDITOR" } })).createApiKey;
      expect(ok(await service.gql("{ certificates(first: 1) { totalCount } }", {}, { bearer: spare.key })).certificates.totalCount).toBeGreaterThan(0);
      const revoked = ok(await admin(`mutation ($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }`, { id: spare.id })).revokeApiKey;
      expect(revoked.revokedAt).toMatch(/^\d{4}-/);
      const again = ok(await admin(`mutation ($id: ID!) { revokeApiKey(id: $id) { revokedAt } }`, { id: spare.id })).revokeApiKey;
      expect(again.revokedAt).toBe(revoked.revokedAt);
      const after = await service.gql("{ certificates(first: 1) { totalCount } }", {}, { bearer: spare.key });
      expect(after.status).toBe(401);
      expect(refusal(after).code).toBe("UNAUTHENTICATED");
      expect(refusal(await admin(`mutation { revokeApiKey(id: "key_does_not_exist") { id } }`)).code).toBe("NOT_FOUND");
      const events = ok(await auditor(AUDIT_EVENTS, { filter: { type: "apikey.revoked", subject: spare.id } })).auditEvents;
      expect(events.totalCount).toBe(1);
      expect(events.edges[0].node).toMatchObject({ outcome: "SUCCESS", subject: spare.id });
      const keys = ok(await admin("{ apiKeys { id role revokedAt } }")).apiKeys as { id: string; revokedAt: string | null }[];
      expect(keys.find((key) => key.id === spare.id)?.revokedAt).toBe(revoked.revokedAt);
      expect(JSON.stringify(keys)).not.toContain(spare.key);
    });
  });

  describe("issuance history", () => {
    const serialsOf = (connection: { edges: { node: { serial: string } }[] }): string[] => connection.edges.map((edge) => edge.node.serial);
    const query = async (filter: Record<string, unknown>): Promise<string[]> => serialsOf(ok(await auditor(CERTIFICATES, { filter, first: 100 })).certificates);

    it("filters by SPIFFE ID (exact and prefix), DNS name, serial, issuer, requester, status and time", async () => {
      const [api, worker, frontend] = issued;
      expect(await query({ spiffeId: api?.spiffeId })).toEqual([api?.serial]);
      expect(await query({ spiffeIdPrefix: spiffe("ns/payments/") })).toEqual([api?.serial, worker?.serial]);
      expect(await query({ dnsName: "shared.svc" })).toEqual([worker?.serial, frontend?.serial]);
      expect(await query({ serial: frontend?.serial.toUpperCase() })).toEqual([frontend?.serial]);
      const node = ok(await auditor(CERTIFICATES, { filter: { serial: api?.serial } })).certificates.edges[0].node;
      expect(await query({ issuerId: node.issuerId, spiffeIdPrefix: spiffe("ns/payments/") })).toHaveLength(2);
      expect(await query({ issuerId: "00".repeat(20) })).toEqual([]);
      expect(await query({ requester: node.requester })).toEqual([api?.serial]);
      const issuedAt = new Date(node.issuedAt);
      expect(await query({ spiffeId: api?.spiffeId, issuedAfter: issuedAt.toISOString() })).toEqual([api?.serial]);
      expect(await query({ spiffeId: api?.spiffeId, issuedBefore: issuedAt.toISOString() })).toEqual([]);
      expect(await query({ spiffeId: api?.spiffeId, expiresAfter: new Date(Date.now() + 30 * 60_000).toISOString() })).toEqual([api?.serial]);
      expect(await query({ spiffeId: api?.spiffeId, expiresBefore: new Date().toISOString() })).toEqual([]);
      ok(await admin(`mutation ($serial: String!) { revokeCertificate(input: { serial: $serial, reason: SUPERSEDED }) { serial } }`, { serial: worker?.serial }));
      expect(await query({ spiffeIdPrefix: spiffe("ns/payments/"), status: "REVOKED" })).toEqual([worker?.serial]);
      expect(await query({ spiffeIdPrefix: spiffe("ns/payments/"), status: "VALID" })).toEqual([api?.serial]);
      expect(await query({ spiffeIdPrefix: spiffe("ns/payments/"), status: "EXPIRED" })).toEqual([]);
    });

    it("pages without skipping or repeating while issuance continues, with totals", async () => {
      const seen: string[] = [];
      let after: string | null = null;
      let page = 0;
      do {
        const connection: any = ok(await auditor(CERTIFICATES, { first: 2, after })).certificates;
        seen.push(...serialsOf(connection));
        after = connection.pageInfo.hasNextPage ? connection.pageInfo.endCursor : null;
        if (page++ < 2) await issue(`ns/paging/sa/p${page}`);
      } while (after !== null);
      expect(new Set(seen).size).toBe(seen.length);
      const total = ok(await auditor("{ certificates(first: 1) { totalCount } }")).certificates.totalCount;
      expect(seen).toHaveLength(total);
      for (const certificate of issued) expect(seen).toContain(certificate.serial);
    });

    it("refuses bad filters, page sizes and cursors with BAD_USER_INPUT", async () => {
      for (const variables of [
        { filter: { issuedAfter: "yesterday" } },
        { filter: { expiresBefore: "2026-13-45T00:00:00Z" } },
        { first: 0 },
        { first: 501 },
        { after: "bm90LWEtY3Vyc29y" },
        { filter: { status: "LOST" } },
      ]) {
        expect(refusal(await auditor(CERTIFICATES, variables)).code, JSON.stringify(variables)).toBe("BAD_USER_INPUT");
      }
      expect(refusal(await service.gql(CERTIFICATES, {})).code).toBe("UNAUTHENTICATED");
    });

    it("streams the full history as NDJSON and CSV to auditors only", async () => {
      const total = ok(await auditor("{ certificates(first: 1) { totalCount } }")).certificates.totalCount as number;
      const ndjson = await httpsGet("/export/certificates", auditorKey);
      expect(ndjson.status).toBe(200);
      expect(ndjson.type).toBe("application/x-ndjson");
      const lines = ndjson.body.trimEnd().split("\n").map((line) => JSON.parse(line));
      expect(lines).toHaveLength(total);
      const frontend = lines.find((line) => line.serial === issued[2]?.serial);
      expect(frontend).toMatchObject({ spiffeId: issued[2]?.spiffeId, status: "VALID", dnsNames: ["frontend.web.svc", "shared.svc"] });
      expect(Buffer.from(frontend.certificate, "base64").toString("base64")).toBe(frontend.certificate);

      const csv = await httpsGet(`/export/certificates?format=csv&spiffeIdPrefix=${encodeURIComponent(spiffe("ns/payments/"))}`, auditorKey);
      expect(csv.status).toBe(200);
      const rows = csv.body.trimEnd().split("\r\n");
      expect(rows[0]).toBe("serial,issuerId,spiffeId,dnsNames,notBefore,notAfter,issuedAt,status,revokedAt,revocationReason,requester,keyType,fingerprintSha256");
      expect(rows.slice(1).map((row) => row.split(",")[0])).toEqual([issued[0]?.serial, issued[1]?.serial]);
      expect(rows[2]).toContain(",REVOKED,");

      expect((await httpsGet("/export/certificates")).status).toBe(401);
      expect((await httpsGet("/export/certificates", "anc_audit_not-a-key")).status).toBe(401);
      expect((await httpsGet("/export/certificates?format=xml", auditorKey)).status).toBe(400);
      expect((await httpsGet("/export/certificates?issuedAfter=soon", auditorKey)).status).toBe(400);
    });
  });

  describe("audit events", () => {
    it("records refusals with their code, who and from where, and never a secret", async () => {
      const spiffeId = spiffe("ns/audit/sa/refused");
      const token = ok(await admin(CREATE_TOKEN, { input: { spiffeId } })).createEnrollmentToken;
      const { csrPem } = makeCsr({ spiffeId: spiffe("ns/audit/sa/someone-else") });
      expect(refusal(await service.gql(ISSUE, { input: { csr: csrPem, token: token.token } })).code).toBe("POLICY_VIOLATION");
      const refusals = ok(await auditor(AUDIT_EVENTS, { filter: { type: "issuance.refused", code: "POLICY_VIOLATION", outcome: "FAILURE" } })).auditEvents;
      expect(refusals.totalCount).toBeGreaterThanOrEqual(1);
      const last = refusals.edges.at(-1).node;
      expect(last).toMatchObject({ actor: `token:${token.id}`, outcome: "FAILURE", code: "POLICY_VIOLATION", remoteAddress: "127.0.0.1" });

      await service.gql("{ certificates(first: 1) { totalCount } }", {}, { bearer: "anc_admin_wrong" });
      const failures = ok(await auditor(AUDIT_EVENTS, { filter: { type: "authentication.failed" } })).auditEvents;
      expect(failures.edges.at(-1).node).toMatchObject({ code: "UNAUTHENTICATED", remoteAddress: "127.0.0.1" });

      const everything = await httpsGet("/log/entries", auditorKey);
      expect(everything.status).toBe(200);
      for (const secret of [service.adminKey, auditorKey, token.token]) expect(everything.body).not.toContain(secret);
    });

    it("records the revocation of an enrollment token, which then obtains nothing", async () => {
      const spiffeId = spiffe("ns/audit/sa/voided");
      const token = ok(await admin(CREATE_TOKEN, { input: { spiffeId, uses: 3 } })).createEnrollmentToken;
      const REVOKE_TOKEN = `mutation ($id: ID!) { revokeEnrollmentToken(id: $id) { id usesLeft } }`;
      expect(refusal(await auditor(REVOKE_TOKEN, { id: token.id })).code).toBe("FORBIDDEN");
      expect(refusal(await admin(REVOKE_TOKEN, { id: "tok_missing" })).code).toBe("NOT_FOUND");
      expect(ok(await admin(REVOKE_TOKEN, { id: token.id })).revokeEnrollmentToken).toEqual({ id: token.id, usesLeft: 0 });
      expect(ok(await admin(REVOKE_TOKEN, { id: token.id })).revokeEnrollmentToken.usesLeft).toBe(0);
      const { csrPem } = makeCsr({ spiffeId });
      expect(refusal(await service.gql(ISSUE, { input: { csr: csrPem, token: token.token } })).code).toBe("UNAUTHENTICATED");
      const events = ok(await auditor(AUDIT_EVENTS, { filter: { type: "token.revoked", subject: token.id } })).auditEvents;
      expect(events.totalCount).toBe(1);
      expect(JSON.parse(events.edges[0].node.details)).toEqual({ spiffeId, usesTaken: 3 });
    });

    it("pages in sequence order and filters by actor and time", async () => {
      const all: number[] = [];
      let after: string | null = null;
      do {
        const connection: any = ok(await auditor(AUDIT_EVENTS, { first: 50, after })).auditEvents;
        all.push(...connection.edges.map((edge: any) => edge.node.sequence as number));
        after = connection.pageInfo.hasNextPage ? connection.pageInfo.endCursor : null;
      } while (after !== null);
      expect(all).toEqual([...all].sort((a, b) => a - b));
      expect(new Set(all).size).toBe(all.length);
      const byAdmin = ok(await auditor(AUDIT_EVENTS, { filter: { actor: `apikey:${auditorId}` } })).auditEvents;
      expect(byAdmin.totalCount).toBe(0);
      const future = ok(await auditor(AUDIT_EVENTS, { filter: { occurredAfter: new Date(Date.now() + 60_000).toISOString() } })).auditEvents;
      expect(future.totalCount).toBe(0);
      expect(refusal(await auditor(AUDIT_EVENTS, { filter: { occurredBefore: "now" } })).code).toBe("BAD_USER_INPUT");
    });
  });

  describe("transparency log", () => {
    let vkey: string;

    it("signs checkpoints that the standalone verifier accepts, and proves inclusion and consistency", async () => {
      const state = await logState();
      vkey = state.verifierKey;
      expect(state.maxMergeDelaySeconds).toBe(1);
      await waitForCheckpointCovering(leafCount());
      const pin = scratch.file("pinned.checkpoint");
      expect(verifyLog(vkey, "checkpoint", "--pin", pin)).toMatchObject({ status: 0 });
      const certificateFile = scratch.file("frontend.pem", issued[2]?.certificatePem);
      const inclusion = verifyLog(vkey, "inclusion", "--cert", certificateFile);
      expect(inclusion.output).toMatch(/^OK: certificate [0-9a-f]+ is leaf \d+ of the signed tree/);
      expect(inclusion.status).toBe(0);

      const old = scratch.file("old.checkpoint", (await logState()).checkpoint as string);
      await issue("ns/log/sa/later");
      await waitForCheckpointCovering(leafCount());
      const consistency = verifyLog(vkey, "consistency", "--old", old);
      expect(consistency.output).toMatch(/^OK: the tree of \d+ leaves extends the tree of \d+ leaves/);
      const pinned = verifyLog(vkey, "checkpoint", "--pin", pin);
      expect(pinned.status, pinned.output).toBe(0);
      const audit = verifyLog(vkey, "audit");
      expect(audit.output).toMatch(/^OK: all \d+ leaves \(\d+ certificates\) hash to the signed root/);
      expect(audit.status).toBe(0);
    });

    it("answers proofs over GraphQL and refuses impossible sizes", async () => {
      const { treeSize } = await logState();
      const proof = ok(await auditor(`query ($serial: String!) { inclusionProof(serial: $serial) { leafIndex treeSize hashes entry } }`, { serial: issued[0]?.serial })).inclusionProof;
      expect(proof.treeSize).toBe(treeSize);
      expect(JSON.parse(proof.entry)).toMatchObject({ kind: "certificate", serial: issued[0]?.serial, spiffeId: issued[0]?.spiffeId });
      expect(refusal(await auditor(`{ consistencyProof(fromSize: 0, toSize: 1) { hashes } }`)).code).toBe("BAD_USER_INPUT");
      expect(refusal(await auditor(`query ($to: Int!) { consistencyProof(fromSize: 1, toSize: $to) { hashes } }`, { to: treeSize + 1000 })).code).toBe("BAD_USER_INPUT");
      expect(refusal(await auditor(`{ inclusionProof(serial: "0abc") { leafIndex } }`)).code).toBe("NOT_FOUND");
      expect(refusal(await service.gql(LOG)).code).toBe("UNAUTHENTICATED");
    });

    it("fails loudly when a stored certificate row or audit row has been edited", async () => {
      const target = issued[0] as Issued;
      const db = new Database(join(service.dataDir, "anchorage.db"));
      try {
        db.prepare("UPDATE certificates SET spiffe_id = ? WHERE serial = ?").run(spiffe("ns/payments/sa/admin"), target.serial);
      } finally {
        db.close();
      }
      const audit = verifyLog(vkey, "audit");
      expect(audit.status).toBe(1);
      expect(audit.output).toMatch(/LOG VERIFICATION FAILED: leaf \d+: the entry disagrees with its certificate \(subjectAltName\)/);
      const inclusion = verifyLog(vkey, "inclusion", "--serial", target.serial);
      expect(inclusion.status).toBe(1);
      expect(inclusion.output).toContain("LOG VERIFICATION FAILED");

      const restore = new Database(join(service.dataDir, "anchorage.db"));
      try {
        restore.prepare("UPDATE certificates SET spiffe_id = ? WHERE serial = ?").run(target.spiffeId, target.serial);
        expect(verifyLog(vkey, "audit").status).toBe(0);
        // Un-revoking a certificate in the database contradicts the logged revocation.
        const revoked = issued[1] as Issued;
        const before = restore.prepare("SELECT revoked_at, revocation_reason FROM certificates WHERE serial = ?").get(revoked.serial) as { revoked_at: number; revocation_reason: string };
        expect(before.revoked_at).not.toBeNull();
        restore.prepare("UPDATE certificates SET revoked_at = NULL, revocation_reason = NULL WHERE serial = ?").run(revoked.serial);
        const unrevoked = verifyLog(vkey, "audit");
        expect(unrevoked.status).toBe(1);
        expect(unrevoked.output).toContain(`LOG VERIFICATION FAILED: certificate ${revoked.serial} was revoked at`);
        restore.prepare("UPDATE certificates SET revoked_at = ?, revocation_reason = ? WHERE serial = ?").run(before.revoked_at, before.revocation_reason, revoked.serial);
        expect(verifyLog(vkey, "audit").status).toBe(0);
        // The database refuses edits to audit rows; an attacker with the file drops the trigger first.
        expect(() => restore.prepare("UPDATE audit_events SET actor = 'system' WHERE sequence = 1").run()).toThrow(/append-only/);
        restore.exec("DROP TRIGGER audit_events_no_update");
        restore.prepare("UPDATE audit_events SET actor = 'apikey:forged' WHERE sequence = (SELECT min(sequence) FROM audit_events WHERE type = 'apikey.created')").run();
      } finally {
        restore.close();
      }
      const edited = verifyLog(vkey, "audit");
      expect(edited.status).toBe(1);
      expect(edited.output).toMatch(/LOG VERIFICATION FAILED: the leaves served do not hash to the signed root/);
    });

    it("refuses a checkpoint when pinned to another key of the same name", () => {
      const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
      const impostor = verifierKey("anchorage.test/log", publicKey.export({ type: "spki", format: "der" }));
      const result = verifyLog(impostor, "checkpoint");
      expect(result.status).toBe(1);
      expect(result.output).toContain("LOG VERIFICATION FAILED: checkpoint signature does not verify");
    });
  });
});
