import type { AuditEvent, AuditEventRepository } from "../audit/audit-log.js";
import type { SqliteDatabase } from "./database.js";

export class SqliteAuditEventRepository implements AuditEventRepository {
  private readonly insert;

  constructor(db: SqliteDatabase) {
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
}
