import type { AuditEvent, AuditEventRepository } from "../audit/audit-log.js";
import type { AuditEventFilter, AuditEventQuery, AuditEventRecord } from "../audit/audit-events.js";
import { BadUserInputError } from "../common/errors.js";
import { decodeCursor, encodeCursor, type Page } from "../common/page.js";
import type { SqliteDatabase } from "./database.js";

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

  append(event: AuditEvent, occurredAt: Date): void {
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

  list(filter: AuditEventFilter, first: number, after: string | undefined): Page<AuditEventRecord> {
    const afterSequence = after === undefined ? 0 : decodeCursor(CURSOR_TAG, after);
    if (afterSequence === undefined) throw new BadUserInputError("the cursor is not one this service returned");
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
    const where = conditions.length === 0 ? "1" : conditions.join(" AND ");
    const rows = this.db
      .prepare(`SELECT * FROM audit_events WHERE ${where} AND sequence > ? ORDER BY sequence LIMIT ?`)
      .all(...parameters, afterSequence, first + 1) as AuditEventRow[];
    const page = rows.slice(0, first);
    return {
      items: page.map(auditEventFromRow),
      cursors: page.map((row) => encodeCursor(CURSOR_TAG, row.sequence)),
      hasNextPage: rows.length > first,
      countTotal: () => Number(this.db.prepare(`SELECT count(*) FROM audit_events WHERE ${where}`).pluck().get(...parameters)),
    };
  }
}
