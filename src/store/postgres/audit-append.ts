import type { AuditEvent } from "../../audit/audit-log.js";
import type { PostgresTransaction } from "./database.js";

/**
 * Key of the transaction-scoped advisory lock under which audit events get their sequence numbers: "anc:audi"
 * in ASCII. An identity column hands out numbers in the order transactions ask, not the order they commit, so
 * a reader paging by sequence could pass a number whose row commits later. Held until commit, the lock makes
 * the order of numbers the order of commits, as SQLite's single writer does.
 */
export const AUDIT_SEQUENCE_LOCK_KEY = 0x616e633a61756469n;

export interface PendingAuditEvent {
  readonly event: AuditEvent;
  readonly occurredAt: Date;
}

/**
 * Appends audit events inside the caller's transaction, in the order given, with one statement. Callers append
 * last, just before committing, so that the lock is held for as short a time as possible; a transaction that
 * takes another ordered lock (issued_seq) takes that one first.
 */
export async function appendAuditEvents(transaction: PostgresTransaction, events: readonly PendingAuditEvent[]): Promise<void> {
  if (events.length === 0) return;
  await transaction.query("SELECT pg_advisory_xact_lock($1)", [AUDIT_SEQUENCE_LOCK_KEY.toString()]);
  const columns = 8;
  const values = events.map((_, row) => `(${Array.from({ length: columns }, (_, column) => `$${row * columns + column + 1}`).join(", ")})`);
  await transaction.query(
    // A multi-row VALUES list is inserted in its order, so sequence numbers follow the order of `events`.
    `INSERT INTO audit_events (occurred_at, type, actor, outcome, subject, code, remote_address, details) VALUES ${values.join(", ")}`,
    events.flatMap(({ event, occurredAt }) => [
      occurredAt.getTime(),
      event.type,
      event.actor,
      event.outcome,
      event.subject ?? null,
      event.code ?? null,
      event.remoteAddress ?? null,
      event.details ? JSON.stringify(event.details) : null,
    ]),
  );
}
