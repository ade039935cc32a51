/**
 * Independent verifier of Anchorage's transparency log. Trusts nothing but the log's public key (its
 * signed-note verifier key): every checkpoint's signature, every proof and every leaf is checked here.
 *
 *   tsx scripts/verify-log.ts --url https://127.0.0.1:8443 --ca data/root.pem --vkey <vkey> <command>
 *
 *   checkpoint [--pin FILE]        verify the latest checkpoint; with --pin, also prove it extends the pinned
 *                                  one (split-view check) and then pin it
 *   inclusion --serial S | --cert FILE
 *                                  prove the certificate is a leaf of the latest checkpoint's tree
 *   consistency --old FILE [--new FILE]
 *                                  prove two checkpoints (the latest when --new is absent) describe one history
 *   audit                          download every leaf, recompute the tree, compare with the signed root,
 *                                  check each certificate leaf against its own DER, and the history export
 *                                  (the current rows, revocations included) against the leaves
 *
 * The API key (auditor or admin) comes from ANCHORAGE_API_KEY or --api-key-file; --vkey-file may replace
 * --vkey. Exit status: 0 verified, 1 verification failed, 2 usage or connection error.
 */
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { parseArgs } from "node:util";
import { openSignedNote, parseCheckpointText, parseVerifierKey, type Checkpoint, type ParsedVerifierKey } from "../src/audit/checkpoint.js";
import { InMemorySubtreeHashes, leafHash, treeRoot, verifyConsistency, verifyInclusion } from "../src/audit/merkle.js";

class VerificationFailure extends Error {}
class UsageError extends Error {}

const fail = (message: string): never => {
  throw new VerificationFailure(message);
};

interface Connection {
  readonly url: URL;
  readonly ca: string | undefined;
  readonly apiKey: string;
}

function get(connection: Connection, path: string, body?: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const target = new URL(path, connection.url);
    const outgoing = request(
      target,
      {
        method: body === undefined ? "GET" : "POST",
        ...(connection.ca ? { ca: connection.ca } : {}),
        headers: {
          authorization: `Bearer ${connection.apiKey}`,
          ...(body === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(body) }),
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks) }));
        response.on("error", reject);
      },
    );
    outgoing.on("error", reject);
    outgoing.end(body);
  });
}

async function graphql<T>(connection: Connection, query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const answer = await get(connection, "/graphql", JSON.stringify({ query, variables }));
  const parsed = JSON.parse(answer.body.toString("utf8")) as { data?: T; errors?: { message: string; extensions?: { code?: string } }[] };
  if (parsed.errors?.length) {
    const [first] = parsed.errors;
    throw new UsageError(`the service refused: ${first?.extensions?.code ?? "ERROR"}: ${first?.message}`);
  }
  return parsed.data as T;
}

/** Verifies the note's signature with the pinned key, then parses the checkpoint and checks its origin. */
function openCheckpoint(note: string, key: ParsedVerifierKey): Checkpoint {
  let text: string;
  try {
    text = openSignedNote(note, [key]).text;
  } catch (error) {
    return fail(`checkpoint signature does not verify with the log key: ${(error as Error).message}`);
  }
  const checkpoint = parseCheckpointText(text);
  if (checkpoint.origin !== key.name) fail(`checkpoint origin ${checkpoint.origin} is not the log's name ${key.name}`);
  return checkpoint;
}

async function latestCheckpoint(connection: Connection, key: ParsedVerifierKey): Promise<{ note: string; checkpoint: Checkpoint }> {
  const data = await graphql<{ transparencyLog: { checkpoint: string | null } }>(connection, "{ transparencyLog { checkpoint } }");
  const note = data.transparencyLog.checkpoint ?? fail("the log has no checkpoint yet");
  return { note, checkpoint: openCheckpoint(note, key) };
}

async function proveConsistent(connection: Connection, older: Checkpoint, newer: Checkpoint): Promise<void> {
  if (older.size > newer.size) fail(`the newer checkpoint (${newer.size} leaves) is smaller than the older (${older.size}): the log shrank`);
  if (older.size === 0) return;
  if (older.size === newer.size) {
    if (!older.rootHash.equals(newer.rootHash)) fail(`two different roots for ${older.size} leaves: split view`);
    return;
  }
  const data = await graphql<{ consistencyProof: { hashes: string[] } }>(
    connection,
    "query ($from: Int!, $to: Int!) { consistencyProof(fromSize: $from, toSize: $to) { hashes } }",
    { from: older.size, to: newer.size },
  );
  const proof = data.consistencyProof.hashes.map((hash) => Buffer.from(hash, "base64"));
  if (!verifyConsistency(older.size, newer.size, older.rootHash, newer.rootHash, proof)) {
    fail(`the tree of ${newer.size} leaves does not extend the tree of ${older.size} leaves: the log rewrote history`);
  }
}

interface CertificateEntry {
  kind: "certificate";
  serial: string;
  spiffeId: string;
  dnsNames: string[];
  notBefore: string;
  notAfter: string;
  fingerprintSha256: string;
  certificate: string;
  /** Absent for workload certificates. */
  profile?: string;
}

const OCSP_SIGNING = "1.3.6.1.5.5.7.3.9";

/** A certificate leaf's fields must be what its DER says: an edited column shows here even if the DER was kept. */
function checkCertificateEntry(entry: CertificateEntry, where: string): void {
  const certificate = new X509Certificate(Buffer.from(entry.certificate, "base64"));
  const problems: string[] = [];
  if (certificate.serialNumber.toLowerCase().replace(/^0+/, "") !== entry.serial.replace(/^0+/, "")) problems.push("serial");
  if (certificate.fingerprint256.replaceAll(":", "").toLowerCase() !== entry.fingerprintSha256) problems.push("fingerprint");
  if (new Date(certificate.validFrom).getTime() !== new Date(entry.notBefore).getTime()) problems.push("notBefore");
  if (new Date(certificate.validTo).getTime() !== new Date(entry.notAfter).getTime()) problems.push("notAfter");
  const names = (certificate.subjectAltName ?? "").split(", ").filter(Boolean).sort();
  if (entry.profile === "ocsp-responder") {
    // A delegated OCSP responder names no workload: no SAN, and it may sign OCSP responses only.
    if (names.length > 0 || entry.spiffeId !== "" || entry.dnsNames.length > 0) problems.push("subjectAltName");
    if ((certificate.keyUsage ?? []).join(",") !== OCSP_SIGNING) problems.push("extendedKeyUsage");
  } else if (entry.profile !== undefined) {
    problems.push(`profile ${JSON.stringify(entry.profile)}`);
  } else {
    const expected = [`URI:${entry.spiffeId}`, ...entry.dnsNames.map((name) => `DNS:${name}`)].sort();
    const ipFree = names.filter((name) => !name.startsWith("IP Address:"));
    if (ipFree.join("\n") !== expected.join("\n")) problems.push("subjectAltName");
  }
  if (problems.length > 0) fail(`${where}: the entry disagrees with its certificate (${problems.join(", ")})`);
}

async function commandCheckpoint(connection: Connection, key: ParsedVerifierKey, pinFile: string | undefined): Promise<string> {
  const latest = await latestCheckpoint(connection, key);
  if (pinFile && existsSync(pinFile)) {
    const pinned = openCheckpoint(readFileSync(pinFile, "utf8"), key);
    await proveConsistent(connection, pinned, latest.checkpoint);
  }
  if (pinFile) writeFileSync(pinFile, latest.note);
  return `checkpoint of ${latest.checkpoint.size} leaves verified${pinFile ? ` and pinned in ${pinFile}` : ""}`;
}

async function commandInclusion(connection: Connection, key: ParsedVerifierKey, serial: string | undefined, certFile: string | undefined): Promise<string> {
  const held = certFile ? new X509Certificate(readFileSync(certFile)) : undefined;
  const given = (serial ?? held?.serialNumber ?? "").toLowerCase();
  if (!given) throw new UsageError("inclusion needs --serial or --cert");
  // The service names serials by their bytes: an even number of hex digits, a leading zero kept.
  const wanted = given.length % 2 === 1 ? `0${given}` : given;
  const { checkpoint } = await latestCheckpoint(connection, key);
  const data = await graphql<{ inclusionProof: { leafIndex: number; treeSize: number; entry: string; hashes: string[]; checkpoint: string } }>(
    connection,
    "query ($serial: String!, $size: Int) { inclusionProof(serial: $serial, treeSize: $size) { leafIndex treeSize entry hashes checkpoint } }",
    { serial: wanted, size: checkpoint.size },
  );
  const proof = data.inclusionProof;
  const proofCheckpoint = openCheckpoint(proof.checkpoint, key);
  if (proofCheckpoint.size !== proof.treeSize) fail("the proof's checkpoint is for another tree size");
  const entry = JSON.parse(proof.entry) as CertificateEntry;
  if (entry.kind !== "certificate" || entry.serial !== wanted) fail(`leaf ${proof.leafIndex} is not certificate ${wanted}`);
  if (held && !Buffer.from(entry.certificate, "base64").equals(held.raw)) fail("the logged certificate is not the one held");
  checkCertificateEntry(entry, `leaf ${proof.leafIndex}`);
  const hashes = proof.hashes.map((hash) => Buffer.from(hash, "base64"));
  if (!verifyInclusion(leafHash(Buffer.from(proof.entry, "utf8")), proof.leafIndex, proof.treeSize, hashes, proofCheckpoint.rootHash)) {
    fail(`certificate ${wanted} is not included in the signed tree of ${proof.treeSize} leaves (its row or the log was altered)`);
  }
  return `certificate ${wanted} is leaf ${proof.leafIndex} of the signed tree of ${proof.treeSize} leaves`;
}

async function commandConsistency(connection: Connection, key: ParsedVerifierKey, oldFile: string | undefined, newFile: string | undefined): Promise<string> {
  if (!oldFile) throw new UsageError("consistency needs --old FILE");
  const older = openCheckpoint(readFileSync(oldFile, "utf8"), key);
  const newer = newFile ? openCheckpoint(readFileSync(newFile, "utf8"), key) : (await latestCheckpoint(connection, key)).checkpoint;
  await proveConsistent(connection, older, newer);
  return `the tree of ${newer.size} leaves extends the tree of ${older.size} leaves`;
}

async function commandAudit(connection: Connection, key: ParsedVerifierKey): Promise<string> {
  const { checkpoint } = await latestCheckpoint(connection, key);
  const answer = await get(connection, `/log/entries?start=0&end=${checkpoint.size}`);
  if (answer.status !== 200) throw new UsageError(`/log/entries answered HTTP ${answer.status}: ${answer.body.toString("utf8").slice(0, 200)}`);
  const text = answer.body.toString("utf8");
  const lines = text.length === 0 ? [] : text.slice(0, -1).split("\n");
  if (lines.length !== checkpoint.size) fail(`the log served ${lines.length} leaves for a checkpoint of ${checkpoint.size}`);
  const tree = new InMemorySubtreeHashes();
  const logged = new Map<string, CertificateEntry>();
  const revocations = new Map<string, { occurredAt: string; reason: unknown }>();
  lines.forEach((line, index) => {
    if (line === "null") fail(`leaf ${index}: its row has been deleted`);
    const entry = JSON.parse(line) as { kind: string; type?: string; subject?: string; occurredAt?: string; details?: string | null };
    if (entry.kind === "certificate") {
      checkCertificateEntry(entry as CertificateEntry, `leaf ${index}`);
      logged.set((entry as CertificateEntry).serial, entry as CertificateEntry);
    }
    if (entry.kind === "audit" && entry.type === "certificate.revoked" && entry.subject && entry.occurredAt) {
      revocations.set(entry.subject, { occurredAt: entry.occurredAt, reason: entry.details ? (JSON.parse(entry.details) as { reason?: unknown }).reason : undefined });
    }
    tree.append(leafHash(Buffer.from(line, "utf8")));
  });
  const root = treeRoot(tree, checkpoint.size);
  if (!root.equals(checkpoint.rootHash)) {
    fail(`the leaves served do not hash to the signed root of ${checkpoint.size} leaves: a stored row was edited`);
  }
  const checked = await crossCheckHistory(connection, logged, revocations);
  return `all ${checkpoint.size} leaves (${logged.size} certificates) hash to the signed root; the history export agrees with them (${checked} rows)`;
}

interface ExportedCertificate extends Omit<CertificateEntry, "kind"> {
  issuerId: string;
  issuedAt: string;
  requester: string;
  status: string;
  revokedAt: string | null;
  revocationReason: string | null;
}

/**
 * The current rows (the history export) against the signed leaves: a row's identity, validity, requester and
 * DER must be what was logged, and a revocation the log recorded must still be in the row, with its time and
 * reason (an attacker with the database would rather un-revoke a certificate than edit one). Rows stored after
 * the checkpoint are not in the tree yet and are skipped.
 */
async function crossCheckHistory(
  connection: Connection,
  logged: ReadonlyMap<string, CertificateEntry>,
  revocations: ReadonlyMap<string, { occurredAt: string; reason: unknown }>,
): Promise<number> {
  const answer = await get(connection, "/export/certificates?format=ndjson");
  if (answer.status !== 200) throw new UsageError(`/export/certificates answered HTTP ${answer.status}`);
  const rows = answer.body.toString("utf8").split("\n").filter(Boolean).map((line) => JSON.parse(line) as ExportedCertificate);
  const exported = new Set(rows.map((row) => row.serial));
  for (const serial of logged.keys()) if (!exported.has(serial)) fail(`certificate ${serial} is in the log but missing from the history`);
  let checked = 0;
  for (const row of rows) {
    const entry = logged.get(row.serial);
    if (!entry) continue;
    checked++;
    const fields = ["spiffeId", "notBefore", "notAfter", "fingerprintSha256", "certificate"] as const;
    const differing: string[] = fields.filter((field) => row[field] !== entry[field]);
    if (JSON.stringify(row.dnsNames) !== JSON.stringify(entry.dnsNames)) differing.push("dnsNames");
    const full = entry as unknown as Record<string, unknown>;
    for (const field of ["issuerId", "issuedAt", "requester"] as const) if (row[field] !== full[field]) differing.push(field);
    if (differing.length > 0) fail(`certificate ${row.serial}: the stored row differs from its logged entry (${differing.join(", ")})`);
    const revocation = revocations.get(row.serial);
    if (revocation && (row.status !== "REVOKED" || row.revokedAt !== revocation.occurredAt || row.revocationReason !== revocation.reason)) {
      fail(`certificate ${row.serial} was revoked at ${revocation.occurredAt} according to the log, but its row says ${row.status}`);
    }
  }
  return checked;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      url: { type: "string" },
      ca: { type: "string" },
      vkey: { type: "string" },
      "vkey-file": { type: "string" },
      "api-key-file": { type: "string" },
      pin: { type: "string" },
      serial: { type: "string" },
      cert: { type: "string" },
      old: { type: "string" },
      new: { type: "string" },
    },
  });
  const vkeyText = values.vkey ?? (values["vkey-file"] ? readFileSync(values["vkey-file"], "utf8").trim() : undefined);
  const apiKey = process.env.ANCHORAGE_API_KEY ?? (values["api-key-file"] ? readFileSync(values["api-key-file"], "utf8").trim() : undefined);
  if (!values.url || !vkeyText || !apiKey || positionals.length !== 1) {
    throw new UsageError("usage: verify-log --url URL [--ca FILE] (--vkey VKEY | --vkey-file FILE) [--api-key-file FILE] checkpoint|inclusion|consistency|audit");
  }
  const key = parseVerifierKey(vkeyText);
  const connection: Connection = { url: new URL(values.url), ca: values.ca ? readFileSync(values.ca, "utf8") : undefined, apiKey };
  const command = positionals[0];
  const message =
    command === "checkpoint"
      ? await commandCheckpoint(connection, key, values.pin)
      : command === "inclusion"
        ? await commandInclusion(connection, key, values.serial, values.cert)
        : command === "consistency"
          ? await commandConsistency(connection, key, values.old, values.new)
          : command === "audit"
            ? await commandAudit(connection, key)
            : (() => {
                throw new UsageError(`unknown command ${command}`);
              })();
  console.log(`OK: ${message}`);
}

main().catch((error: unknown) => {
  if (error instanceof VerificationFailure) {
    console.error(`LOG VERIFICATION FAILED: ${error.message}`);
    process.exit(1);
  }
  console.error(`verify-log: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(2);
});
