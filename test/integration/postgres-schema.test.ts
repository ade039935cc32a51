/**
 * The PostgreSQL schema against a real server (ANCHORAGE_TEST_POSTGRES_URL, a scratch database per file): its
 * migrations apply once however many nodes start together, it has the tables, columns and indexes of the
 * SQLite schema it mirrors (SQLite migrations up to 13), and its triggers behave as SQLite's do.
 */
import Database from "better-sqlite3";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuthorityRecord } from "../../src/ca/model.js";
import { SqliteAuthorityRepository } from "../../src/store/authority-repository.js";
import { openDatabase } from "../../src/store/database.js";
import { MIGRATIONS } from "../../src/store/migrations.js";
import { migratePostgres, POSTGRES_MIGRATIONS } from "../../src/store/postgres/migrations.js";
import { createScratchDatabase, postgresSkipReason, requirePostgres, type ScratchDatabase } from "../support/postgres.js";
import { placeholderAuthority } from "../support/scratch-store.js";

const serverUrl = requirePostgres();

/** The SQLite schema that PostgreSQL migration 1 expresses. */
const MIRRORED_SQLITE_VERSION = 13;

/**
 * Indexes the SQLite schema does without: SQLite's planner finds a SPIFFE ID prefix's first page by walking
 * issued_seq order, PostgreSQL's (which misjudges the prefix's selectivity) only with the prefix in the index.
 */
const POSTGRES_ONLY_INDEXES = ["certificates(issued_seq,spiffe_id) partial certificates_seq_spiffe"];

/**
 * Every index besides primary keys: `table(columns)`, UNIQUE and partial (WHERE) flags, and its name, or
 * "constraint" for the index behind a UNIQUE column or table constraint (whose name each database makes up).
 */
const EXPECTED_INDEXES = [
  "api_keys(key_hash) unique constraint",
  "audit_events(actor,sequence) audit_events_actor",
  "audit_events(occurred_at) audit_events_occurred_at",
  "audit_events(subject,sequence) audit_events_subject",
  "audit_events(type,sequence) audit_events_type",
  "authorities(kind) unique partial authorities_one_active_intermediate",
  "certificates(authority_id) certificates_authority",
  "certificates(authority_id,issued_seq) certificates_authority_seq",
  "certificates(authority_id,revoked_at) partial certificates_revoked",
  "certificates(authority_id,revoked_at,serial) partial certificates_crl_entries",
  "certificates(issued_at,issued_seq) certificates_issued_at",
  "certificates(issued_seq) unique partial certificates_issued_seq",
  "certificates(issued_seq,spiffe_id) partial certificates_revoked_seq",
  "certificates(not_after,revoked_at,issued_seq) certificates_not_after",
  "certificates(predecessor_serial) unique partial certificates_successor",
  "certificates(requester,issued_seq) certificates_requester_seq",
  "certificates(spiffe_id,issued_seq) certificates_spiffe_seq",
  "enrollment_tokens(token_hash) unique constraint",
  "jwt_uses(expires_at) jwt_uses_expires_at",
  "log_leaves(kind,ref) unique constraint",
  "ocsp_responses(next_update) ocsp_responses_next_update",
  "ocsp_signers(authority_id,not_after) ocsp_signers_authority",
  "registrations(jwt_issuer,jwt_subject) unique partial registrations_jwt",
  "registrations(spiffe_id) registrations_spiffe_id",
];

const describeIndex = (table: string, columns: readonly string[], unique: boolean, partial: boolean, name: string): string =>
  `${table}(${columns.join(",")})${unique ? " unique" : ""}${partial ? " partial" : ""} ${name}`;

/** A SQLite database with the migrations up to the mirrored version, as a node of that version had it. */
function mirroredSqlite(): Database.Database {
  const db = new Database(":memory:");
  for (const migration of MIGRATIONS.filter((candidate) => candidate.version <= MIRRORED_SQLITE_VERSION)) db.exec(migration.sql);
  return db;
}

function sqliteTables(db: Database.Database): string[] {
  return db
    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
    .pluck()
    .all() as string[];
}

function sqliteColumns(db: Database.Database): Record<string, string[]> {
  return Object.fromEntries(
    sqliteTables(db).map((table) => [table, (db.pragma(`table_info(${table})`) as { name: string }[]).map((column) => column.name)]),
  );
}

function sqliteIndexes(db: Database.Database): string[] {
  return sqliteTables(db)
    .flatMap((table) =>
      (db.pragma(`index_list(${table})`) as { name: string; unique: number; origin: string; partial: number }[])
        .filter((index) => index.origin !== "pk")
        .map((index) =>
          describeIndex(
            table,
            (db.pragma(`index_info(${index.name})`) as { name: string }[]).map((column) => column.name),
            index.unique === 1,
            index.partial === 1,
            index.origin === "u" ? "constraint" : index.name,
          ),
        ),
    )
    .sort();
}

async function postgresColumns(client: pg.Client): Promise<Record<string, string[]>> {
  const { rows } = await client.query<{ table_name: string; column_name: string }>(
    `SELECT table_name, column_name FROM information_schema.columns
     WHERE table_schema = 'public' AND table_name <> 'schema_migrations' ORDER BY table_name, ordinal_position`,
  );
  const columns: Record<string, string[]> = {};
  for (const row of rows) (columns[row.table_name] ??= []).push(row.column_name);
  return columns;
}

async function postgresIndexes(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ table_name: string; index_name: string; columns: string[]; is_unique: boolean; is_partial: boolean; backs_constraint: boolean }>(
    `SELECT t.relname AS table_name, i.relname AS index_name, ix.indisunique AS is_unique, ix.indpred IS NOT NULL AS is_partial,
            ARRAY(SELECT a.attname::text FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, position)
                  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.position) AS columns,
            EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid AND c.contype = 'u') AS backs_constraint
     FROM pg_index ix
     JOIN pg_class i ON i.oid = ix.indexrelid
     JOIN pg_class t ON t.oid = ix.indrelid
     JOIN pg_namespace n ON n.oid = t.relnamespace
     WHERE n.nspname = 'public' AND NOT ix.indisprimary AND t.relname <> 'schema_migrations'`,
  );
  return rows
    .map((row) => describeIndex(row.table_name, row.columns, row.is_unique, row.is_partial, row.backs_constraint ? "constraint" : row.index_name))
    .sort();
}

const errorOf = async (work: Promise<unknown>): Promise<string> => {
  try {
    await work;
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error("expected the statement to be refused");
};

describe.skipIf(serverUrl === undefined)(`PostgreSQL schema${serverUrl === undefined ? ` (skipped: ${postgresSkipReason})` : ""}`, () => {
  let database: ScratchDatabase;
  let client: pg.Client;

  beforeAll(async () => {
    database = await createScratchDatabase(serverUrl as string);
    client = await database.connect();
  });

  afterAll(async () => {
    await database?.drop();
  });

  it("applies its migrations to an empty database, and a second run applies nothing", async () => {
    expect(await migratePostgres(client)).toEqual(POSTGRES_MIGRATIONS.map((migration) => migration.version));
    expect(await migratePostgres(client)).toEqual([]);
    const { rows } = await client.query("SELECT version FROM schema_migrations ORDER BY version");
    expect(rows.map((row) => row.version)).toEqual(POSTGRES_MIGRATIONS.map((migration) => migration.version));
  });

  it("applies each migration once when several nodes start at the same time", async () => {
    const fresh = await createScratchDatabase(serverUrl as string);
    try {
      const nodes = await Promise.all([fresh.connect(), fresh.connect(), fresh.connect()]);
      const appliedByNode = await Promise.all(nodes.map((node) => migratePostgres(node)));
      expect(appliedByNode.flat().sort((a, b) => a - b)).toEqual(POSTGRES_MIGRATIONS.map((migration) => migration.version));
      const { rows } = await nodes[0].query("SELECT version, count(*)::int AS times FROM schema_migrations GROUP BY version ORDER BY version");
      expect(rows).toEqual(POSTGRES_MIGRATIONS.map((migration) => ({ version: migration.version, times: 1 })));
    } finally {
      await fresh.drop();
    }
  });

  it("has the tables and columns of the SQLite schema it mirrors", async () => {
    const sqlite = mirroredSqlite();
    try {
      const { schema_migrations: _, ...expected } = sqliteColumns(sqlite);
      expect(await postgresColumns(client)).toEqual(expected);
    } finally {
      sqlite.close();
    }
  });

  it("has the unique and partial indexes of the SQLite schema, and the ones PostgreSQL's planner needs besides", async () => {
    const sqlite = mirroredSqlite();
    try {
      expect(sqliteIndexes(sqlite)).toEqual(EXPECTED_INDEXES);
    } finally {
      sqlite.close();
    }
    expect(await postgresIndexes(client)).toEqual([...EXPECTED_INDEXES, ...POSTGRES_ONLY_INDEXES].sort());
  });

  it("refuses to update, delete or truncate audit events and transparency log leaves", async () => {
    await client.query(
      "INSERT INTO audit_events (occurred_at, type, actor, outcome, details) VALUES ($1, 'authority.retired', 'system', 'success', '{}')",
      [Date.now()],
    );
    await client.query("INSERT INTO log_leaves (leaf_index, kind, ref, leaf_hash) VALUES (0, 'audit', 1, '\\x00')");

    expect(await errorOf(client.query("UPDATE audit_events SET actor = 'someone else'"))).toBe("audit events are append-only");
    expect(await errorOf(client.query("DELETE FROM audit_events"))).toBe("audit events are append-only");
    expect(await errorOf(client.query("TRUNCATE audit_events"))).toBe("audit events are append-only");
    expect(await errorOf(client.query("UPDATE log_leaves SET ref = 2"))).toBe("the transparency log is append-only");
    expect(await errorOf(client.query("DELETE FROM log_leaves"))).toBe("the transparency log is append-only");
    expect(await errorOf(client.query("TRUNCATE log_leaves"))).toBe("the transparency log is append-only");

    const { rows } = await client.query("SELECT actor FROM audit_events");
    expect(rows).toEqual([{ actor: "system" }]);
  });

  it("records trust bundle versions as SQLite does: a new one when an authority is published or retired, none otherwise", async () => {
    const now = Date.UTC(2026, 10, 22, 12);
    const authority = (id: string, kind: AuthorityRecord["kind"], status: AuthorityRecord["status"]) => placeholderAuthority(id, kind, status, new Date(now));
    const sqlite = openDatabase(":memory:");
    const sqliteAuthorities = new SqliteAuthorityRepository(sqlite);
    const insert = async (record: AuthorityRecord) => {
      sqliteAuthorities.insert(record);
      await client.query(
        `INSERT INTO authorities (id, kind, status, subject, certificate_der, key_label, parent_id, not_before, not_after, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [record.id, record.kind, record.status, record.subject, record.certificateDer, record.keyLabel, record.parentId, record.notBefore.getTime(), record.notAfter.getTime(), record.createdAt.getTime()],
      );
    };
    const setStatus = async (id: string, status: AuthorityRecord["status"]) => {
      sqliteAuthorities.setStatus(id, status);
      await client.query("UPDATE authorities SET status = $1 WHERE id = $2", [status, id]);
    };
    // As SqliteAuthorityRepository.activate does it: the active intermediate steps back, the new one takes over.
    const activate = async (id: string) => {
      sqliteAuthorities.activate(id);
      await client.query("BEGIN");
      await client.query("UPDATE authorities SET status = 'published' WHERE kind = 'intermediate' AND status = 'active' AND id <> $1", [id]);
      await client.query("UPDATE authorities SET status = 'active' WHERE id = $1", [id]);
      await client.query("COMMIT");
    };
    const sequence = async () => Number((await client.query("SELECT coalesce(max(sequence), 0) AS sequence FROM trust_bundle_versions")).rows[0].sequence);

    try {
      await insert(authority("root", "root", "active"));
      await insert(authority("old", "intermediate", "active"));
      const beforePublishing = await sequence();
      await insert(authority("new", "intermediate", "published"));
      expect(await sequence()).toBe(beforePublishing + 1);
      await activate("new");
      await setStatus("new", "active");
      await insert(authority("gone", "intermediate", "retired"));
      const beforeRetiring = await sequence();
      await setStatus("old", "retired");
      expect(await sequence()).toBe(beforeRetiring + 1);
      await setStatus("old", "retired");

      const sqliteVersions = (sqlite.prepare("SELECT sequence, authority_ids FROM trust_bundle_versions ORDER BY sequence").all() as { sequence: number; authority_ids: string }[]).map(
        (row) => ({ sequence: row.sequence, authorityIds: JSON.parse(row.authority_ids) as string[] }),
      );
      const { rows } = await client.query<{ sequence: string; authority_ids: string[] }>("SELECT sequence, authority_ids FROM trust_bundle_versions ORDER BY sequence");
      expect(rows.map((row) => ({ sequence: Number(row.sequence), authorityIds: row.authority_ids }))).toEqual(sqliteVersions);
      expect(sqliteVersions.map((version) => version.authorityIds)).toEqual([["root"], ["old", "root"], ["new", "old", "root"], ["new", "root"]]);

      // The first version a consumer must have acknowledged before an authority it replaces may retire.
      const first = await client.query("SELECT min(sequence) AS sequence FROM trust_bundle_versions WHERE authority_ids ? $1", ["new"]);
      expect(Number(first.rows[0].sequence)).toBe(3);
    } finally {
      sqlite.close();
    }
  });

  // On the authorities the previous test left: "new" is the active intermediate, "old" is retired.
  it("keeps serials, issued sequences and live successors unique, and refuses values outside the CHECK constraints", async () => {
    const certificate = (serial: string, extra: { issuedSeq?: number; predecessor?: string; state?: string } = {}) =>
      client.query(
        `INSERT INTO certificates (serial, authority_id, state, spiffe_id, dns_names, not_before, not_after, key_type, requester, tbs_der, prepared_at, issued_seq, predecessor_serial)
         VALUES ($1, 'new', $2, 'spiffe://anchorage.test/web', '[]', 0, 1, 'P-256', 'token:t', '\\x00', 0, $3, $4)`,
        [serial, extra.state ?? "issued", extra.issuedSeq ?? null, extra.predecessor ?? null],
      );
    await certificate("01", { issuedSeq: 1 });
    expect(await errorOf(certificate("01", { issuedSeq: 2 }))).toMatch(/certificates_pkey/);
    expect(await errorOf(certificate("02", { issuedSeq: 1 }))).toMatch(/certificates_issued_seq/);
    await certificate("03", { predecessor: "01", state: "failed" });
    await certificate("04", { predecessor: "01" });
    expect(await errorOf(certificate("05", { predecessor: "01" }))).toMatch(/certificates_successor/);
    expect(await errorOf(certificate("06", { state: "lost" }))).toMatch(/certificates_state_check/);
    expect(await errorOf(client.query("UPDATE authorities SET status = 'active' WHERE id = 'old'"))).toMatch(/authorities_one_active_intermediate/);
    expect(await errorOf(client.query("INSERT INTO registrations (id, spiffe_id, dns_names, max_ttl_seconds, jwt_issuer, created_by, created_at, updated_at) VALUES ('r', 's', '[]', 60, 'issuer', 'a', 0, 0)"))).toMatch(
      /registrations_check/,
    );
  });
});
