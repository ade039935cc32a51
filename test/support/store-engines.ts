/**
 * The store contract suite runs every test against each storage engine: a real SQLite file in a scratch
 * folder, and a scratch database on the test PostgreSQL server. A suite takes the engine's handle and builds
 * the repositories of that engine from it.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase, type SqliteDatabase } from "../../src/store/database.js";
import { PostgresDatabase } from "../../src/store/postgres/database.js";
import { createScratchDatabase, requirePostgres } from "./postgres.js";

export type StoreEngine =
  | { readonly kind: "sqlite"; readonly db: SqliteDatabase; close(): Promise<void> }
  | { readonly kind: "postgres"; readonly db: PostgresDatabase; readonly url: string; close(): Promise<void> };

export interface StoreEngineFactory {
  readonly kind: StoreEngine["kind"];
  /** Whether the engine can run here; outside CI a missing PostgreSQL server skips its half of the suite. */
  readonly available: boolean;
  /** A new, migrated, empty store of this engine; `close` removes it. */
  open(): Promise<StoreEngine>;
}

const postgresUrl = requirePostgres();

export const STORE_ENGINES: readonly StoreEngineFactory[] = [
  {
    kind: "sqlite",
    available: true,
    async open() {
      const dir = mkdtempSync(join(tmpdir(), "anchorage-contract-"));
      const db = openDatabase(join(dir, "anchorage.db"));
      return {
        kind: "sqlite",
        db,
        async close() {
          if (db.open) db.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    kind: "postgres",
    available: postgresUrl !== undefined,
    async open() {
      const scratch = await createScratchDatabase(postgresUrl as string);
      const db = await PostgresDatabase.open(scratch.url);
      return {
        kind: "postgres",
        db,
        url: scratch.url,
        async close() {
          await db.close().catch(() => undefined);
          await scratch.drop();
        },
      };
    },
  },
];
