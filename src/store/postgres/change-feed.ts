import pg from "pg";
import { postgresUnavailableFor } from "./database.js";

/** The channel the triggers of PostgreSQL migration 2 notify on; the payload is the topic. */
export const CHANGE_CHANNEL = "anchorage_changes";

/**
 * What changed, as the triggers name it: `revocation` (a certificate's revoked_at), `ocsp` (stored responses,
 * responder certificates), `crl`, `authorities`, `trust_bundle` (a new trust bundle version).
 */
export const CHANGE_TOPICS = ["revocation", "ocsp", "crl", "authorities", "trust_bundle"] as const;
export type ChangeTopic = (typeof CHANGE_TOPICS)[number];

export interface ChangeFeedOptions {
  /** Names the feed's connection in pg_stat_activity. */
  readonly applicationName?: string;
  /** The first pause before reconnecting after the connection is lost; it doubles up to `maxReconnectDelayMs`. */
  readonly minReconnectDelayMs?: number;
  readonly maxReconnectDelayMs?: number;
  readonly connectTimeoutMs?: number;
}

const DEFAULTS = { applicationName: "anchorage-change-feed", minReconnectDelayMs: 100, maxReconnectDelayMs: 5_000, connectTimeoutMs: 5_000 };

const isTopic = (payload: string | undefined): payload is ChangeTopic => (CHANGE_TOPICS as readonly string[]).includes(payload ?? "");

/**
 * Commits other connections made, per topic, as counters this process can read synchronously: the PostgreSQL
 * counterpart of SQLite's data_version. One dedicated connection LISTENs (a pooled one would lose the
 * subscription when returned); when it is lost the feed reconnects with back-off and then bumps every
 * counter, since whatever was committed while it was away was not heard.
 *
 * A notification is delivered to every listening connection, the writer's own process included, so this
 * process's own commits bump its counters too: a cache dropped once more than needed, never a change missed.
 */
export class PostgresChangeFeed {
  private readonly counters = new Map<ChangeTopic, number>(CHANGE_TOPICS.map((topic) => [topic, 0]));
  private readonly listeners = new Map<ChangeTopic, Set<() => void>>(CHANGE_TOPICS.map((topic) => [topic, new Set()]));
  private client: pg.Client | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectDelayMs: number;
  private closed = false;

  private constructor(
    private readonly url: string,
    private readonly options: typeof DEFAULTS,
  ) {
    this.reconnectDelayMs = options.minReconnectDelayMs;
  }

  /** Connects and starts listening; rejects (UNAVAILABLE when the server cannot be reached) if the first connection fails. */
  static async open(url: string, options: ChangeFeedOptions = {}): Promise<PostgresChangeFeed> {
    const feed = new PostgresChangeFeed(url, { ...DEFAULTS, ...options });
    try {
      await feed.connect();
    } catch (error) {
      throw postgresUnavailableFor(error) ?? error;
    }
    return feed;
  }

  /** A number that goes up whenever a change of `topic` may have been committed since it was last read. */
  counter(topic: ChangeTopic): number {
    return this.counters.get(topic) as number;
  }

  /** Calls `listener` after each change of `topic` (and after a reconnection); returns the unsubscribe function. */
  subscribe(topic: ChangeTopic, listener: () => void): () => void {
    const listeners = this.listeners.get(topic) as Set<() => void>;
    listeners.add(listener);
    return () => listeners.delete(listener);
  }

  /** Whether the feed's connection is up and listening now. */
  get listening(): boolean {
    return this.client !== undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.url,
      application_name: this.options.applicationName,
      connectionTimeoutMillis: this.options.connectTimeoutMs,
      keepAlive: true,
    });
    // Both can fire for one loss; `lost` acts once per client.
    client.on("error", () => this.lost(client));
    client.on("end", () => this.lost(client));
    client.on("notification", (message) => {
      if (message.channel === CHANGE_CHANNEL && isTopic(message.payload)) this.bump(message.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGE_CHANNEL}`);
    } catch (error) {
      client.removeAllListeners();
      client.on("error", () => undefined);
      await client.end().catch(() => undefined);
      throw error;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.reconnectDelayMs = this.options.minReconnectDelayMs;
  }

  private lost(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = undefined;
    client.removeAllListeners();
    client.on("error", () => undefined);
    void client.end().catch(() => undefined);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer !== undefined) return;
    const delay = this.reconnectDelayMs;
    this.reconnectDelayMs = Math.min(delay * 2, this.options.maxReconnectDelayMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect().then(
        () => {
          if (this.closed) return;
          for (const topic of CHANGE_TOPICS) this.bump(topic);
        },
        () => this.scheduleReconnect(),
      );
    }, delay);
    // A feed waiting to reconnect must not keep a process alive that has nothing else to do.
    this.reconnectTimer.unref();
  }

  private bump(topic: ChangeTopic): void {
    this.counters.set(topic, (this.counters.get(topic) as number) + 1);
    for (const listener of this.listeners.get(topic) as Set<() => void>) {
      try {
        listener();
      } catch {
        // A subscriber's failure is its own; the other subscribers and the counter are unaffected.
      }
    }
  }
}
