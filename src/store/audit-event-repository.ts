import type { AuditEvent, AuditEventRepository } from "../audit/audit-log.js";
import type { AuditEventFilter, AuditEventQuery, AuditEventRecord } from "../audit/audit-events.js";
import type { Page } from "../common/page.js";
import type { SqliteDatabase } from "./database.js";
import { keysetPage } from "./keyset-page.js";

export interface AuditEventRow {
  sequence: number;
  occurred_at: number;
  type: string;
  actor: string;
  outcome: "success" | "failure";
  subject: string | null;
  code: string | null;
  remote_address: string | null;
  details: string | null;
}

export const auditEventFromRow = (row: AuditEventRow): AuditEventRecord => ({
  sequence: row.sequence,
  occurredAt: new Date(row.occurred_at),
  type: row.type,
  actor: row.actor,
  outcome: row.outcome,
  subject: row.subject,
  code: row.code,
  remoteAddress: row.remote_address,
  details: row.details,
});

const CURSOR_TAG = "a";

export class SqliteAuditEventRepository implements AuditEventRepository, AuditEventQuery {
  private readonly insert;

  constructor(private readonly db: SqliteDatabase) {
    this.insert = db.prepare(
      `INSERT INTO audit_events (occurred_at, type, actor, outcome, subject, code, remote_address, details)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
  }

  async append(event: AuditEvent, occurredAt: Date): Promise<void> {
    this.appendNow(event, occurredAt);
  }

  /** `append` for the store's own transactions: the event commits with the change it records. */
  appendNow(event: AuditEvent, occurredAt: Date): void {
    this.insert.run(
      occurredAt.getTime(),
      event.type,
      event.actor,
      event.outcome,
      event.subject ?? null,
      event.code ?? null,
      event.remoteAddress ?? null,
      event.details ? JSON.stringify(event.details) : null,
    );
  }

  async list(filter: AuditEventFilter, first: number, after: string | undefined): Promise<Page<AuditEventRecord>> {
    const conditions: string[] = [];
    const parameters: unknown[] = [];
    const equal = (column: string, value: string | undefined): void => {
      if (value === undefined) return;
      conditions.push(`${column} = ?`);
      parameters.push(value);
    };
    equal("type", filter.type);
    equal("actor", filter.actor);
    equal("subject", filter.subject);
    equal("outcome", filter.outcome);
    equal("code", filter.code);
    if (filter.occurredAfter !== undefined) {
      conditions.push("occurred_at >= ?");
      parameters.push(filter.occurredAfter.getTime());
    }
    if (filter.occurredBefore !== undefined) {
      conditions.push("occurred_at < ?");
      parameters.push(filter.occurredBefore.getTime());
    }
    return keysetPage({
      db: this.db,
      table: "audit_events",
      orderColumn: "sequence",
      cursorTag: CURSOR_TAG,
      where: conditions.length === 0 ? "1" : conditions.join(" AND "),
      parameters,
      first,
      after,
      position: (row: AuditEventRow) => row.sequence,
      item: auditEventFromRow,
    });
  }
}
