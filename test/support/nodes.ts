/**
 * Several service nodes on one PostgreSQL database, sharing the intermediate's key through a network HSM, for
 * integration tests. Each node is the real service (`src/main.ts`) in a process of its own with its own data
 * folder and ports; they share nothing but the scratch database and the token.
 *
 * Set-up, as an operator would do it:
 *  1. The first node starts once with the development bootstrap on the database: it creates the SoftHSM tokens
 *     in its data folder, the root (ceremony), the intermediate (key in the online token), the transparency log
 *     key and the first admin API key, all registered in the shared database. It is then stopped.
 *  2. `p11-kit server` exports the online token of that data folder (its label is the configured default, its
 *     PIN is `secrets/online-token.pin`): the stand-in for a network HSM.
 *  3. Every node, the first one included, starts with ANCHORAGE_BOOTSTRAP=none, p11-kit's client module as its
 *     PKCS#11 module, P11_KIT_SERVER_ADDRESS, the token label and PIN, and the database URL. They start
 *     together, so which one takes the sweeper lease is not fixed: find it by its "sweeper lease taken" line.
 *
 * The root token stays in the first node's data folder (`rootTokenSoftHsmConf`, `rootTokenPinFile`) for tests
 * that run the root ceremony, e.g. to sign another intermediate.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type pg from "pg";
import { ROOT_TOKEN_LABEL } from "../../src/cli/development-bootstrap.js";
import { startP11KitServer, type P11KitServer } from "./p11-kit.js";
import { createScratchDatabase, type ScratchDatabase } from "./postgres.js";
import { startService, type RunningService } from "./service.js";
import { softHsmModulePath, type SoftHsm } from "./softhsm.js";

/** The development bootstrap's online token label (the configuration default). */
export const ONLINE_TOKEN_LABEL = "anchorage-online";

export interface ServiceNode extends RunningService {
  /** "A", "B", "C", … in start order; "A" is the node that bootstrapped the hierarchy. */
  readonly name: string;
}

export interface NodeSet {
  /** The running nodes, in start order (after `restart`, the restarted process replaces the old one). */
  readonly nodes: readonly ServiceNode[];
  /** The bootstrap admin API key; valid on every node (it is in the shared database). */
  readonly adminKey: string;
  /** The root certificate (PEM), the trust anchor for every node's HTTPS listener. */
  readonly rootPem: string;
  readonly database: ScratchDatabase;
  readonly hsm: P11KitServer;
  /** The PIN of the online token the server exports. */
  readonly onlinePin: string;
  /** SoftHSM configuration and PIN file of the root token, in the first node's data folder (for the ceremony CLI). */
  readonly rootTokenSoftHsmConf: string;
  readonly rootTokenPinFile: string;
  readonly rootTokenLabel: string;
  /**
   * What each node is configured with besides its own data folder and ports: the database URL, no bootstrap,
   * the client module, the server address, token label and PIN, and the caller's `env`. Also what the admin
   * CLI needs to act on the same store and token.
   */
  readonly environment: Readonly<Record<string, string>>;
  /** A node by name. */
  node(name: string): ServiceNode;
  /** One query on the shared database, on a connection of the test's own. */
  query<R extends pg.QueryResultRow = any>(sql: string, parameters?: unknown[]): Promise<R[]>;
  /** Sends `signal` to the node's process (by PID) and waits for it to exit; the exit code, null for a signal. */
  kill(node: ServiceNode, signal: NodeJS.Signals): Promise<number | null>;
  /** Starts the node again on its data folder (after `kill` or a stop); the new process replaces it in `nodes`. */
  restart(node: ServiceNode): Promise<ServiceNode>;
  /** Stops every node (SIGTERM, then SIGKILL), the p11-kit server, drops the database and removes the folders. */
  stopAll(): Promise<void>;
}

export interface NodeSetOptions {
  /** Serving nodes, at least 1; default 3. */
  readonly count?: number;
  /** Extra environment for every node (and the bootstrap run), e.g. ANCHORAGE_LOG_INTERVAL_MS. */
  readonly env?: Record<string, string>;
}

const NAMES = "ABCDEFGHIJ";

/** Starts `count` nodes on a new scratch database on the server at `postgresUrl` (see the file comment). */
export async function startNodes(postgresUrl: string, options: NodeSetOptions = {}): Promise<NodeSet> {
  const count = options.count ?? 3;
  if (count < 1 || count > NAMES.length) throw new Error(`between 1 and ${NAMES.length} nodes, not ${count}`);
  const folders: string[] = [];
  const nodes: ServiceNode[] = [];
  let database: ScratchDatabase | undefined;
  let hsm: P11KitServer | undefined;
  let client: pg.Client | undefined;

  const stopAll = async (): Promise<void> => {
    await Promise.all(nodes.map((node) => node.stop()));
    await client?.end().catch(() => undefined);
    await hsm?.stop();
    await database?.drop();
    for (const folder of folders) rmSync(folder, { recursive: true, force: true });
  };

  try {
    database = await createScratchDatabase(postgresUrl);
    const databaseEnv = { ANCHORAGE_DATABASE_URL: database.url };

    // 1. The hierarchy, the tokens and the admin key, made once by the development bootstrap.
    const firstDir = mkdtempSync(join(tmpdir(), "anchorage-node-A-"));
    folders.push(firstDir);
    const bootstrap = await startService({ dataDir: firstDir, env: { ...options.env, ...databaseEnv } });
    const adminKey = bootstrap.adminKey;
    const rootPem = bootstrap.rootPem;
    await bootstrap.stop();

    // 2. The network HSM: the first node's online token, exported by p11-kit server.
    const softhsmConf = join(firstDir, "softhsm2.conf");
    const onlinePin = readFileSync(join(firstDir, "secrets", "online-token.pin"), "utf8").trim();
    const softHsm: SoftHsm = { dir: join(firstDir, "tokens"), confPath: softhsmConf, modulePath: softHsmModulePath(), cleanup: async () => undefined };
    hsm = await startP11KitServer(softHsm, ONLINE_TOKEN_LABEL);

    const environment: Record<string, string> = {
      ...options.env,
      ...databaseEnv,
      ANCHORAGE_BOOTSTRAP: "none",
      ANCHORAGE_PKCS11_MODULE: hsm.clientModulePath,
      P11_KIT_SERVER_ADDRESS: hsm.address,
      ANCHORAGE_HSM_TOKEN_LABEL: ONLINE_TOKEN_LABEL,
      ANCHORAGE_HSM_PIN: onlinePin,
    };

    // 3. Every node on the shared token, started together: whichever takes the sweeper lease first runs the sweeps.
    const dataDirs = [firstDir];
    for (let index = 1; index < count; index++) {
      const dir = mkdtempSync(join(tmpdir(), `anchorage-node-${NAMES[index]}-`));
      folders.push(dir);
      // The harness reads these two files from a node's data folder; the service itself does not need them.
      writeFileSync(join(dir, "root.pem"), rootPem);
      writeFileSync(join(dir, "admin-api-key"), `${adminKey}\n`);
      dataDirs.push(dir);
    }
    const start = async (index: number): Promise<ServiceNode> => {
      const service = await startService({ dataDir: dataDirs[index] as string, env: environment });
      return Object.assign(service, { name: NAMES[index] as string });
    };
    const started = await Promise.allSettled(dataDirs.map((_, index) => start(index)));
    for (const outcome of started) if (outcome.status === "fulfilled") nodes.push(outcome.value);
    const failed = started.find((outcome) => outcome.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;

    const rootTokenPinFile = join(firstDir, "secrets", "root-token.pin");
    if (!existsSync(rootTokenPinFile)) throw new Error("the development bootstrap left no root token PIN file");
    const set: NodeSet = {
      nodes,
      adminKey,
      rootPem,
      database,
      hsm,
      onlinePin,
      rootTokenSoftHsmConf: softhsmConf,
      rootTokenPinFile,
      rootTokenLabel: ROOT_TOKEN_LABEL,
      environment,
      node(name) {
        const found = nodes.find((node) => node.name === name);
        if (!found) throw new Error(`no node ${name}`);
        return found;
      },
      async query(sql, parameters) {
        client ??= await (database as ScratchDatabase).connect();
        return (await client.query(sql, parameters)).rows;
      },
      async kill(node, signal) {
        try {
          process.kill(node.pid, signal);
        } catch {
          // Exited already.
        }
        return node.exited;
      },
      async restart(node) {
        await node.stop();
        const index = nodes.indexOf(node);
        if (index === -1) throw new Error(`node ${node.name} is not one of this set's running nodes`);
        const replacement = await start(NAMES.indexOf(node.name));
        nodes[index] = replacement;
        return replacement;
      },
      stopAll,
    };
    return set;
  } catch (error) {
    await stopAll().catch(() => undefined);
    throw error;
  }
}
