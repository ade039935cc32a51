/**
 * PostgreSQL for integration tests: the server `scripts/test-postgres.sh` starts (CI does, through `.ci/run`),
 * named by ANCHORAGE_TEST_POSTGRES_URL, and a scratch database per test file on it, dropped afterwards.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { describe, it } from "vitest";

export const TEST_POSTGRES_URL_VARIABLE = "ANCHORAGE_TEST_POSTGRES_URL";

/**
 * The test server's URL, or undefined when there is none. With `CI` set a missing server is an error, never a
 * skip: a failing test saying so is registered. Outside CI, pair with `postgresSkipReason` and
 * `describe.skipIf`.
 */
export function requirePostgres(): string | undefined {
  const url = process.env[TEST_POSTGRES_URL_VARIABLE] || undefined;
  if (url === undefined && process.env.CI) {
    describe("integration prerequisites in CI", () => {
      it("include a PostgreSQL server", () => {
        throw new Error(`CI must not skip integration tests: ${postgresSkipReason}`);
      });
    });
  }
  return url;
}

export const postgresSkipReason = `${TEST_POSTGRES_URL_VARIABLE} is not set (start a server with: export ${TEST_POSTGRES_URL_VARIABLE}=$(scripts/test-postgres.sh start))`;

export interface ScratchDatabase {
  readonly name: string;
  /** The server URL with this database in its path. */
  readonly url: string;
  /** A new connected client on this database; closed by `drop`. */
  connect(): Promise<pg.Client>;
  /** Closes the clients `connect` made and drops the database. */
  drop(): Promise<void>;
}

/** Creates an empty database with a random name on the server at `serverUrl`. */
export async function createScratchDatabase(serverUrl: string): Promise<ScratchDatabase> {
  const name = `anchorage_test_${randomBytes(8).toString("hex")}`;
  await withClient(serverUrl, (admin) => admin.query(`CREATE DATABASE ${name}`));
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const clients: pg.Client[] = [];
  return {
    name,
    url: url.toString(),
    async connect() {
      const client = new pg.Client({ connectionString: url.toString() });
      await client.connect();
      clients.push(client);
      return client;
    },
    async drop() {
      await Promise.all(clients.map((client) => client.end().catch(() => undefined)));
      await withClient(serverUrl, (admin) => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
