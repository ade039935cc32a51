import type { Logger } from "../common/logger.js";
import type { AuthorityRecord } from "./model.js";
import type { AuthorityRepository } from "./ports.js";

/** The CA hierarchy as one process last read it. */
export interface AuthoritySnapshot {
  readonly authorities: readonly AuthorityRecord[];
  /** Trust bundle version. */
  readonly sequence: number;
}

type Listener = (snapshot: AuthoritySnapshot) => void;

const signatureOf = (snapshot: AuthoritySnapshot): string =>
  `${snapshot.sequence}|${snapshot.authorities.map((authority) => `${authority.id}:${authority.status}`).join(",")}`;

/**
 * Notices changes to the CA hierarchy made by any process sharing the database (another service worker, the
 * admin CLI) by polling the small authorities table, and tells its listeners: the issuer registry (which
 * intermediate issues) and trust bundle subscribers. A change made in this process is seen at once through
 * `refresh()`.
 */
export class AuthorityWatcher {
  private signature: string;
  private readonly listeners = new Set<Listener>();
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private refreshAgain = false;

  private constructor(
    private readonly deps: AuthorityWatcherDependencies,
    private snapshot: AuthoritySnapshot,
  ) {
    this.signature = signatureOf(snapshot);
  }

  /** A watcher that starts from the hierarchy as it is now. */
  static async open(deps: AuthorityWatcherDependencies): Promise<AuthorityWatcher> {
    return new AuthorityWatcher(deps, await readSnapshot(deps.repository));
  }

  current(): AuthoritySnapshot {
    return this.snapshot;
  }

  /** Calls `listener` on every change from now on; returns the function that stops it. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start(): void {
    this.timer = setInterval(() => void this.refresh(), this.deps.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.listeners.clear();
  }

  /**
   * Reads the hierarchy again and tells the listeners when it changed. Calls made while a read is under way
   * share one more read after it, so that a change committed just before the call is always seen.
   */
  refresh(): Promise<void> {
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      do {
        this.refreshAgain = false;
        await this.readAndNotify();
      } while (this.refreshAgain);
    })().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async readAndNotify(): Promise<void> {
    let next: AuthoritySnapshot;
    try {
      next = await readSnapshot(this.deps.repository);
    } catch (error) {
      this.deps.logger.warn({ err: error }, "could not read the authorities; keeping the last known set");
      return;
    }
    const signature = signatureOf(next);
    if (signature === this.signature) return;
    this.snapshot = next;
    this.signature = signature;
    this.deps.logger.info({ sequence: next.sequence }, "CA hierarchy changed");
    for (const listener of [...this.listeners]) {
      try {
        listener(next);
      } catch (error) {
        this.deps.logger.error({ err: error }, "authority change listener failed");
      }
    }
  }
}

export interface AuthorityWatcherDependencies {
  readonly repository: AuthorityRepository;
  readonly logger: Logger;
  readonly intervalMs: number;
}

async function readSnapshot(repository: AuthorityRepository): Promise<AuthoritySnapshot> {
  const [authorities, sequence] = await Promise.all([repository.list(), repository.bundleSequence()]);
  return { authorities, sequence };
}
