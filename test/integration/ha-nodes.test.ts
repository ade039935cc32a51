/**
 * Three service nodes on one PostgreSQL database, sharing the intermediate's key through `p11-kit server` (a
 * network HSM stand-in), each a real process with its own data folder and ports (test/support/nodes.ts). Every
 * check goes through the nodes' sockets: GraphQL over HTTPS, OCSP and CRLs over HTTP read by openssl, the
 * trust bundle subscription over Server-Sent Events, and the standalone log verifier.
 *
 * What must hold across nodes: an enrollment token's uses are spent once whichever node is asked, serials
 * never collide; a revocation on one node reaches the others' OCSP answers (dropping what they held in
 * memory) and CRLs, with CRL numbers that only grow; a hierarchy change on one node reaches subscribers on
 * the others; exactly one node runs the sweeps, and when it dies another takes over, so that the log keeps
 * covering every certificate issued before and after.
 */
import { spawn, spawnSync } from "node:child_process";
import type { ClientRequest } from "node:http";
import { request } from "node:https";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openSignedNote, parseCheckpointText, parseVerifierKey } from "../../src/audit/checkpoint.js";
import { leafHash, verifyInclusion } from "../../src/audit/merkle.js";
import { ok, refusal } from "../support/graphql.js";
import { startNodes, type NodeSet, type ServiceNode } from "../support/nodes.js";
import { requireP11Kit } from "../support/p11-kit.js";
import { postgresSkipReason, requirePostgres } from "../support/postgres.js";
import { makeCsr, openssl, REPO_ROOT, requireTools, scratchDir, type GqlResponse } from "../support/service.js";
import { softHsmModulePath } from "../support/softhsm.js";

const postgresUrl = requirePostgres();
const missing = requireTools(["softhsm2-util", "openssl"]) ?? requireP11Kit() ?? (postgresUrl === undefined ? postgresSkipReason : undefined);

const TRUST_DOMAIN = "anchorage.test";
const CREATE_TOKEN = `mutation ($input: CreateEnrollmentTokenInput!) { createEnrollmentToken(input: $input) { id token } }`;
const ISSUE = `mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { serial certificatePem chainPem } }`;
const REVOKE = `mutation ($serial: String!) { revokeCertificate(input: { serial: $serial }) { serial status } }`;
const HISTORY = `query ($filter: CertificateFilter, $after: String) {
  certificates(filter: $filter, first: 50, after: $after) { edges { node { serial } } pageInfo { hasNextPage endCursor } totalCount }
}`;
const LOG = "{ transparencyLog { verifierKey treeSize } }";
const INCLUSION = `query ($serial: String!) { inclusionProof(serial: $serial) { leafIndex treeSize entry hashes checkpoint } }`;
const BUNDLE_FIELDS = "sequence authorities { id kind status }";

/** How soon another node's OCSP answer must say revoked (the issue's bound), polled. */
const OCSP_INVALIDATED_WITHIN_MS = 1_000;
/** How soon a hierarchy change must reach subscribers on the other nodes (the polling fallback is 5 s). */
const BUNDLE_CHANGE_WITHIN_MS = 3_000;
/** How soon a surviving node must take the sweeper lease (it is retried every second). */
const TAKEOVER_WITHIN_MS = 5_000;
/** A request not answered by then counts as a failure. */
const REQUEST_WITHIN_MS = 20_000;

interface Issued {
  serial: string;
  certificatePem: string;
  chainPem: string;
}

interface Bundle {
  sequence: number;
  authorities: { id: string; kind: string; status: string }[];
}

/** Serials as openssl prints them and as the API names them, compared without case or leading zeros. */
const sameSerial = (hex: string): string => hex.toLowerCase().replace(/^0+/, "");

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(missing !== undefined)(`several nodes on one PostgreSQL sharing one token${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let set: NodeSet;
  let A: ServiceNode;
  let B: ServiceNode;
  let C: ServiceNode;
  let intermediateId: string;
  const scratch = scratchDir("anchorage-ha-nodes-");
  const subscriptions: ClientRequest[] = [];

  const admin = (node: ServiceNode, query: string, variables?: Record<string, unknown>): Promise<GqlResponse> =>
    node.gql(query, variables, { bearer: set.adminKey, newConnection: true, timeoutMs: REQUEST_WITHIN_MS });

  async function createToken(node: ServiceNode, spiffeId: string, uses: number): Promise<string> {
    return ok(await admin(node, CREATE_TOKEN, { input: { spiffeId, uses, expiresInSeconds: 3600 } })).createEnrollmentToken.token as string;
  }

  async function issueOn(node: ServiceNode, spiffeId: string, token: string): Promise<Issued> {
    const { csrPem } = makeCsr({ spiffeId });
    return ok(await node.gql(ISSUE, { input: { csr: csrPem, token } }, { newConnection: true, timeoutMs: REQUEST_WITHIN_MS })).issueCertificate as Issued;
  }

  /** Every serial of the history on `node` matching `filter`, all pages. */
  async function history(node: ServiceNode, filter: Record<string, unknown>): Promise<{ serials: string[]; totalCount: number }> {
    const serials: string[] = [];
    let after: string | null = null;
    let totalCount = 0;
    do {
      const page: any = ok(await admin(node, HISTORY, { filter, after })).certificates;
      serials.push(...page.edges.map((edge: { node: { serial: string } }) => edge.node.serial));
      totalCount = page.totalCount;
      after = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
    } while (after !== null);
    return { serials, totalCount };
  }

  /** The intermediate's certificate, as the chain of an issued certificate carries it. */
  const intermediatePemOf = (issued: Issued): string => (issued.chainPem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n?/g) as string[])[0] as string;

  /**
   * `openssl ocsp` against the node's HTTP listener; the certificate's status ("good", "revoked"), verified.
   * Without a nonce, as most relying parties ask: such requests are answered from the pre-signed responses a
   * node keeps in memory (a nonce would have the answer signed afresh and prove nothing about that memory).
   */
  function ocspStatus(node: ServiceNode, issued: Issued): string {
    const issuer = scratch.file(`issuer-${issued.serial}.pem`, intermediatePemOf(issued));
    const leaf = scratch.file(`leaf-${issued.serial}.pem`, issued.certificatePem);
    const cas = scratch.file(`cas-${issued.serial}.pem`, set.rootPem + intermediatePemOf(issued));
    const answer = openssl(["ocsp", "-issuer", issuer, "-cert", leaf, "-url", `http://127.0.0.1:${node.httpPort}/ocsp`, "-CAfile", cas, "-no_nonce"]);
    expect(`${answer.stdout}${answer.stderr}`, `${node.name}'s OCSP answer must verify`).toContain("Response verify OK");
    const status = new RegExp(`${leaf.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: (\\w+)`).exec(answer.stdout)?.[1];
    expect(status, answer.stdout).toBeDefined();
    return status as string;
  }

  /** The intermediate's CRL as served by the node, checked by openssl: its number and the serials it lists. */
  function readCrl(der: Buffer, issued: Issued): { number: bigint; serials: string[] } {
    const cas = scratch.file("crl-cas.pem", set.rootPem + intermediatePemOf(issued));
    const text = openssl(["crl", "-inform", "DER", "-CAfile", cas, "-verify", "-noout", "-text"], der);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stderr).toContain("verify OK");
    // Decimal while small, 0x-prefixed hex once large: BigInt reads both.
    const number = /X509v3 CRL Number:\s*\n\s*(0x[0-9A-Fa-f]+|\d+)/.exec(text.stdout)?.[1];
    expect(number, text.stdout).toBeDefined();
    const serials = [...text.stdout.matchAll(/Serial Number: ([0-9A-Fa-f]+)/g)].map((match) => sameSerial(match[1] as string));
    return { number: BigInt(number as string), serials };
  }

  async function crlOf(node: ServiceNode): Promise<Buffer> {
    const served = await node.http(`/crl/${intermediateId}.crl`);
    expect(served.status).toBe(200);
    return served.body;
  }

  /** The "sweeper lease taken" lines a node's process has written. */
  const leaseTaken = (node: ServiceNode): number => node.logs().split("\n").filter((line) => line.includes('"msg":"sweeper lease taken')).length;

  /** A trustBundleChanged subscription over Server-Sent Events on `node`; every bundle delivered, in order. */
  function subscribe(node: ServiceNode): Promise<Bundle[]> {
    const received: Bundle[] = [];
    return new Promise((resolve, reject) => {
      const body = JSON.stringify({ query: `subscription { trustBundleChanged { ${BUNDLE_FIELDS} } }` });
      const subscription = request(
        {
          host: "127.0.0.1",
          port: node.graphqlPort,
          path: "/graphql",
          method: "POST",
          ca: set.rootPem,
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
              received.push(JSON.parse(data.slice(6)).data.trustBundleChanged as Bundle);
              resolve(received);
            }
          });
          response.on("error", () => undefined);
        },
      );
      subscriptions.push(subscription);
      subscription.on("error", reject);
      subscription.end(body);
    });
  }

  /** The admin or ceremony CLI, on the shared database and token (admin) or the root token (ceremony). */
  function cli(tool: "admin" | "ceremony", args: readonly string[]): Promise<string> {
    const env: Record<string, string> = {};
    for (const [name, value] of Object.entries(process.env)) {
      if (value !== undefined && !name.startsWith("ANCHORAGE_") && name !== "SOFTHSM2_CONF" && name !== "P11_KIT_SERVER_ADDRESS") env[name] = value;
    }
    Object.assign(
      env,
      tool === "admin" ? { ...set.environment, ANCHORAGE_DATA_DIR: scratch.dir } : { SOFTHSM2_CONF: set.rootTokenSoftHsmConf },
    );
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ["--import", "tsx", join("src", "cli", `${tool}.ts`), ...args], { cwd: REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
      const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
      child.once("error", reject);
      child.once("exit", (code) => {
        clearTimeout(timer);
        if (code === 0) resolve(stdout);
        else reject(new Error(`${tool} ${args[0]} exited with ${code}: ${stderr}`));
      });
    });
  }

  async function waitFor(condition: () => boolean, what: string, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await sleep(25);
    }
  }

  beforeAll(async () => {
    set = await startNodes(postgresUrl as string, { count: 3, env: { ANCHORAGE_TRUST_DOMAIN: TRUST_DOMAIN, ANCHORAGE_LOG_INTERVAL_MS: "200" } });
    [A, B, C] = set.nodes as [ServiceNode, ServiceNode, ServiceNode];
    const authorities = ok(await A.gql("{ authorities { id kind status } }")).authorities as { id: string; kind: string; status: string }[];
    intermediateId = authorities.find((authority) => authority.kind === "INTERMEDIATE" && authority.status === "ACTIVE")?.id as string;
    expect(intermediateId).toBeDefined();
  }, 120_000);

  afterAll(async () => {
    for (const subscription of subscriptions) subscription.destroy();
    await set?.stopAll();
    scratch.remove();
  }, 60_000);

  it("spends an enrollment token's uses once across nodes and never repeats a serial", async () => {
    const spiffeId = `spiffe://${TRUST_DOMAIN}/ns/ha/sa/shared-token`;
    const token = await createToken(A, spiffeId, 5);
    const csrs = Array.from({ length: 12 }, () => makeCsr({ spiffeId }).csrPem);
    const nodes = [A, B, C];
    const answers = await Promise.all(
      csrs.map((csr, index) => (nodes[index % nodes.length] as ServiceNode).gql(ISSUE, { input: { csr, token } }, { newConnection: true, timeoutMs: REQUEST_WITHIN_MS })),
    );
    const issued = answers.filter((answer) => answer.body.errors === undefined).map((answer) => answer.body.data.issueCertificate as Issued);
    const refused = answers.filter((answer) => answer.body.errors !== undefined).map((answer) => refusal(answer));
    expect(issued).toHaveLength(5);
    expect(refused).toHaveLength(7);
    for (const refusedOne of refused) expect(refusedOne.code, refusedOne.message).toBe("UNAUTHENTICATED");
    const serials = issued.map((certificate) => certificate.serial);
    expect(new Set(serials).size).toBe(5);
    // The serial the API names is the one in the certificate.
    for (const certificate of issued) {
      const printed = openssl(["x509", "-noout", "-serial"], certificate.certificatePem).stdout;
      expect(sameSerial(printed.replace("serial=", "").trim())).toBe(sameSerial(certificate.serial));
    }

    for (const node of nodes) {
      const listed = await history(node, { spiffeId });
      expect(listed.totalCount, `history on ${node.name}`).toBe(5);
      expect([...listed.serials].sort(), `history on ${node.name}`).toEqual([...serials].sort());
    }
  });

  it("makes a revocation on one node visible in the other nodes' OCSP answers and CRLs, with CRL numbers that only grow", async () => {
    const spiffeId = `spiffe://${TRUST_DOMAIN}/ns/ha/sa/revoked`;
    const token = await createToken(C, spiffeId, 2);
    const first = await issueOn(C, spiffeId, token);
    const second = await issueOn(C, spiffeId, token);
    // Each node answers good first and keeps that answer in memory: the revocation must invalidate it.
    expect(ocspStatus(B, first)).toBe("good");
    expect(ocspStatus(A, second)).toBe("good");
    const before = [readCrl(await crlOf(A), first), readCrl(await crlOf(B), first)];

    ok(await admin(A, REVOKE, { serial: first.serial }));
    const firstRevokedAt = Date.now();
    const crlOnB = await crlOf(B);
    let statusOnB = ocspStatus(B, first);
    while (statusOnB !== "revoked" && Date.now() - firstRevokedAt < OCSP_INVALIDATED_WITHIN_MS) {
      await sleep(50);
      statusOnB = ocspStatus(B, first);
    }
    expect(statusOnB, `B's OCSP answer ${OCSP_INVALIDATED_WITHIN_MS} ms after the revocation on A`).toBe("revoked");
    const afterFirst = [readCrl(await crlOf(A), first), readCrl(crlOnB, first)];
    for (const crl of afterFirst) {
      expect(crl.serials).toContain(sameSerial(first.serial));
      for (const earlier of before) expect(crl.number > earlier.number).toBe(true);
    }

    ok(await admin(B, REVOKE, { serial: second.serial }));
    const secondRevokedAt = Date.now();
    const crlOnA = await crlOf(A);
    let statusOnA = ocspStatus(A, second);
    while (statusOnA !== "revoked" && Date.now() - secondRevokedAt < OCSP_INVALIDATED_WITHIN_MS) {
      await sleep(50);
      statusOnA = ocspStatus(A, second);
    }
    expect(statusOnA, `A's OCSP answer ${OCSP_INVALIDATED_WITHIN_MS} ms after the revocation on B`).toBe("revoked");
    const afterSecond = [readCrl(crlOnA, second), readCrl(await crlOf(B), second)];
    for (const crl of afterSecond) {
      expect(crl.serials).toEqual(expect.arrayContaining([sameSerial(first.serial), sameSerial(second.serial)]));
      for (const earlier of afterFirst) expect(crl.number > earlier.number).toBe(true);
    }
    expect(ocspStatus(C, first)).toBe("revoked");
    expect(ocspStatus(C, second)).toBe("revoked");
  });

  it("tells trustBundleChanged subscribers on the other nodes of an intermediate published on node A", async () => {
    const [onB, onC] = await Promise.all([subscribe(B), subscribe(C)]);
    const initial = Math.max(...onB.map((bundle) => bundle.sequence), ...onC.map((bundle) => bundle.sequence));

    // The rotation's first step, on the shared token and database: a new key, the root ceremony, publication.
    const csr = scratch.file("next.csr");
    const certificate = scratch.file("next.pem");
    await cli("admin", ["intermediate-csr", "--out", csr, "--key-label", "ha-next"]);
    await cli("ceremony", [
      "sign-intermediate", "--root-cert", scratch.file("root.pem", set.rootPem), "--csr", csr, "--out", certificate, "--days", "365",
      "--trust-domain", TRUST_DOMAIN, "--module", softHsmModulePath(), "--token-label", set.rootTokenLabel, "--key-label", set.rootTokenLabel,
      "--pin-file", set.rootTokenPinFile,
    ]);
    const published = await cli("admin", ["publish-intermediate", "--intermediate", certificate, "--key-label", "ha-next"]);
    const publishedAt = Date.now();
    const newId = /published intermediate ([0-9a-f]+)/.exec(published)?.[1] as string;
    expect(newId).toMatch(/^[0-9a-f]{40}$/);

    const sees = (bundles: Bundle[]) => bundles.some((bundle) => bundle.sequence > initial && bundle.authorities.some((authority) => authority.id === newId && authority.status === "PUBLISHED"));
    try {
      await waitFor(() => sees(onB) && sees(onC), "subscribers on B and C to receive the bundle with the new intermediate", BUNDLE_CHANGE_WITHIN_MS - (Date.now() - publishedAt));
    } catch (error) {
      // What each node delivered and logged about the hierarchy, so that a miss says where the change stopped.
      const hierarchyLines = (node: ServiceNode) =>
        node
          .logs()
          .split("\n")
          .filter((line) => /hierarchy|authorit|bundle|"level":(40|50)/i.test(line))
          .slice(-10)
          .join("\n");
      throw new Error(
        `${String(error)} (published at ${new Date(publishedAt).toISOString()})\nB delivered ${JSON.stringify(onB)}\nC delivered ${JSON.stringify(onC)}\n` +
          `B logged:\n${hierarchyLines(B)}\nC logged:\n${hierarchyLines(C)}`,
      );
    }
    for (const bundles of [onB, onC]) {
      const latest = bundles[bundles.length - 1] as Bundle;
      expect(latest.authorities.find((authority) => authority.id === intermediateId)?.status).toBe("ACTIVE");
    }
    // Each node's public bundle endpoint agrees.
    for (const node of [A, B, C]) {
      const spiffe = JSON.parse((await node.http("/bundle")).body.toString("utf8"));
      expect(spiffe.keys.map((key: { kid: string }) => key.kid), `/bundle on ${node.name}`).toContain(newId);
    }
  });

  it("runs the sweeps on exactly one node, and another takes them over when it dies, the log covering everything", async () => {
    const holders = set.nodes.filter((node) => leaseTaken(node) > 0);
    expect(holders.map((node) => node.name)).toHaveLength(1);
    expect(set.nodes.reduce((sum, node) => sum + leaseTaken(node), 0)).toBe(1);
    const holder = holders[0] as ServiceNode;
    const survivors = set.nodes.filter((node) => node !== holder);

    const spiffeId = `spiffe://${TRUST_DOMAIN}/ns/ha/sa/failover`;
    const token = await createToken(survivors[0] as ServiceNode, spiffeId, 1000);
    const issued: { serial: string; afterFailover: boolean }[] = [];
    const failures: string[] = [];
    let failedOver = false;
    let loading = true;
    const load = async (node: ServiceNode): Promise<void> => {
      while (loading) {
        try {
          const certificate = await issueOn(node, spiffeId, token);
          issued.push({ serial: certificate.serial, afterFailover: failedOver });
        } catch (error) {
          failures.push(`${node.name}: ${String(error)}`);
        }
      }
    };
    const loads = survivors.map((node) => load(node));
    await waitFor(() => issued.length >= 4, "certificates issued before the failover", 20_000);

    expect(await set.kill(holder, "SIGKILL")).toBeNull();
    const killedAt = Date.now();
    await waitFor(() => survivors.some((node) => leaseTaken(node) > 0), "a surviving node to take the sweeper lease", TAKEOVER_WITHIN_MS);
    expect(Date.now() - killedAt).toBeLessThan(TAKEOVER_WITHIN_MS + 1_000);
    failedOver = true;
    expect(survivors.reduce((sum, node) => sum + leaseTaken(node), 0)).toBe(1);
    const newHolder = survivors.find((node) => leaseTaken(node) > 0) as ServiceNode;

    const issuedBefore = issued.length;
    await waitFor(() => issued.length >= issuedBefore + 4, "certificates issued after the failover", 20_000);
    loading = false;
    await Promise.all(loads);
    expect(failures).toEqual([]);
    expect(issued.some((certificate) => !certificate.afterFailover)).toBe(true);
    expect(issued.some((certificate) => certificate.afterFailover)).toBe(true);

    // Every certificate, from before and after the failover, gets into a signed checkpoint.
    const auditor = survivors.find((node) => node !== newHolder) ?? newHolder;
    const vkey = ok(await admin(auditor, LOG)).transparencyLog.verifierKey as string;
    const key = parseVerifierKey(vkey);
    const unproven = new Set(issued.map((certificate) => certificate.serial));
    const deadline = Date.now() + 20_000;
    while (unproven.size > 0) {
      for (const serial of [...unproven]) {
        const answer = await admin(auditor, INCLUSION, { serial });
        if (answer.body.errors !== undefined) continue;
        const proof = answer.body.data.inclusionProof as { leafIndex: number; treeSize: number; entry: string; hashes: string[]; checkpoint: string };
        const checkpoint = parseCheckpointText(openSignedNote(proof.checkpoint, [key]).text);
        expect(checkpoint.size).toBe(proof.treeSize);
        expect(JSON.parse(proof.entry)).toMatchObject({ kind: "certificate", serial });
        const hashes = proof.hashes.map((hash) => Buffer.from(hash, "base64"));
        expect(verifyInclusion(leafHash(Buffer.from(proof.entry, "utf8")), proof.leafIndex, proof.treeSize, hashes, checkpoint.rootHash), `inclusion of ${serial}`).toBe(true);
        unproven.delete(serial);
      }
      if (unproven.size === 0) break;
      if (Date.now() > deadline) throw new Error(`no inclusion proof within 20 s for ${[...unproven].join(", ")}`);
      await sleep(200);
    }

    const verifier = spawnSync(
      process.execPath,
      ["--import", "tsx", "scripts/verify-log.ts", "--url", `https://localhost:${auditor.graphqlPort}`, "--ca", scratch.file("verifier-root.pem", set.rootPem), "--vkey", vkey, "audit"],
      { cwd: REPO_ROOT, env: { ...process.env, ANCHORAGE_API_KEY: set.adminKey }, encoding: "utf8", timeout: 60_000 },
    );
    expect(`${verifier.stdout}${verifier.stderr}`).toMatch(/^OK: all \d+ leaves \(\d+ certificates\) hash to the signed root/);
    expect(verifier.status).toBe(0);

    // The dead node, started again, serves but leaves the sweeps where they are: the lease has a holder.
    const rejoined = await set.restart(holder);
    expect((await issueOn(rejoined, spiffeId, token)).serial).toMatch(/^[0-9a-f]+$/);
    await sleep(2_500);
    expect(leaseTaken(rejoined), "the restarted node must not take the lease another node holds").toBe(0);
    expect(leaseTaken(newHolder)).toBe(1);
    expect(newHolder.logs()).not.toContain("sweeper lease released");
  }, 90_000);
});
