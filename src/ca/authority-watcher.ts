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
  private snapshot: AuthoritySnapshot;
  private signature: string;
  private readonly listeners = new Set<Listener>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: {
      readonly repository: AuthorityRepository;
      readonly logger: Logger;
      readonly intervalMs: number;
    },
  ) {
    this.snapshot = this.read();
    this.signature = signatureOf(this.snapshot);
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
    this.timer = setInterval(() => this.refresh(), this.deps.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.listeners.clear();
  }

  refresh(): void {
    let next: AuthoritySnapshot;
    try {
      next = this.read();
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

  private read(): AuthoritySnapshot {
    return { authorities: this.deps.repository.list(), sequence: this.deps.repository.bundleSequence() };
  }
}
