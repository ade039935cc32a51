import { clientNetworkOf } from "../common/client-address.js";
import type { Clock } from "../common/clock.js";
import type { Logger } from "../common/logger.js";
import type { AuditEvent } from "./audit-log.js";

export interface RefusalAggregatorSettings {
  readonly windowSeconds: number;
  /** Refusals of one kind from one address that are recorded one by one per window before counting starts. */
  readonly individuallyRecorded: number;
  /** Distinct (address, type, code) kept apart per window; beyond that, new addresses share one count. */
  readonly maxKinds: number;
}

interface Tally {
  readonly first: AuditEvent;
  /** Whether every refusal counted came from the first one's actor (a named credential over its limit, say). */
  oneActor: boolean;
  /** The client network counted, as clientNetworkOf gives it; the summary names it as its address. */
  readonly network: string;
  seen: number;
}

/** Stands for every address once `maxKinds` is reached, so memory stays bounded whatever the addresses. */
const OTHER_ADDRESSES = "*";

/**
 * Refusals of callers whose credential did not check out cost an attacker nothing, and each audit event is
 * forever (it becomes a transparency-log leaf). So per client address (an IPv6 /64 counts as one), event type
 * and code, the first few of a window are recorded as they happen, and the rest are counted and written as
 * one event with the count when the window closes (or the process stops). Audit growth from such traffic is then bounded by this
 * configuration, not by the attacker. Refusals over a rate limit come here too, for the same reason; other
 * refusals of authenticated callers never do.
 */
export class RefusalAggregator {
  private tallies = new Map<string, Tally>();
  private windowStart: Date;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly write: (event: AuditEvent) => void,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly settings: RefusalAggregatorSettings,
  ) {
    this.windowStart = clock.now();
  }

  record(event: AuditEvent): void {
    let network = event.remoteAddress === undefined ? "" : clientNetworkOf(event.remoteAddress);
    let tally = this.tallies.get(kindOf(event, network));
    if (!tally && this.tallies.size >= this.settings.maxKinds) {
      network = OTHER_ADDRESSES;
      tally = this.tallies.get(kindOf(event, network));
    }
    if (!tally) {
      tally = { first: event, network, seen: 0, oneActor: true };
      this.tallies.set(kindOf(event, network), tally);
    }
    tally.seen += 1;
    if (event.actor !== tally.first.actor) tally.oneActor = false;
    if (tally.seen <= this.settings.individuallyRecorded) this.write(event);
  }

  start(): void {
    this.timer = setInterval(() => this.flush(), this.settings.windowSeconds * 1000).unref();
  }

  /** Ends the window: one event per kind that had more refusals than were recorded one by one. */
  flush(): void {
    const tallies = this.tallies;
    const since = this.windowStart;
    this.tallies = new Map();
    this.windowStart = this.clock.now();
    for (const { first, network: remoteAddress, seen, oneActor } of tallies.values()) {
      const count = seen - this.settings.individuallyRecorded;
      if (count <= 0) continue;
      try {
        this.write({
          type: first.type,
          actor: oneActor ? first.actor : "anonymous",
          outcome: "failure",
          ...(first.code ? { code: first.code } : {}),
          ...(remoteAddress ? { remoteAddress } : {}),
          details: {
            count,
            since: since.toISOString(),
            until: this.windowStart.toISOString(),
            reason: `${count} further refusals of this kind from this address, counted rather than recorded one by one`,
          },
        });
      } catch (error) {
        this.logger.error({ err: error, type: first.type, remoteAddress, count }, "could not record a count of refusals");
      }
    }
  }

  /** Stops the window timer and writes what has been counted so far. */
  stop(): void {
    clearInterval(this.timer);
    this.flush();
  }
}

function kindOf(event: AuditEvent, address: string): string {
  return `${address}\u0000${event.type}\u0000${event.code ?? ""}`;
}
