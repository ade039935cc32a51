import type { Logger } from "../common/logger.js";

export interface Readiness {
  readonly database: boolean;
  readonly hsm: boolean;
}

/**
 * Probes the service's dependencies in the background and keeps the last result, so that /readyz costs
 * nothing whatever the request rate: at most one probe (one HSM signature, one database lock) per interval.
 * Probes never overlap; a probe that throws counts as not ready.
 */
export class ReadinessMonitor {
  private latest: Readiness = { database: false, hsm: false };
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly options: {
      readonly probe: () => Promise<Readiness>;
      readonly intervalMs: number;
      readonly logger: Logger;
    },
  ) {}

  /** Runs the first probe, so that the listener never reports a state nobody checked, then keeps probing. */
  async start(): Promise<void> {
    await this.probeOnce();
    this.schedule();
  }

  current(): Readiness {
    return this.latest;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.probeOnce().finally(() => this.schedule());
    }, this.options.intervalMs).unref();
  }

  private async probeOnce(): Promise<void> {
    let next: Readiness;
    try {
      next = await this.options.probe();
    } catch (error) {
      this.options.logger.warn({ err: error }, "readiness probe failed");
      next = { database: false, hsm: false };
    }
    if (next.database !== this.latest.database || next.hsm !== this.latest.hsm) {
      this.options.logger.info({ ...next }, next.database && next.hsm ? "ready" : "not ready");
    }
    this.latest = next;
  }
}
