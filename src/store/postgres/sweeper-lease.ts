import pg from "pg";
import type { Logger } from "../../common/logger.js";
import { ADVISORY_LOCKS } from "./advisory-locks.js";

export interface SweeperLeaseOptions {
  /** How often a process without the lease tries to take it, and one with it checks that it still has it. */
  readonly checkEveryMs?: number;
  readonly connectTimeoutMs?: number;
}

/**
 * The sweeper lease on PostgreSQL: a session-level advisory lock held on a connection of its own. The server
 * releases it when that session ends — the process exits or dies, or its connection is cut — and the next
 * node to try takes it. A holder checks its connection every round and gives the lease up as soon as the
 * connection fails, before the server may have let another node take it, so two nodes never both believe they
 * hold it for longer than one round.
 */
export class PostgresSweeperLease {
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private listener: ((held: boolean) => void) | undefined;
  private holding = false;
  private stopped = false;
  private round: Promise<void> | undefined;
  private readonly checkEveryMs: number;
  private readonly connectTimeoutMs: number;

  constructor(
    private readonly url: string,
    private readonly logger: Logger,
    options: SweeperLeaseOptions = {},
  ) {
    this.checkEveryMs = options.checkEveryMs ?? 1_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 5_000;
  }

  get held(): boolean {
    return this.holding;
  }

  /** Resolves once the first attempt is over, so that a caller knows whether it starts with the lease. */
  start(listener: (held: boolean) => void): Promise<void> {
    this.listener = listener;
    const tick = (): Promise<void> => {
      const round = this.check().finally(() => {
        this.round = undefined;
        if (!this.stopped) this.timer = setTimeout(tick, this.checkEveryMs).unref();
      });
      this.round = round;
      return round;
    };
    return tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.round;
    this.setHeld(false);
    await this.disconnect();
  }

  private async check(): Promise<void> {
    try {
      const client = await this.connected();
      if (this.holding) {
        await client.query("SELECT 1");
        return;
      }
      const { rows } = await client.query<{ taken: boolean }>("SELECT pg_try_advisory_lock($1) AS taken", [ADVISORY_LOCKS.sweeper.toString()]);
      if (rows[0]?.taken) this.setHeld(true);
    } catch (error) {
      if (this.holding) this.logger.warn({ err: error }, "sweeper lease lost: its database connection failed");
      this.setHeld(false);
      await this.disconnect();
    }
  }

  private async connected(): Promise<pg.Client> {
    if (this.client) return this.client;
    const client = new pg.Client({
      connectionString: this.url,
      application_name: "anchorage-sweeper-lease",
      connectionTimeoutMillis: this.connectTimeoutMs,
      query_timeout: this.connectTimeoutMs,
      keepAlive: true,
    });
    // A connection that breaks between rounds is noticed by the next round's query.
    client.on("error", () => undefined);
    await client.connect().catch(async (error: unknown) => {
      await client.end().catch(() => undefined);
      throw error;
    });
    this.client = client;
    return client;
  }

  private async disconnect(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    // Ending the session releases the lock if it still stands.
    await client?.end().catch(() => undefined);
  }

  private setHeld(held: boolean): void {
    if (held === this.holding) return;
    this.holding = held;
    this.logger.info({ held }, held ? "sweeper lease taken: this node runs the sweeps" : "sweeper lease released");
    try {
      this.listener?.(held);
    } catch (error) {
      this.logger.error({ err: error }, "sweeper lease listener failed");
    }
  }
}
