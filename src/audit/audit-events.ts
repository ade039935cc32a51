import { pageSize, type Page } from "../common/page.js";
import { requireRole } from "../policy/api-keys.js";
import type { Principal } from "../policy/principal.js";
import type { AuditEventType } from "./audit-log.js";

/** An audit event as stored: `details` is kept as the JSON text that was written, byte for byte. */
export interface AuditEventRecord {
  readonly sequence: number;
  readonly occurredAt: Date;
  readonly type: AuditEventType | string;
  readonly actor: string;
  readonly outcome: "success" | "failure";
  readonly subject: string | null;
  readonly code: string | null;
  readonly remoteAddress: string | null;
  readonly details: string | null;
}

export interface AuditEventFilter {
  readonly type?: string;
  readonly actor?: string;
  readonly subject?: string;
  readonly outcome?: "success" | "failure";
  readonly code?: string;
  /** Inclusive. */
  readonly occurredAfter?: Date;
  /** Exclusive. */
  readonly occurredBefore?: Date;
}

export type AuditEventPage = Page<AuditEventRecord>;

/** Port implemented by the store. Pages run in sequence order; the cursor is opaque. */
export interface AuditEventQuery {
  list(filter: AuditEventFilter, first: number, after: string | undefined): Promise<Page<AuditEventRecord>>;
}

/** Read access to the audit trail, for admins and auditors. */
export class AuditEventService {
  constructor(private readonly query: AuditEventQuery) {}

  async list(principal: Principal, filter: AuditEventFilter, first: number | null | undefined, after: string | null | undefined): Promise<Page<AuditEventRecord>> {
    requireRole(principal, "ADMIN", "AUDITOR");
    return this.query.list(filter, pageSize(first), after ?? undefined);
  }
}
