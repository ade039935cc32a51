import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { MIGRATIONS } from "./migrations.js";
import { asStorageError } from "./storage-errors.js";

export type SqliteDatabase = Database.Database;

export const DEFAULT_BUSY_TIMEOUT_MS = 5_000;

export interface DatabaseOptions {
  /** How long a write waits for the write lock another connection holds before it fails (as UNAVAILABLE). */
  readonly busyTimeoutMs?: number;
}

/**
 * Opens (creating if needed) the SQLite file in WAL mode with full durability, and applies the numbered
 * migrations that are not applied yet, each in its own transaction. Several processes may open the same
 * file; SQLite serialises their writes and `busy_timeout` makes the loser wait instead of failing — for a
 * bounded time, after which the write fails with UNAVAILABLE rather than hang behind a lock that stays held.
 */
export function openDatabase(path: string, { busyTimeoutMs = DEFAULT_BUSY_TIMEOUT_MS }: DatabaseOptions = {}): SqliteDatabase {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  reportStorageFailuresAsUnavailable(db);
  db.pragma("journal_mode = WAL");
  // FULL: a commit is on disk before it returns, so a certificate is durable before anyone sees it.
  db.pragma("synchronous = FULL");
  db.pragma(`busy_timeout = ${Math.floor(busyTimeoutMs)}`);
  db.pragma("foreign_keys = ON");
  migrate(db);
  return db;
}

/**
 * The store boundary for writes outside transactions (one-statement writes of the repositories): a lock not
 * obtained within the busy timeout, or a full or failing disk, fails every statement's `run` with
 * UNAVAILABLE rather than as an internal error, wherever the statement was prepared.
 */
function reportStorageFailuresAsUnavailable(db: SqliteDatabase): void {
  const prepare = db.prepare.bind(db);
  db.prepare = ((source: string) => {
    const statement = prepare(source);
    const run = statement.run.bind(statement);
    statement.run = (...parameters: unknown[]) => {
      try {
        return run(...parameters);
      } catch (error) {
        throw asStorageError(error);
      }
    };
    return statement;
  }) as SqliteDatabase["prepare"];
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

/**
 * Runs `work` in one IMMEDIATE transaction (write lock taken up front, so no upgrade deadlocks between
 * processes). A lock not obtained within the busy timeout, or a full or failing disk, fails as UNAVAILABLE.
 */
export function inTransaction<T>(db: SqliteDatabase, work: () => T): T {
  try {
    return db.transaction(work).immediate();
  } catch (error) {
    throw asStorageError(error);
  }
}

/**
 * `inTransaction` waiting at most `waitMs` for the write lock, for background rounds that simply run again
 * later: SQLite's busy handler sleeps with the event loop blocked, so a lock held elsewhere would otherwise
 * stall every request of this process for the whole busy timeout, round after round.
 */
export function inTransactionWaitingAtMost<T>(db: SqliteDatabase, waitMs: number, work: () => T): T {
  const usual = Number(db.pragma("busy_timeout", { simple: true }));
  db.pragma(`busy_timeout = ${Math.min(usual, Math.floor(waitMs))}`);
  try {
    return inTransaction(db, work);
  } finally {
    db.pragma(`busy_timeout = ${usual}`);
  }
}
