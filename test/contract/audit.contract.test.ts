/**
 * The audit event repository, the same tests on every storage engine: events read back as written, filtered
 * keyset pages in sequence order, an append-only table that refuses UPDATE and DELETE from any SQL client,
 * and pages that neither skip nor repeat an event while other nodes append. On PostgreSQL, where several
 * nodes write at once, an event committed late never hides behind a larger sequence a reader already passed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditEvent } from "../../src/audit/audit-log.js";
import type { AuditEventFilter, AuditEventRecord } from "../../src/audit/audit-events.js";
import { BadUserInputError } from "../../src/common/errors.js";
import { encodeCursor, type Page } from "../../src/common/page.js";
import { SqliteAuditEventRepository } from "../../src/store/audit-event-repository.js";
import { appendAuditEvent, PostgresAuditEventRepository } from "../../src/store/postgres/audit-event-repository.js";
import { PostgresDatabase } from "../../src/store/postgres/database.js";
import { closeHandle, openSecondHandle, runSql, type EngineHandle } from "../support/contract-store.js";
import { STORE_ENGINES, type StoreEngine } from "../support/store-engines.js";

const NOW = new Date("2026-03-01T12:00:00.000Z");
const later = (seconds: number): Date => new Date(NOW.getTime() + seconds * 1000);

type AuditEvents = SqliteAuditEventRepository | PostgresAuditEventRepository;

const repositoryOf = (db: EngineHandle): AuditEvents => (db instanceof PostgresDatabase ? new PostgresAuditEventRepository(db) : new SqliteAuditEventRepository(db));

/** Every event matching `filter`, page by page from `after`, with the cursor to continue from. */
async function drain(events: AuditEvents, filter: AuditEventFilter, first: number, after?: string): Promise<{ records: AuditEventRecord[]; cursor: string | undefined }> {
  const records: AuditEventRecord[] = [];
  let cursor = after;
  for (;;) {
    const page: Page<AuditEventRecord> = await events.list(filter, first, cursor);
    records.push(...page.items);
    cursor = page.cursors.at(-1) ?? cursor;
    if (!page.hasNextPage) return { records, cursor };
  }
}

const EVENTS: readonly (AuditEvent & { at: number })[] = [
  { at: 0, type: "token.created", actor: "apikey:admin", outcome: "success", subject: "token-1", details: { spiffeId: "spiffe://anchorage.test/web", uses: 3 } },
  { at: 10, type: "issuance.refused", actor: "token:token-1", outcome: "failure", code: "POLICY_VIOLATION", remoteAddress: "10.0.0.7" },
  { at: 20, type: "issuance.signed", actor: "token:token-1", outcome: "success", subject: "0a1b", details: { serial: "0a1b", note: "ünïcödé \"quoted\"" } },
  { at: 30, type: "token.revoked", actor: "apikey:admin", outcome: "success", subject: "token-1" },
  { at: 40, type: "authentication.failed", actor: "anonymous", outcome: "failure", code: "UNAUTHENTICATED", remoteAddress: "2001:db8::1" },
];

/** Sessions of this database waiting for an advisory lock another holds. */
async function advisoryLockWaiters(db: PostgresDatabase): Promise<number> {
  const { rows } = await db.query<{ waiting: string }>(
    "SELECT count(*) AS waiting FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
  );
  return Number(rows[0]?.waiting ?? 0);
}

/** Whether `condition` holds within a few hundred polls (false rather than hanging when it never does). */
async function eventually(condition: () => Promise<boolean>): Promise<boolean> {
  for (let poll = 0; poll < 500; poll++) {
    if (await condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return false;
}

for (const factory of STORE_ENGINES) {
  describe.skipIf(!factory.available)(`audit event repository on ${factory.kind}`, () => {
    let engine: StoreEngine;
    let other: EngineHandle;
    let events: AuditEvents;
    let otherNode: AuditEvents;

    beforeAll(async () => {
      engine = await factory.open();
      other = await openSecondHandle(engine);
      events = repositoryOf(engine.db);
      otherNode = repositoryOf(other);
      for (const { at, ...event } of EVENTS) await events.append(event, later(at));
    });

    afterAll(async () => {
      if (other) await closeHandle(other);
      await engine?.close();
    });

    it("reads events back as appended, in sequence order, details as the JSON text written", async () => {
      const page = await events.list({}, 10, undefined);
      expect(page.hasNextPage).toBe(false);
      expect(page.countTotal()).toBe(EVENTS.length);
      expect(page.items.map((record) => record.sequence)).toEqual([1, 2, 3, 4, 5]);
      expect(page.items[0]).toEqual({
        sequence: 1,
        occurredAt: NOW,
        type: "token.created",
        actor: "apikey:admin",
        outcome: "success",
        subject: "token-1",
        code: null,
        remoteAddress: null,
        details: JSON.stringify({ spiffeId: "spiffe://anchorage.test/web", uses: 3 }),
      });
      expect(page.items[1]).toMatchObject({ code: "POLICY_VIOLATION", remoteAddress: "10.0.0.7", subject: null, details: null });
      expect(page.items[2]?.details).toBe('{"serial":"0a1b","note":"ünïcödé \\"quoted\\""}');
      // A cursor names the same position on either engine.
      expect(page.cursors).toEqual([1, 2, 3, 4, 5].map((sequence) => encodeCursor("a", sequence)));
    });

    it("pages with opaque cursors, and counts every match whatever the page", async () => {
      const first = await events.list({}, 2, undefined);
      expect(first.items.map((record) => record.sequence)).toEqual([1, 2]);
      expect(first.hasNextPage).toBe(true);
      const second = await events.list({}, 2, first.cursors[1]);
      expect(second.items.map((record) => record.sequence)).toEqual([3, 4]);
      expect(second.hasNextPage).toBe(true);
      expect(second.countTotal()).toBe(5);
      const last = await events.list({}, 2, second.cursors[1]);
      expect(last.items.map((record) => record.sequence)).toEqual([5]);
      expect(last.hasNextPage).toBe(false);
    });

    it("filters by type, actor, subject, outcome, code and time (from inclusive, before exclusive)", async () => {
      const sequences = async (filter: AuditEventFilter): Promise<number[]> => (await events.list(filter, 50, undefined)).items.map((record) => record.sequence);
      expect(await sequences({ type: "token.revoked" })).toEqual([4]);
      expect(await sequences({ actor: "token:token-1" })).toEqual([2, 3]);
      expect(await sequences({ subject: "token-1" })).toEqual([1, 4]);
      expect(await sequences({ outcome: "failure" })).toEqual([2, 5]);
      expect(await sequences({ code: "UNAUTHENTICATED" })).toEqual([5]);
      expect(await sequences({ occurredAfter: later(10), occurredBefore: later(30) })).toEqual([2, 3]);
      expect(await sequences({ actor: "apikey:admin", occurredAfter: later(1) })).toEqual([4]);
      expect(await sequences({ type: "no.such.type" })).toEqual([]);
      expect((await events.list({ outcome: "failure" }, 1, undefined)).countTotal()).toBe(2);
    });

    it("refuses a cursor it did not make as bad input", async () => {
      for (const cursor of ["garbage", encodeCursor("c", 3)]) {
        await expect(Promise.resolve().then(() => events.list({}, 5, cursor))).rejects.toBeInstanceOf(BadUserInputError);
      }
    });

    it("refuses UPDATE and DELETE of audit events from any SQL client, and keeps them as they were", async () => {
      const before = (await events.list({}, 50, undefined)).items;
      await expect(runSql(engine.db, "UPDATE audit_events SET actor = 'someone-else' WHERE actor = 'apikey:admin'")).rejects.toThrow(/append-only/);
      await expect(runSql(other, "DELETE FROM audit_events WHERE outcome = 'failure'")).rejects.toThrow(/append-only/);
      await expect(runSql(engine.db, "DELETE FROM audit_events")).rejects.toThrow(/append-only/);
      expect((await events.list({}, 50, undefined)).items).toEqual(before);
    });

    it("neither skips nor repeats an event while two nodes append and a reader pages", async () => {
      const filter = { actor: "writer" };
      const writers = [events, otherNode, events, otherNode].map(async (repository, writer) => {
        for (let i = 0; i < 30; i++) {
          await repository.append({ type: "token.created", actor: "writer", outcome: "success", subject: `w${writer}-${i}` }, later(100 + i));
        }
      });
      const seen: AuditEventRecord[] = [];
      let cursor: string | undefined;
      let writing = true;
      const done = Promise.all(writers).finally(() => {
        writing = false;
      });
      while (writing) {
        const round = await drain(events, filter, 7, cursor);
        seen.push(...round.records);
        cursor = round.cursor;
        await new Promise((resolve) => setImmediate(resolve));
      }
      await done;
      seen.push(...(await drain(events, filter, 7, cursor)).records);
      const sequences = seen.map((record) => record.sequence);
      expect(new Set(sequences).size).toBe(sequences.length);
      expect(sequences).toEqual([...sequences].sort((a, b) => a - b));
      expect(seen.map((record) => record.subject).sort()).toEqual(
        [0, 1, 2, 3].flatMap((writer) => Array.from({ length: 30 }, (_, i) => `w${writer}-${i}`)).sort(),
      );
    });

    if (factory.kind === "postgres") {
      it("numbers events in commit order: an append waits for an earlier uncommitted one, so no reader passes it", async () => {
        const db = engine.db as PostgresDatabase;
        const { cursor: before } = await drain(events, {}, 50);
        let commit: () => void = () => undefined;
        const committed = new Promise<void>((resolve) => {
          commit = resolve;
        });
        let drawn: () => void = () => undefined;
        const numberDrawn = new Promise<void>((resolve) => {
          drawn = resolve;
        });
        // A node's issuance transaction: its audit event is written, then the transaction stays open a while.
        const slow = db.transaction(async (transaction) => {
          await appendAuditEvent(transaction, { type: "issuance.signed", actor: "slow", outcome: "success" }, later(200));
          drawn();
          await committed;
        });
        await numberDrawn;
        const fast = otherNode.append({ type: "issuance.signed", actor: "fast", outcome: "success" }, later(201));
        try {
          // The fast append waits for the slow transaction's numbering lock rather than overtaking it.
          expect(await eventually(async () => (await advisoryLockWaiters(db)) > 0)).toBe(true);
          expect((await drain(events, {}, 50, before)).records).toEqual([]);
        } finally {
          commit();
          await Promise.allSettled([slow, fast]);
        }
        const after = (await drain(events, {}, 50, before)).records;
        expect(after.map((record) => record.actor)).toEqual(["slow", "fast"]);
      });

      it("refuses TRUNCATE of audit events", async () => {
        await expect(runSql(engine.db, "TRUNCATE audit_events")).rejects.toThrow(/append-only/);
        expect((await events.list({}, 1, undefined)).countTotal()).toBeGreaterThan(0);
      });
    }
  });
}
