import type { Clock } from "../common/clock.js";
import type { Logger } from "../common/logger.js";

/** What happened, in dotted lower case: `issuance.signed`, `issuance.refused`, `token.created`, … */
export type AuditEventType =
  | "authority.created"
  | "authority.published"
  | "authority.activated"
  | "authority.retired"
  | "apikey.created"
  | "apikey.revoked"
  | "authentication.failed"
  | "token.created"
  | "token.revoked"
  | "registration.created"
  | "registration.updated"
  | "registration.deleted"
  | "issuance.prepared"
  | "issuance.signed"
  | "issuance.failed"
  | "issuance.refused"
  | "certificate.revoked"
  | "consumer.registered"
  | "consumer.unregistered"
  | "consumer.acknowledged"
  | "consumer.acknowledgement_refused";

/**
 * One append-only audit record. `actor` names the principal (`apikey:<id>`, `token:<id>`, `system`) and
 * `subject` the thing acted on (a serial, a SPIFFE ID, a key id). Secrets never go in here: details carry
 * identifiers and hashes only.
 */
export interface AuditEvent {
  readonly type: AuditEventType;
  readonly actor: string;
  readonly outcome: "success" | "failure";
  readonly subject?: string;
  /** The error code of a refusal (one of ERROR_CODES). */
  readonly code?: string;
  readonly remoteAddress?: string;
  readonly details?: Readonly<Record<string, unknown>>;
}

export interface StoredAuditEvent extends AuditEvent {
  readonly sequence: number;
  readonly occurredAt: Date;
}

/** Port implemented by the store. Events that belong to a state change are written by the store in that change's transaction instead. */
export interface AuditEventRepository {
  append(event: AuditEvent, occurredAt: Date): Promise<void>;
}

/** Appends audit events with the current time and mirrors them to the log. */
export class AuditLog {
  private countedRefusals: ((event: AuditEvent) => void) | undefined;

  constructor(
    private readonly repository: AuditEventRepository,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  async record(event: AuditEvent): Promise<void> {
    await this.repository.append(event, this.clock.now());
    const { details: _details, ...summary } = event;
    this.logger.info({ audit: summary }, "audit event");
  }

  /**
   * Records a refusal that costs its caller nothing, so that a caller could repeat it at will: one whose
   * credential did not check out (none, unknown, expired, used up, a bad signature or API key, a client
   * certificate we did not issue or that may no longer renew), or one over a rate limit. These go to the sink set by `routeCountedRefusals`
   * (aggregation, rate limits) when there is one.
   */
  async recordCountedRefusal(event: AuditEvent): Promise<void> {
    if (this.countedRefusals) this.countedRefusals(event);
    else await this.record(event);
  }

  routeCountedRefusals(sink: (event: AuditEvent) => void): void {
    this.countedRefusals = sink;
  }
}
