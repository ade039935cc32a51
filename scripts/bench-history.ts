/**
 * Issuance history at scale: seeds a fresh SQLite file (the service's own migrations) with N issued
 * certificates spread over 30 days, then times the auditor queries through the same store code the service
 * uses — a filtered first page of 50, and separately the totalCount of the same filter — and a full export.
 *
 *   npx tsx scripts/bench-history.ts [--rows 1000000] [--repeat 30]
 *
 * Rows look like a mesh's: 2,000 workloads in 50 namespaces, 1-hour certificates renewed through the month,
 * one or two DNS names each, 1% revoked, two intermediates (a rotation half-way). The DER column holds
 * random bytes of a typical certificate's size: the queries never parse it. Everything lives in a temporary
 * folder, removed at the end.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { CertificateFilter } from "../src/ca/model.js";
import { SqliteAuditEventRepository } from "../src/store/audit-event-repository.js";
import { SqliteCertificateStore } from "../src/store/certificate-store.js";
import { openDatabase } from "../src/store/database.js";

const { values } = parseArgs({ options: { rows: { type: "string", default: "1000000" }, repeat: { type: "string", default: "30" } } });
const rows = Number(values.rows);
const repeat = Number(values.repeat);
const HOUR = 3_600_000;
const NAMESPACES = 50;
const WORKLOADS = 2000;

const dir = mkdtempSync(join(tmpdir(), "anchorage-bench-history-"));
try {
  const db = openDatabase(join(dir, "anchorage.db"));
  const now = Date.now();
  const start = now - 30 * 24 * HOUR;
  const issuers = ["aa".repeat(20), "bb".repeat(20)];
  for (const id of issuers) {
    db.prepare(
      "INSERT INTO authorities (id, kind, status, subject, certificate_der, key_label, not_before, not_after, created_at) VALUES (?, 'intermediate', ?, 'CN=bench', x'00', ?, ?, ?, ?)",
    ).run(id, id === issuers[1] ? "active" : "published", id, start, now + 365 * 24 * HOUR, start);
  }
  const workload = (index: number) => {
    const namespace = `ns${index % NAMESPACES}`;
    return { spiffeId: `spiffe://anchorage.test/ns/${namespace}/sa/svc${index}`, dns: [`svc${index}.${namespace}.svc`, ...(index % 3 === 0 ? [`shared.${namespace}.svc`] : [])] };
  };

  const seedStart = performance.now();
  const insert = db.prepare(
    `INSERT INTO certificates (serial, authority_id, state, spiffe_id, dns_names, not_before, not_after, key_type, requester, tbs_der, der,
       fingerprint_sha256, prepared_at, issued_at, revoked_at, revocation_reason, issued_seq)
     VALUES (?, ?, 'issued', ?, ?, ?, ?, 'P-256', ?, x'00', ?, ?, ?, ?, ?, ?, ?)`,
  );
  const insertName = db.prepare("INSERT INTO certificate_dns_names (name, issued_seq) VALUES (?, ?)");
  const der = randomBytes(620);
  const chunk = 50_000;
  for (let from = 0; from < rows; from += chunk) {
    db.transaction(() => {
      for (let seq = from + 1; seq <= Math.min(rows, from + chunk); seq++) {
        const issuedAt = start + Math.floor(((seq - 1) / rows) * 30 * 24 * HOUR);
        const index = seq % WORKLOADS;
        const { spiffeId, dns } = workload(index);
        const revoked = seq % 100 === 0;
        insert.run(
          randomBytes(16).toString("hex"),
          issuedAt < start + 15 * 24 * HOUR ? issuers[0] : issuers[1],
          spiffeId,
          JSON.stringify(dns),
          issuedAt - 300_000,
          issuedAt + HOUR,
          `token:tok_${index}`,
          der,
          randomBytes(32).toString("hex"),
          issuedAt,
          issuedAt,
          revoked ? issuedAt + 60_000 : null,
          revoked ? "keyCompromise" : null,
          seq,
        );
        for (const name of dns) insertName.run(name, seq);
      }
    })();
  }
  db.exec("ANALYZE");
  const seedSeconds = (performance.now() - seedStart) / 1000;

  const store = new SqliteCertificateStore(db, new SqliteAuditEventRepository(db));
  const at = new Date(now);
  const day = (days: number) => new Date(now - days * 24 * HOUR);
  const sample = workload(1234);
  const someSerial = db.prepare("SELECT serial FROM certificates WHERE issued_seq = ?").pluck().get(Math.floor(rows / 2)) as string;
  const filters: [string, CertificateFilter][] = [
    ["no filter", {}],
    ["spiffeId (exact)", { spiffeId: sample.spiffeId }],
    ["spiffeId prefix (one namespace)", { spiffeIdPrefix: "spiffe://anchorage.test/ns/ns7/" }],
    ["spiffeId prefix (whole trust domain)", { spiffeIdPrefix: "spiffe://anchorage.test/" }],
    ["dnsName (one workload)", { dnsName: sample.dns[0] as string }],
    ["dnsName (shared by a namespace)", { dnsName: "shared.ns3.svc" }],
    ["serial", { serial: someSerial }],
    ["issuer (rotated-out intermediate)", { authorityId: issuers[0] }],
    ["requester", { requester: "token:tok_42" }],
    ["status VALID", { status: "VALID" }],
    ["status REVOKED", { status: "REVOKED" }],
    ["status EXPIRED", { status: "EXPIRED" }],
    ["issued in the last day", { issuedAfter: day(1) }],
    ["issued on day 10 of 30", { issuedAfter: day(20), issuedBefore: day(19) }],
    ["expiring in the next 30 minutes", { expiresAfter: at, expiresBefore: new Date(now + HOUR / 2) }],
    ["namespace prefix + REVOKED", { spiffeIdPrefix: "spiffe://anchorage.test/ns/ns7/", status: "REVOKED" }],
    ["spiffeId + issued in the last week", { spiffeId: sample.spiffeId, issuedAfter: day(7) }],
  ];

  const time = (work: () => unknown): { p50: number; p99: number; max: number } => {
    const samples: number[] = [];
    for (let index = 0; index < repeat; index++) {
      const begin = performance.now();
      work();
      samples.push(performance.now() - begin);
    }
    samples.sort((a, b) => a - b);
    const pick = (q: number) => samples[Math.min(samples.length - 1, Math.ceil(q * samples.length) - 1)] as number;
    return { p50: pick(0.5), p99: pick(0.99), max: samples.at(-1) as number };
  };
  const ms = (value: number) => value.toFixed(2).padStart(8);

  console.log(`seeded ${rows.toLocaleString("en")} certificates in ${seedSeconds.toFixed(1)} s (${repeat} runs per query)`);
  console.log(`${"filter".padEnd(40)} ${"page p50".padStart(9)} ${"page p99".padStart(9)} ${"page max".padStart(9)}  ${"rows".padStart(4)}  ${"count p50".padStart(9)} ${"count p99".padStart(9)} ${"total".padStart(9)}`);
  for (const [name, filter] of filters) {
    let page = store.list(filter, 50, undefined, at);
    const pageTimes = time(() => (page = store.list(filter, 50, undefined, at)));
    let total = 0;
    // The SQLite store counts synchronously (only a server-backed store answers with a promise).
    const countTimes = time(() => (total = page.countTotal() as number));
    console.log(
      `${name.padEnd(40)} ${ms(pageTimes.p50)} ${ms(pageTimes.p99)} ${ms(pageTimes.max)}  ${String(page.items.length).padStart(4)}  ${ms(countTimes.p50)} ${ms(countTimes.p99)} ${String(total).padStart(9)}`,
    );
  }
  // A deep page: the cursor is an index seek, so page 10,000 costs what page 1 does.
  const deep = store.list({}, 50, undefined, at);
  let cursor = deep.cursors.at(-1);
  for (let index = 0; index < 3; index++) cursor = store.list({ spiffeIdPrefix: "spiffe://anchorage.test/" }, 50, cursor, at).cursors.at(-1);
  const middle = Buffer.from(`c:${Math.floor(rows / 2)}`).toString("base64url");
  const deepTimes = time(() => store.list({}, 50, middle, at));
  console.log(`${"page after row n/2 (no filter)".padEnd(40)} ${ms(deepTimes.p50)} ${ms(deepTimes.p99)} ${ms(deepTimes.max)}`);

  const rssBefore = process.memoryUsage().rss;
  let peakRss = rssBefore;
  const exportStart = performance.now();
  let exported = 0;
  for (const record of store.iterate({}, at)) {
    exported += record.der.length > 0 ? 1 : 0;
    if (exported % 100_000 === 0) peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }
  const exportSeconds = (performance.now() - exportStart) / 1000;
  console.log(
    `export: ${exported.toLocaleString("en")} rows in ${exportSeconds.toFixed(1)} s (${Math.round(exported / exportSeconds).toLocaleString("en")} rows/s), rss ${Math.round(rssBefore / 1048576)} -> ${Math.round(peakRss / 1048576)} MB`,
  );
  db.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
