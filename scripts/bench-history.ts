/**
 * Issuance history at scale: seeds a fresh database with N issued certificates spread over 30 days, then
 * times the auditor queries through the same store code the service uses — a filtered first page of 50, and
 * separately the totalCount of the same filter — and a full export.
 *
 *   npx tsx scripts/bench-history.ts [--rows 1000000] [--repeat 30]
 *   npx tsx scripts/bench-history.ts --engine postgres --url postgres://user@host:5432/postgres [--rows 1000000]
 *
 * SQLite (the default): a temporary file with the service's own migrations, removed at the end. PostgreSQL: a
 * randomly named database created on the server at --url (with the PostgreSQL store's migrations) and dropped
 * at the end; the plan of each filter's first-page query (EXPLAIN ANALYZE) is printed after the table.
 *
 * Rows look like a mesh's: 2,000 workloads in 50 namespaces, 1-hour certificates renewed through the month,
 * one or two DNS names each, 1% revoked, two intermediates (a rotation half-way). The DER column holds
 * random bytes of a typical certificate's size: the queries never parse it.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import type { CertificateFilter, CertificateRecord, Page } from "../src/ca/model.js";
import { SqliteAuditEventRepository } from "../src/store/audit-event-repository.js";
import { SqliteCertificateStore } from "../src/store/certificate-store.js";
import { openDatabase } from "../src/store/database.js";
import { PostgresCertificateStore } from "../src/store/postgres/certificate-store.js";
import { PostgresDatabase } from "../src/store/postgres/database.js";

const { values } = parseArgs({
  options: {
    rows: { type: "string", default: "1000000" },
    repeat: { type: "string", default: "30" },
    engine: { type: "string", default: "sqlite" },
    url: { type: "string" },
  },
});
const rows = Number(values.rows);
const repeat = Number(values.repeat);
const HOUR = 3_600_000;
const NAMESPACES = 50;
const WORKLOADS = 2000;
/** Rows per seeding transaction. */
const CHUNK = 50_000;

const now = Date.now();
const start = now - 30 * 24 * HOUR;
const issuers = ["aa".repeat(20), "bb".repeat(20)];
const der = randomBytes(620);

const workload = (index: number) => {
  const namespace = `ns${index % NAMESPACES}`;
  return { spiffeId: `spiffe://anchorage.test/ns/${namespace}/sa/svc${index}`, dns: [`svc${index}.${namespace}.svc`, ...(index % 3 === 0 ? [`shared.${namespace}.svc`] : [])] };
};

/** Certificate `seq` (1 to rows) of the seeded history: both engines store exactly these values. */
function seededCertificate(seq: number) {
  const issuedAt = start + Math.floor(((seq - 1) / rows) * 30 * 24 * HOUR);
  const index = seq % WORKLOADS;
  const { spiffeId, dns } = workload(index);
  const revoked = seq % 100 === 0;
  return {
    seq,
    serial: randomBytes(16).toString("hex"),
    authorityId: (issuedAt < start + 15 * 24 * HOUR ? issuers[0] : issuers[1]) as string,
    spiffeId,
    dns,
    notBefore: issuedAt - 300_000,
    notAfter: issuedAt + HOUR,
    requester: `token:tok_${index}`,
    fingerprint: randomBytes(32).toString("hex"),
    issuedAt,
    revokedAt: revoked ? issuedAt + 60_000 : null,
    revocationReason: revoked ? "keyCompromise" : null,
  };
}

interface HistoryStore {
  list(filter: CertificateFilter, first: number, after: string | undefined, now: Date): Promise<Page<CertificateRecord>> | Page<CertificateRecord>;
  iterate(filter: CertificateFilter, now: Date): AsyncIterable<CertificateRecord> | Iterable<CertificateRecord>;
}

interface Bench {
  readonly store: HistoryStore;
  readonly seedSeconds: number;
  serialAt(seq: number): Promise<string>;
  /** The plan of the statement `store.list(filter, …)` runs, one line; only where the engine can say. */
  firstPagePlan?(filter: CertificateFilter): Promise<string>;
  close(): Promise<void>;
}

function openSqliteBench(): Bench {
  const dir = mkdtempSync(join(tmpdir(), "anchorage-bench-history-"));
  const db = openDatabase(join(dir, "anchorage.db"));
  for (const id of issuers) {
    db.prepare(
      "INSERT INTO authorities (id, kind, status, subject, certificate_der, key_label, not_before, not_after, created_at) VALUES (?, 'intermediate', ?, 'CN=bench', x'00', ?, ?, ?, ?)",
    ).run(id, id === issuers[1] ? "active" : "published", id, start, now + 365 * 24 * HOUR, start);
  }
  const seedStart = performance.now();
  const insert = db.prepare(
    `INSERT INTO certificates (serial, authority_id, state, spiffe_id, dns_names, not_before, not_after, key_type, requester, tbs_der, der,
       fingerprint_sha256, prepared_at, issued_at, revoked_at, revocation_reason, issued_seq)
     VALUES (?, ?, 'issued', ?, ?, ?, ?, 'P-256', ?, x'00', ?, ?, ?, ?, ?, ?, ?)`,
  );
  const insertName = db.prepare("INSERT INTO certificate_dns_names (name, issued_seq) VALUES (?, ?)");
  for (let from = 0; from < rows; from += CHUNK) {
    db.transaction(() => {
      for (let seq = from + 1; seq <= Math.min(rows, from + CHUNK); seq++) {
        const row = seededCertificate(seq);
        insert.run(
          row.serial,
          row.authorityId,
          row.spiffeId,
          JSON.stringify(row.dns),
          row.notBefore,
          row.notAfter,
          row.requester,
          der,
          row.fingerprint,
          row.issuedAt,
          row.issuedAt,
          row.revokedAt,
          row.revocationReason,
          seq,
        );
        for (const name of row.dns) insertName.run(name, seq);
      }
    })();
  }
  db.exec("ANALYZE");
  const seedSeconds = (performance.now() - seedStart) / 1000;
  return {
    store: new SqliteCertificateStore(db, new SqliteAuditEventRepository(db)),
    seedSeconds,
    serialAt: async (seq) => db.prepare("SELECT serial FROM certificates WHERE issued_seq = ?").pluck().get(seq) as string,
    async close() {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function withServerClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

interface PlanNode {
  "Node Type": string;
  "Index Name"?: string;
  "Relation Name"?: string;
  "Shared Hit Blocks"?: number;
  "Shared Read Blocks"?: number;
  Plans?: PlanNode[];
}

/** The plan's nodes from the top down to the first scan or join, e.g. "Limit > Index Scan certificates_spiffe_seq". */
function planSummary(plan: PlanNode): string {
  const describe = (node: PlanNode) =>
    node["Index Name"] ? `${node["Node Type"]} ${node["Index Name"]}` : node["Relation Name"] ? `${node["Node Type"]} ${node["Relation Name"]}` : node["Node Type"];
  const chain: string[] = [];
  let node: PlanNode | undefined = plan;
  while (node) {
    const children: PlanNode[] = node.Plans ?? [];
    // A join or a node with subplans (the issued_at → issued_seq lookups) shows all its inputs.
    if (children.length > 1) {
      chain.push(`${describe(node)} (${children.map((child) => planSummary(child)).join("; ")})`);
      break;
    }
    chain.push(describe(node));
    node = children[0];
  }
  return chain.join(" > ");
}

async function openPostgresBench(serverUrl: string): Promise<Bench> {
  const name = `anchorage_bench_${randomBytes(8).toString("hex")}`;
  await withServerClient(serverUrl, (admin) => admin.query(`CREATE DATABASE ${name}`));
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const drop = () => withServerClient(serverUrl, (admin) => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  try {
    // The store's own handle (pool, timeouts, migrations) for the timed queries; a plain client without the
    // service's statement timeout for seeding.
    const db = await PostgresDatabase.open(url.toString());
    const seeder = new pg.Client({ connectionString: url.toString() });
    await seeder.connect();
    for (const id of issuers) {
      await seeder.query(
        `INSERT INTO authorities (id, kind, status, subject, certificate_der, key_label, not_before, not_after, created_at)
         VALUES ($1, 'intermediate', $2, 'CN=bench', '\\x00'::bytea, $1, $3, $4, $3)`,
        [id, id === issuers[1] ? "active" : "published", start, now + 365 * 24 * HOUR],
      );
    }
    const seedStart = performance.now();
    // As a completion leaves them: state issued, issued_seq set, and one certificate_dns_names row per name,
    // taken from the dns_names JSONB in the same transaction by the statement the store's complete() uses.
    // Rows go in as arrays unnested server-side: one statement per 10,000 rows instead of one per row.
    const statementRows = 10_000;
    for (let from = 0; from < rows; from += CHUNK) {
      const to = Math.min(rows, from + CHUNK);
      await seeder.query("BEGIN");
      for (let batchFrom = from; batchFrom < to; batchFrom += statementRows) {
        const batch = Array.from({ length: Math.min(to, batchFrom + statementRows) - batchFrom }, (_, offset) => seededCertificate(batchFrom + offset + 1));
        await seeder.query(
          `INSERT INTO certificates (serial, authority_id, state, spiffe_id, dns_names, not_before, not_after, key_type, requester, tbs_der, der,
             fingerprint_sha256, prepared_at, issued_at, revoked_at, revocation_reason, issued_seq)
           SELECT serial, authority_id, 'issued', spiffe_id, dns_names, not_before, not_after, 'P-256', requester, '\\x00'::bytea, $13::bytea,
             fingerprint_sha256, issued_at, issued_at, revoked_at, revocation_reason, issued_seq
           FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::JSONB[], $5::BIGINT[], $6::BIGINT[], $7::TEXT[], $8::TEXT[], $9::BIGINT[],
             $10::BIGINT[], $11::TEXT[], $12::BIGINT[])
             AS seeded (serial, authority_id, spiffe_id, dns_names, not_before, not_after, requester, fingerprint_sha256, issued_at,
               revoked_at, revocation_reason, issued_seq)`,
          [
            batch.map((row) => row.serial),
            batch.map((row) => row.authorityId),
            batch.map((row) => row.spiffeId),
            batch.map((row) => JSON.stringify(row.dns)),
            batch.map((row) => row.notBefore),
            batch.map((row) => row.notAfter),
            batch.map((row) => row.requester),
            batch.map((row) => row.fingerprint),
            batch.map((row) => row.issuedAt),
            batch.map((row) => row.revokedAt),
            batch.map((row) => row.revocationReason),
            batch.map((row) => row.seq),
            der,
          ],
        );
      }
      await seeder.query(
        `INSERT INTO certificate_dns_names (name, issued_seq)
         SELECT names.name, certificates.issued_seq FROM certificates, jsonb_array_elements_text(certificates.dns_names) AS names (name)
         WHERE certificates.issued_seq > $1 AND certificates.issued_seq <= $2`,
        [from, to],
      );
      await seeder.query("COMMIT");
    }
    // VACUUM as well as ANALYZE: autovacuum would otherwise start on the fresh million rows part-way through
    // the timings; vacuumed, the table is in the state autovacuum keeps a long-lived one in (visibility map
    // set, so counts can scan indexes only).
    await seeder.query("VACUUM (ANALYZE) certificates");
    await seeder.query("VACUUM (ANALYZE) certificate_dns_names");
    const seedSeconds = (performance.now() - seedStart) / 1000;
    await seeder.end();

    const store = new PostgresCertificateStore(db);
    // Records the statements the store sends, so that the plan printed is that of the very statement timed.
    let lastStatement: { sql: string; parameters: readonly unknown[] } | undefined;
    const tracedQuery = db.query.bind(db);
    db.query = ((sql: string, parameters: readonly unknown[] = []) => {
      lastStatement = { sql, parameters };
      return tracedQuery(sql, parameters);
    }) as typeof db.query;
    return {
      store,
      seedSeconds,
      serialAt: async (seq) => (await tracedQuery<{ serial: string }>("SELECT serial FROM certificates WHERE issued_seq = $1", [seq])).rows[0]?.serial as string,
      async firstPagePlan(filter) {
        await store.list(filter, 50, undefined, new Date(now));
        const statement = lastStatement as { sql: string; parameters: readonly unknown[] };
        const { rows: explained } = await tracedQuery<{ "QUERY PLAN": [{ Plan: PlanNode; "Execution Time": number }] }>(
          `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${statement.sql}`,
          statement.parameters,
        );
        const result = explained[0]?.["QUERY PLAN"][0];
        if (!result) return "?";
        const buffers = `${result.Plan["Shared Hit Blocks"] ?? 0} hit, ${result.Plan["Shared Read Blocks"] ?? 0} read`;
        return `${planSummary(result.Plan)}  [${result["Execution Time"].toFixed(2)} ms, buffers ${buffers}]`;
      },
      async close() {
        await db.close();
        await drop();
      },
    };
  } catch (error) {
    await drop();
    throw error;
  }
}

let bench: Bench;
if (values.engine === "sqlite") bench = openSqliteBench();
else if (values.engine === "postgres") {
  if (!values.url) throw new Error("--engine postgres needs --url postgres://user@host:port/database (a database to connect to for creating the scratch one)");
  bench = await openPostgresBench(values.url);
} else throw new Error(`--engine is sqlite or postgres, not ${values.engine}`);

try {
  const { store } = bench;
  const at = new Date(now);
  const day = (days: number) => new Date(now - days * 24 * HOUR);
  const sample = workload(1234);
  const someSerial = await bench.serialAt(Math.floor(rows / 2));
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

  const time = async (work: () => unknown): Promise<{ p50: number; p99: number; max: number }> => {
    const samples: number[] = [];
    for (let index = 0; index < repeat; index++) {
      const begin = performance.now();
      await work();
      samples.push(performance.now() - begin);
    }
    samples.sort((a, b) => a - b);
    const pick = (q: number) => samples[Math.min(samples.length - 1, Math.ceil(q * samples.length) - 1)] as number;
    return { p50: pick(0.5), p99: pick(0.99), max: samples.at(-1) as number };
  };
  const ms = (value: number) => value.toFixed(2).padStart(8);

  console.log(`${values.engine}: seeded ${rows.toLocaleString("en")} certificates in ${bench.seedSeconds.toFixed(1)} s (${repeat} runs per query)`);
  console.log(`${"filter".padEnd(40)} ${"page p50".padStart(9)} ${"page p99".padStart(9)} ${"page max".padStart(9)}  ${"rows".padStart(4)}  ${"count p50".padStart(9)} ${"count p99".padStart(9)} ${"total".padStart(9)}`);
  for (const [name, filter] of filters) {
    let page = await store.list(filter, 50, undefined, at);
    const pageTimes = await time(async () => (page = await store.list(filter, 50, undefined, at)));
    let total = 0;
    const countTimes = await time(async () => (total = await page.countTotal()));
    console.log(
      `${name.padEnd(40)} ${ms(pageTimes.p50)} ${ms(pageTimes.p99)} ${ms(pageTimes.max)}  ${String(page.items.length).padStart(4)}  ${ms(countTimes.p50)} ${ms(countTimes.p99)} ${String(total).padStart(9)}`,
    );
  }
  // A deep page: the cursor is an index seek, so page 10,000 costs what page 1 does.
  const deep = await store.list({}, 50, undefined, at);
  let cursor = deep.cursors.at(-1);
  for (let index = 0; index < 3; index++) cursor = (await store.list({ spiffeIdPrefix: "spiffe://anchorage.test/" }, 50, cursor, at)).cursors.at(-1);
  const middle = Buffer.from(`c:${Math.floor(rows / 2)}`).toString("base64url");
  const deepTimes = await time(() => store.list({}, 50, middle, at));
  console.log(`${"page after row n/2 (no filter)".padEnd(40)} ${ms(deepTimes.p50)} ${ms(deepTimes.p99)} ${ms(deepTimes.max)}`);

  if (bench.firstPagePlan) {
    console.log("first-page plans (EXPLAIN ANALYZE, BUFFERS):");
    for (const [name, filter] of filters) console.log(`${name.padEnd(40)} ${await bench.firstPagePlan(filter)}`);
  }

  const rssBefore = process.memoryUsage().rss;
  let peakRss = rssBefore;
  const exportStart = performance.now();
  let exported = 0;
  for await (const record of store.iterate({}, at)) {
    exported += record.der.length > 0 ? 1 : 0;
    if (exported % 100_000 === 0) peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }
  const exportSeconds = (performance.now() - exportStart) / 1000;
  console.log(
    `export: ${exported.toLocaleString("en")} rows in ${exportSeconds.toFixed(1)} s (${Math.round(exported / exportSeconds).toLocaleString("en")} rows/s), rss ${Math.round(rssBefore / 1048576)} -> ${Math.round(peakRss / 1048576)} MB`,
  );
} finally {
  await bench.close();
}
