/**
 * A whole intermediate rotation under load, against the real service running as two worker processes:
 * prepare (new key on the token, root ceremony, publish), subscribers see the new bundle over SSE, consumers
 * acknowledge, activation switches issuance in both workers without a restart, and the old intermediate is
 * retired only once its last certificate has expired and consumers have the new bundle (or an admin forces
 * it). Issuance and renewal run throughout; every certificate must verify (openssl) against the bundle that
 * was current when it was received, and no request may fail.
 *
 * Lifetimes are short (60 s leaves, 90 s for the service's own certificate) so that the old intermediate's
 * certificates expire within the test.
 */
import { spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import type { ClientRequest } from "node:http";
import { Agent, request } from "node:https";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { refusal, ok } from "../support/graphql.js";
import { softHsmModulePath } from "../support/softhsm.js";
import { makeCsr, makeKey, openssl, REPO_ROOT, requireTools, scratchDir, startService, type RunningService } from "../support/service.js";

const missing = requireTools(["softhsm2-util", "openssl"]);

const ISSUE = `mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { serial certificatePem chainPem notAfter } }`;
const RENEW = `mutation ($input: RenewCertificateInput!) { renewCertificate(input: $input) { serial certificatePem chainPem notAfter } }`;
const BUNDLE_FIELDS = "sequence rootsPem intermediatesPem spiffeBundle authorities { id kind status }";

interface Bundle {
  sequence: number;
  rootsPem: string;
  intermediatesPem: string;
  spiffeBundle: string;
  authorities: { id: string; kind: string; status: string }[];
}

interface Received {
  certificatePem: string;
  /** The bundle sequence current when the certificate arrived. */
  sequence: number;
}

describe.skipIf(missing !== undefined)(`intermediate rotation under load${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let service: RunningService;
  const scratch = scratchDir("anchorage-rotation-");
  const bundles = new Map<number, Bundle>();
  let latestSequence = 0;
  let subscription: ClientRequest | undefined;
  let oldId: string;
  let newId: string;
  const received: Received[] = [];
  const failures: string[] = [];
  let loadRunning = true;
  let loadDone: Promise<void>;

  const admin = (query: string, variables?: Record<string, unknown>) => service.gql(query, variables, { bearer: service.adminKey, newConnection: true });

  function cli(tool: "ceremony" | "admin", args: readonly string[]): string {
    const env: Record<string, string> = {};
    for (const [name, value] of Object.entries(process.env)) {
      if (value !== undefined && !name.startsWith("ANCHORAGE_") && name !== "SOFTHSM2_CONF") env[name] = value;
    }
    const result = spawnSync(process.execPath, ["--import", "tsx", join("src", "cli", `${tool}.ts`), ...args], {
      cwd: REPO_ROOT,
      env: { ...env, ANCHORAGE_DATA_DIR: service.dataDir, ...(tool === "ceremony" ? { SOFTHSM2_CONF: join(service.dataDir, "softhsm2.conf") } : {}) },
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(result.status, `${tool} ${args[0]}: ${result.stderr}`).toBe(0);
    return result.stdout;
  }

  /** A subscription over Server-Sent Events; every bundle it delivers is kept by sequence. */
  function subscribe(): Promise<void> {
    return new Promise((resolve, reject) => {
      const body = JSON.stringify({ query: `subscription { trustBundleChanged { ${BUNDLE_FIELDS} } }` });
      subscription = request(
        {
          host: "127.0.0.1",
          port: service.graphqlPort,
          path: "/graphql",
          method: "POST",
          ca: service.rootPem,
          servername: "localhost",
          agent: false,
          headers: { accept: "text/event-stream", "content-type": "application/json", "content-length": Buffer.byteLength(body) },
        },
        (response) => {
          expect(response.headers["content-type"]).toMatch(/^text\/event-stream/);
          let pending = "";
          response.setEncoding("utf8");
          response.on("data", (chunk: string) => {
            pending += chunk;
            let end: number;
            while ((end = pending.indexOf("\n\n")) !== -1) {
              const event = pending.slice(0, end);
              pending = pending.slice(end + 2);
              const data = event.split("\n").find((line) => line.startsWith("data: "));
              if (!event.startsWith("event: next") || !data) continue;
              const bundle = JSON.parse(data.slice(6)).data.trustBundleChanged as Bundle;
              bundles.set(bundle.sequence, bundle);
              latestSequence = Math.max(latestSequence, bundle.sequence);
              resolve();
            }
          });
          response.on("error", () => undefined);
        },
      );
      subscription.on("error", reject);
      subscription.end(body);
    });
  }

  async function waitFor(condition: () => boolean, what: string, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Issue, then renew over mutual TLS, in a loop on fresh connections (so both workers serve). */
  async function load(token: string): Promise<void> {
    const spiffeId = "spiffe://anchorage.test/ns/rotation/sa/load";
    while (loadRunning) {
      try {
        const { csrPem, keyPem } = makeCsr({ spiffeId });
        const answer = await service.gql(ISSUE, { input: { csr: csrPem, token } }, { newConnection: true });
        if (answer.body.errors) throw new Error(`issue: ${JSON.stringify(answer.body.errors)}`);
        const issued = answer.body.data.issueCertificate;
        received.push({ certificatePem: issued.certificatePem, sequence: latestSequence });
        const nextKey = makeKey("P-256");
        const csrFile = scratch.file("load-key.pem", nextKey);
        const renewCsr = spawnSync("openssl", ["req", "-new", "-key", csrFile, "-subj", "/", "-addext", `subjectAltName=URI:${spiffeId}`], { encoding: "utf8" }).stdout;
        const renewed = await service.gql(RENEW, { input: { csr: renewCsr } }, { cert: issued.certificatePem + issued.chainPem, key: keyPem });
        if (renewed.body.errors) throw new Error(`renew: ${JSON.stringify(renewed.body.errors)}`);
        received.push({ certificatePem: renewed.body.data.renewCertificate.certificatePem, sequence: latestSequence });
      } catch (error) {
        failures.push(String(error));
      }
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
  }

  beforeAll(async () => {
    service = await startService({ env: { ANCHORAGE_WORKERS: "2", ANCHORAGE_MAX_TTL_SECONDS: "90", ANCHORAGE_DEFAULT_TTL_SECONDS: "60" } });
    await subscribe();
    const token = ok(
      await admin(`mutation { createEnrollmentToken(input: { spiffeId: "spiffe://anchorage.test/ns/rotation/sa/load", uses: 5000, expiresInSeconds: 3600 }) { token } }`),
    ).createEnrollmentToken.token as string;
    loadDone = load(token);
  }, 90_000);

  afterAll(async () => {
    loadRunning = false;
    await loadDone;
    subscription?.destroy();
    await service?.cleanup();
    scratch.remove();
  });

  it("publishes a prepared intermediate to subscribers before it issues", async () => {
    const first = bundles.get(latestSequence) as Bundle;
    const intermediates = first.authorities.filter((authority) => authority.kind === "INTERMEDIATE");
    expect(intermediates).toHaveLength(1);
    oldId = intermediates[0]?.id as string;

    const csr = scratch.file("new.csr");
    cli("admin", ["intermediate-csr", "--out", csr, "--key-label", "rotation-next"]);
    const certificate = scratch.file("new.pem");
    cli("ceremony", [
      "sign-intermediate", "--root-cert", join(service.dataDir, "root.pem"), "--csr", csr, "--out", certificate, "--days", "365",
      "--trust-domain", "anchorage.test", "--module", softHsmModulePath(), "--token-label", "anchorage-root", "--key-label", "anchorage-root",
      "--pin-file", join(service.dataDir, "secrets", "root-token.pin"),
    ]);
    const published = cli("admin", ["publish-intermediate", "--intermediate", certificate, "--key-label", "rotation-next"]);
    newId = /published intermediate ([0-9a-f]+)/.exec(published)?.[1] as string;
    expect(newId).toMatch(/^[0-9a-f]{40}$/);
    expect(service.sqlValue("SELECT count(*) FROM audit_events WHERE type = 'authority.published' AND subject = ?", newId)).toBe(1);

    const before = first.sequence;
    await waitFor(() => latestSequence > before, "the subscription to deliver the new bundle");
    const next = bundles.get(latestSequence) as Bundle;
    expect(next.authorities.find((authority) => authority.id === newId)?.status).toBe("PUBLISHED");
    expect(next.authorities.find((authority) => authority.id === oldId)?.status).toBe("ACTIVE");
    expect(JSON.parse(next.spiffeBundle)).toMatchObject({ spiffe_sequence: next.sequence });
    const spiffe = JSON.parse((await service.http("/bundle")).body.toString("utf8"));
    expect(spiffe.spiffe_sequence).toBe(next.sequence);
    expect(spiffe.keys.map((key: { kid: string; use: string }) => key.kid)).toContain(newId);
    expect(spiffe.keys.every((key: { use: string }) => key.use === "x509-svid")).toBe(true);
  });

  /** The west control plane acknowledges with its own workload certificate, over mutual TLS. */
  let westCredential: { cert: string; key: string };
  const ACKNOWLEDGE = `mutation ($id: String!, $seq: Int!) { acknowledgeTrustBundle(consumerId: $id, sequence: $seq) }`;

  it("records registered consumers' acknowledgements from admins and their workloads, only ever forwards", async () => {
    const spiffeId = "spiffe://anchorage.test/ns/mesh/sa/west";
    const token = ok(await admin(`mutation ($id: String!) { createEnrollmentToken(input: { spiffeId: $id }) { token } }`, { id: spiffeId })).createEnrollmentToken.token;
    const { csrPem, keyPem } = makeCsr({ spiffeId });
    const west = ok(await service.gql(ISSUE, { input: { csr: csrPem, token, ttlSeconds: 60 } })).issueCertificate;
    westCredential = { cert: west.certificatePem + west.chainPem, key: keyPem };
    const anonymous = await service.gql(ACKNOWLEDGE, { id: "mesh-rogue", seq: latestSequence }, { newConnection: true });
    expect(refusal(anonymous).code).toBe("UNAUTHENTICATED");
    // Consumers are registered by an admin, each with the identity that may acknowledge for it.
    const REGISTER = `mutation ($input: RegisterTrustBundleConsumerInput!) { registerTrustBundleConsumer(input: $input) { consumerId } }`;
    ok(await admin(REGISTER, { input: { consumerId: "mesh-east" } }));
    ok(await admin(REGISTER, { input: { consumerId: "mesh-west", spiffeId } }));

    ok(await admin(ACKNOWLEDGE, { id: "mesh-east", seq: latestSequence - 1 }));
    ok(await service.gql(ACKNOWLEDGE, { id: "mesh-west", seq: latestSequence - 1 }, westCredential));
    expect(refusal(await admin(ACKNOWLEDGE, { id: "mesh-east", seq: latestSequence + 50 })).code).toBe("BAD_USER_INPUT");
    expect(refusal(await admin(ACKNOWLEDGE, { id: "bad id with spaces", seq: 1 })).code).toBe("BAD_USER_INPUT");
    const consumers = ok(await admin("{ trustBundleConsumers { currentSequence consumers { consumerId acknowledgedSequence current } } }")).trustBundleConsumers;
    expect(consumers.currentSequence).toBe(latestSequence);
    expect(consumers.consumers).toEqual([
      { consumerId: "mesh-east", acknowledgedSequence: latestSequence - 1, current: true },
      { consumerId: "mesh-west", acknowledgedSequence: latestSequence - 1, current: true },
    ]);
  });

  it("switches issuance to the new intermediate in every worker without a restart, and renews its own TLS certificate without dropping connections", async () => {
    // A keep-alive connection opened before the switch must survive the service's certificate change.
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 1, ca: service.rootPem, servername: "localhost" });
    const ports: number[] = [];
    const ping = () =>
      new Promise<string>((resolve, reject) => {
        const body = JSON.stringify({ query: "{ trustBundle { sequence } }" });
        const outgoing = request(
          { host: "127.0.0.1", port: service.graphqlPort, path: "/graphql", method: "POST", agent: keepAlive, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } },
          (response) => {
            ports.push(response.socket.localPort as number);
            let text = "";
            response.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
            response.on("end", () => resolve(text));
          },
        );
        outgoing.on("error", reject);
        outgoing.end(body);
      });
    expect(await ping()).toContain("sequence");
    expect(refusal(await admin(`mutation ($id: ID!) { retireAuthority(id: $id) { id } }`, { id: oldId })).code).toBe("POLICY_VIOLATION");
    const activated = ok(await admin(`mutation ($id: ID!) { activateAuthority(id: $id) { id status } }`, { id: newId })).activateAuthority;
    expect(activated).toEqual({ id: newId, status: "ACTIVE" });
    expect(JSON.parse(service.sqlValue("SELECT details FROM audit_events WHERE type = 'authority.activated' AND subject = ?", newId) as string)).toEqual({ previous: oldId });
    const issuerOf = (serial: string) => service.sqlValue("SELECT authority_id FROM certificates WHERE serial = ?", serial);
    // Within a second both workers issue with the new intermediate (they poll the hierarchy every 250 ms).
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const token = ok(await admin(`mutation { createEnrollmentToken(input: { spiffeId: "spiffe://anchorage.test/ns/rotation/sa/probe", uses: 8 }) { token } }`)).createEnrollmentToken.token;
    for (let index = 0; index < 8; index++) {
      const { csrPem } = makeCsr({ spiffeId: "spiffe://anchorage.test/ns/rotation/sa/probe" });
      const issued = ok(await service.gql(ISSUE, { input: { csr: csrPem, token } }, { newConnection: true })).issueCertificate;
      expect(issuerOf(issued.serial)).toBe(newId);
    }
    await waitFor(() => {
      const serial = Number(service.sqlValue("SELECT count(*) FROM certificates WHERE spiffe_id = 'spiffe://anchorage.test/anchorage/server' AND authority_id = ?", newId));
      return serial >= 2;
    }, "both workers to renew their TLS certificate from the new intermediate");
    expect(await ping()).toContain("sequence");
    expect(new Set(ports).size).toBe(1);
    keepAlive.destroy();

    // The old intermediate still answers for its certificates: CRL and OCSP.
    const oldPem = openssl(["x509", "-inform", "DER"], (await service.http(`/ca/${oldId}.crt`)).body).stdout;
    const chainFile = scratch.file("old-chain.pem", (bundles.get(latestSequence) as Bundle).rootsPem + oldPem);
    const crl = await service.http(`/crl/${oldId}.crl`);
    expect(crl.status).toBe(200);
    const crlCheck = openssl(["crl", "-inform", "DER", "-noout", "-CAfile", chainFile, "-verify"], crl.body);
    expect(crlCheck.status, crlCheck.stderr).toBe(0);
    const oldSubject = new X509Certificate(oldPem).subject;
    const oldLeaf = [...received].reverse().find((item) => new X509Certificate(item.certificatePem).issuer === oldSubject);
    expect(oldLeaf).toBeDefined();
    const ocsp = openssl([
      "ocsp", "-issuer", scratch.file("old-issuer.pem", oldPem), "-cert", scratch.file("old-leaf.pem", oldLeaf?.certificatePem),
      "-url", `http://127.0.0.1:${service.httpPort}/ocsp`, "-CAfile", chainFile,
    ]);
    expect(ocsp.stdout + ocsp.stderr).toMatch(/Response verify OK/);
    expect(ocsp.stdout).toMatch(/: good/);
  });

  it("retires the old intermediate only after its last certificate expired and consumers caught up, unless forced", async () => {
    const lastExpiry = Number(service.sqlValue("SELECT max(not_after) FROM certificates WHERE authority_id = ? AND state = 'issued' AND profile = 'workload'", oldId));
    expect(refusal(await admin(`mutation ($id: ID!) { retireAuthority(id: $id) { id } }`, { id: oldId })).message).toMatch(/valid until/);
    await waitFor(() => Date.now() > lastExpiry + 1000, "the old intermediate's last certificate to expire", 120_000);

    const lagging = refusal(await admin(`mutation ($id: ID!) { retireAuthority(id: $id) { id } }`, { id: oldId }));
    expect(lagging).toMatchObject({ code: "POLICY_VIOLATION", message: expect.stringMatching(/mesh-east.*mesh-west|mesh-west.*mesh-east/) });
    const required = ok(await admin("{ trustBundleConsumers { requiredSequence } }")).trustBundleConsumers.requiredSequence as number;
    ok(await admin(ACKNOWLEDGE, { id: "mesh-east", seq: required }));
    const stillLagging = refusal(await admin(`mutation ($id: ID!) { retireAuthority(id: $id) { id } }`, { id: oldId }));
    expect(stillLagging.message).toMatch(/mesh-west/);
    expect(stillLagging.message).not.toMatch(/mesh-east/);

    const before = latestSequence;
    const retired = ok(await admin(`mutation ($id: ID!) { retireAuthority(id: $id, force: true) { id status } }`, { id: oldId })).retireAuthority;
    expect(retired).toEqual({ id: oldId, status: "RETIRED" });
    await waitFor(() => latestSequence > before, "the subscription to deliver the bundle without the old intermediate");
    expect((bundles.get(latestSequence) as Bundle).authorities.map((authority) => authority.id)).not.toContain(oldId);
    const audit = service.sqlValue("SELECT details FROM audit_events WHERE type = 'authority.retired' AND subject = ?", oldId) as string;
    expect(JSON.parse(audit)).toEqual({ forced: true, laggingConsumers: ["mesh-west"] });
  }, 150_000);

  it("saw no failed request, and every certificate verifies against the bundle of its time", async () => {
    loadRunning = false;
    await loadDone;
    expect(failures).toEqual([]);
    const sequences = new Set(received.map((item) => item.sequence));
    expect(received.length).toBeGreaterThan(20);
    const issuers = new Set<string>();
    for (const sequence of sequences) {
      const bundle = bundles.get(sequence) as Bundle;
      const roots = scratch.file(`roots-${sequence}.pem`, bundle.rootsPem);
      const intermediates = scratch.file(`intermediates-${sequence}.pem`, bundle.intermediatesPem);
      const files = received
        .filter((item) => item.sequence === sequence)
        .map((item, index) => {
          issuers.add(new X509Certificate(item.certificatePem).issuer);
          return scratch.file(`leaf-${sequence}-${index}.pem`, item.certificatePem);
        });
      // The chain as of then; most of these short-lived certificates have expired by now, which is not the question.
      const verified = openssl(["verify", "-no_check_time", "-CAfile", roots, "-untrusted", intermediates, ...files]);
      expect(verified.status, verified.stdout + verified.stderr).toBe(0);
      expect(verified.stdout.trim().split("\n")).toHaveLength(files.length);
    }
    // The load ran on both sides of the switch.
    expect(issuers.size).toBe(2);
  });
});
