import type { AuditEvent, AuditEventRepository } from "../../audit/audit-log.js";
import type { AuditEventFilter, AuditEventQuery, AuditEventRecord } from "../../audit/audit-events.js";
import { BadUserInputError } from "../../common/errors.js";
import { decodeCursor, encodeCursor, type Page } from "../../common/page.js";
import { auditEventFromRow, type AuditEventRow } from "../audit-event-repository.js";
import type { PostgresDatabase, PostgresTransaction } from "./database.js";

/** The SQLite store's tag: a cursor means the same position on either engine. */
const CURSOR_TAG = "a";

/** An audit event row as pg returns it: BIGINT columns arrive as strings. */
export interface PostgresAuditEventRow extends Omit<AuditEventRow, "sequence" | "occurred_at"> {
  sequence: string;
  occurred_at: string;
}

export const auditEventFromPostgresRow = (row: PostgresAuditEventRow): AuditEventRecord =>
  auditEventFromRow({ ...row, sequence: Number(row.sequence), occurred_at: Number(row.occurred_at) });

/** An audit event to append inside another change's transaction. */
export interface PendingAuditEvent {
  readonly event: AuditEvent;
  readonly occurredAt: Date;
}

/**
 * Appends one audit event through `queryable`: the database, or a transaction the event is part of. The
 * trigger of migration 3 numbers it in commit order, holding a lock until that transaction ends.
 */
export function appendAuditEvent(queryable: PostgresTransaction, event: AuditEvent, occurredAt: Date): Promise<void> {
  return appendAuditEvents(queryable, [{ event, occurredAt }]);
}

/**
 * Appends audit events in the order given, with one statement (a multi-row VALUES list is inserted in its
 * order, so their numbers follow it). The numbering lock is held from here until commit: transactions append
 * their events last, and one that also takes the issued_seq lock takes that one first.
 */
export async function appendAuditEvents(queryable: PostgresTransaction, events: readonly PendingAuditEvent[]): Promise<void> {
  if (events.length === 0) return;
  const columns = 8;
  const values = events.map((_, row) => `(${Array.from({ length: columns }, (_, column) => `$${row * columns + column + 1}`).join(", ")})`);
  await queryable.query(
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

export class PostgresAuditEventRepository implements AuditEventRepository, AuditEventQuery {
  constructor(private readonly db: PostgresDatabase) {}

  async append(event: AuditEvent, occurredAt: Date): Promise<void> {
    await appendAuditEvent(this.db, event, occurredAt);
  }

  /**
   * One page in sequence order after the cursor's sequence. Keyset paging by sequence cannot skip an event
   * appended concurrently on another node: migration 3 hands out sequence numbers in commit order, so any
   * event committing after this page was read has a larger sequence than every event on it, and lands on a
   * later page.
   */
  async list(filter: AuditEventFilter, first: number, after: string | undefined): Promise<Page<AuditEventRecord>> {
    const afterSequence = after === undefined ? 0 : decodeCursor(CURSOR_TAG, after);
    if (afterSequence === undefined) throw new BadUserInputError("the cursor is not one this service returned");
    const conditions: string[] = [];
    const parameters: unknown[] = [];
    const add = (condition: (placeholder: string) => string, value: unknown): void => {
      parameters.push(value);
      conditions.push(condition(`$${parameters.length}`));
    };
    const equal = (column: string, value: string | undefined): void => {
      if (value !== undefined) add((placeholder) => `${column} = ${placeholder}`, value);
    };
    equal("type", filter.type);
    equal("actor", filter.actor);
    equal("subject", filter.subject);
    equal("outcome", filter.outcome);
    equal("code", filter.code);
    if (filter.occurredAfter !== undefined) add((placeholder) => `occurred_at >= ${placeholder}`, filter.occurredAfter.getTime());
    if (filter.occurredBefore !== undefined) add((placeholder) => `occurred_at < ${placeholder}`, filter.occurredBefore.getTime());
    const where = conditions.length === 0 ? "TRUE" : conditions.join(" AND ");
    const pageParameters = [...parameters, afterSequence, first + 1];
    // Page.countTotal is synchronous today, so the count is taken with the page, in the same snapshot so that
    // the two agree. When the port turns asynchronous it can become lazy again, as on SQLite.
    const [rows, total] = await this.db.transaction(
      async (transaction) => {
        const page = await transaction.query<PostgresAuditEventRow>(
          `SELECT * FROM audit_events WHERE ${where} AND sequence > $${parameters.length + 1} ORDER BY sequence LIMIT $${parameters.length + 2}`,
          pageParameters,
        );
        const count = await transaction.query<{ count: string }>(`SELECT count(*) AS count FROM audit_events WHERE ${where}`, parameters);
        return [page.rows, Number(count.rows[0]?.count ?? 0)] as const;
      },
      { isolation: "REPEATABLE READ" },
    );
    const page = rows.slice(0, first);
    return {
      items: page.map(auditEventFromPostgresRow),
      cursors: page.map((row) => encodeCursor(CURSOR_TAG, Number(row.sequence))),
      hasNextPage: rows.length > first,
      countTotal: () => total,
    };
  }
}
