import pg from "pg";
import { UnavailableError } from "../../common/errors.js";
import { migratePostgres } from "./migrations.js";

export interface PostgresOptions {
  /** Connections this process keeps open at most. */
  readonly poolSize?: number;
  /** How long a request waits for a connection (a server that is down or full) before it fails as UNAVAILABLE. */
  readonly connectTimeoutMs?: number;
  /** How long one statement may run (or wait for a row lock) before the server cancels it, as UNAVAILABLE. */
  readonly statementTimeoutMs?: number;
}

export const DEFAULT_POSTGRES_OPTIONS = { poolSize: 10, connectTimeoutMs: 5_000, statementTimeoutMs: 5_000 } as const;

/** A connection inside a transaction: every query of `work` runs on it. */
export interface PostgresTransaction {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, parameters?: readonly unknown[]): Promise<pg.QueryResult<R>>;
}

/** SQLSTATE classes and codes after which the same transaction, run again, may well succeed. */
const RETRYABLE_TRANSACTION_CODES = new Set(["40001", "40P01"]);
/** Connection exceptions, server shutting down or starting, out of resources, statement or lock timeouts. */
const UNAVAILABLE_CODE_PREFIXES = ["08", "53", "57P", "55P03", "57014"];
const UNAVAILABLE_ERRNOS = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN"]);

function sqlState(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "";
}

/**
 * The typed, retryable error for a server that cannot serve the request now (down, unreachable, restarting,
 * out of connections, too slow), or undefined for anything else (a bug, a constraint), which callers keep.
 */
export function postgresUnavailableFor(error: unknown): UnavailableError | undefined {
  if (error instanceof UnavailableError) return error;
  const code = sqlState(error);
  const message = error instanceof Error ? error.message : "";
  if (
    UNAVAILABLE_ERRNOS.has(code) ||
    UNAVAILABLE_CODE_PREFIXES.some((prefix) => code.startsWith(prefix)) ||
    /timeout exceeded when trying to connect|Connection terminated|connection timeout|Query read timeout/i.test(message)
  ) {
    return new UnavailableError("the database cannot be reached or is not answering in time; the request was not completed, retry it shortly", {
      cause: error,
    });
  }
  return undefined;
}

function asPostgresError(error: unknown): unknown {
  return postgresUnavailableFor(error) ?? error;
}

/**
 * The PostgreSQL side of the store: a connection pool whose failures to reach the server surface as
 * UNAVAILABLE within bounded times, and transactions that are retried when the server aborts them for a
 * serialisation conflict or a deadlock (both mean "run me again", never "you were wrong").
 */
export class PostgresDatabase {
  private constructor(
    readonly pool: pg.Pool,
    readonly url: string,
  ) {}

  /** Connects, applies the migrations the database lacks (under an advisory lock), and returns the store's handle. */
  static async open(url: string, options: PostgresOptions = {}): Promise<PostgresDatabase> {
    const settings = { ...DEFAULT_POSTGRES_OPTIONS, ...options };
    const pool = new pg.Pool({
      connectionString: url,
      max: settings.poolSize,
      connectionTimeoutMillis: settings.connectTimeoutMs,
      statement_timeout: settings.statementTimeoutMs,
      lock_timeout: settings.statementTimeoutMs,
      // A reply that never comes (a server frozen, a network partition) must fail as well as a refused one.
      query_timeout: settings.statementTimeoutMs + 1_000,
      idle_in_transaction_session_timeout: settings.statementTimeoutMs * 4,
      keepAlive: true,
      application_name: "anchorage",
    });
    // An idle connection the server drops (restart, failover) is replaced on next use; the error is not fatal.
    pool.on("error", () => undefined);
    const database = new PostgresDatabase(pool, url);
    try {
      const client = await pool.connect().catch((error: unknown) => {
        throw asPostgresError(error);
      });
      try {
        await migratePostgres(client);
      } finally {
        client.release();
      }
    } catch (error) {
      await pool.end().catch(() => undefined);
      throw error;
    }
    return database;
  }

  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, parameters: readonly unknown[] = []): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(sql, parameters as unknown[]);
    } catch (error) {
      throw asPostgresError(error);
    }
  }

  /**
   * Runs `work` in one transaction at `isolation` (READ COMMITTED unless asked), committing when it returns and
   * rolling back when it throws. A serialisation failure or deadlock runs the whole of `work` again, a few
   * times; `work` must therefore have no effects outside the transaction.
   */
  async transaction<T>(
    work: (transaction: PostgresTransaction) => Promise<T>,
    { isolation = "READ COMMITTED", attempts = 5 }: { isolation?: "READ COMMITTED" | "REPEATABLE READ" | "SERIALIZABLE"; attempts?: number } = {},
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.pool.connect();
      } catch (error) {
        throw asPostgresError(error);
      }
      let broken = false;
      try {
        await client.query(`BEGIN ISOLATION LEVEL ${isolation}`);
        const result = await work({ query: (sql, parameters = []) => client.query(sql, parameters as unknown[]) });
        await client.query("COMMIT");
        return result;
      } catch (error) {
        await client.query("ROLLBACK").catch(() => {
          broken = true;
        });
        if (attempt < attempts && RETRYABLE_TRANSACTION_CODES.has(sqlState(error))) continue;
        throw asPostgresError(error);
      } finally {
        client.release(broken);
      }
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
