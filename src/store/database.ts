import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { MIGRATIONS } from "./migrations.js";

export type SqliteDatabase = Database.Database;

/**
 * Opens (creating if needed) the SQLite file in WAL mode with full durability, and applies the numbered
 * migrations that are not applied yet, each in its own transaction. Several processes may open the same
 * file; SQLite serialises their writes and `busy_timeout` makes the loser wait instead of failing.
 */
export function openDatabase(path: string): SqliteDatabase {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  // FULL: a commit is on disk before it returns, so a certificate is durable before anyone sees it.
  db.pragma("synchronous = FULL");
  db.pragma("busy_timeout = 10000");
  db.pragma("foreign_keys = ON");
  migrate(db);
  return db;
}

function migrate(db: SqliteDatabase): void {
  db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)");
  const applied = new Set(
    db
      .prepare("SELECT version FROM schema_migrations")
      .pluck()
      .all()
      .map((version) => Number(version)),
  );
  for (const migration of MIGRATIONS) {
    if (applied.has(migration.version)) continue;
    // IMMEDIATE takes the write lock first, so two processes starting together do not both migrate.
    db.transaction(() => {
      const again = db.prepare("SELECT 1 FROM schema_migrations WHERE version = ?").get(migration.version);
      if (again) return;
      db.exec(migration.sql);
      db.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)").run(
        migration.version,
        new Date().toISOString(),
      );
    }).immediate();
  }
}

/** Runs `work` in one IMMEDIATE transaction (write lock taken up front, so no upgrade deadlocks between processes). */
export function inTransaction<T>(db: SqliteDatabase, work: () => T): T {
  return db.transaction(work).immediate();
}

/**
 * Throws unless this connection can take the write lock within `timeoutMs`: the readiness probe. It waits
 * that long at most, not the connection's usual busy timeout, so that a database locked by another process
 * (or one that cannot be written) shows as not ready instead of stalling the probe. Nothing is written.
 */
export function checkWritable(db: SqliteDatabase, timeoutMs: number): void {
  const usualTimeout = db.pragma("busy_timeout", { simple: true }) as number;
  db.pragma(`busy_timeout = ${Math.max(0, Math.floor(timeoutMs))}`);
  try {
    inTransaction(db, () => db.prepare("SELECT count(*) FROM schema_migrations").get());
  } finally {
    db.pragma(`busy_timeout = ${usualTimeout}`);
  }
}
