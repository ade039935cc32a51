import { UnavailableError } from "../../common/errors.js";
import { appendAuditEvents, type PendingAuditEvent } from "./audit-event-repository.js";
import type { PostgresDatabase, PostgresTransaction } from "./database.js";

/** One call's share of a batched transaction: its writes, and the audit events to append with them. */
export type BatchedWork<T> = (transaction: PostgresTransaction) => Promise<{ readonly value: T; readonly audit: readonly PendingAuditEvent[] }>;

interface Pending {
  readonly rank: number;
  readonly work: BatchedWork<unknown>;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/**
 * Group commit for PostgreSQL, the counterpart of SQLite's: calls that arrive while a transaction is being
 * committed are folded into the next one, so that N concurrent issuances cost one commit (one WAL flush, one
 * turn of the commit-order locks) instead of N. Each call's writes run one after another inside the shared
 * transaction, in ascending `rank` — callers give work that takes the issued_seq lock the lowest rank, so
 * every transaction takes that lock before any row lock — and all audit events are appended last, holding
 * their numbering lock only for the commit.
 *
 * A few transactions run at once (`concurrentTransactions`): a batch's statements are round trips to the
 * server, and while one batch waits for its commit the next can already be doing its reads and writes.
 *
 * A batch that fails for a reason of its own (a constraint one call broke) is replayed call by call, so that
 * only that call fails; a database that cannot be reached fails every call in it with UNAVAILABLE.
 */
export class TransactionBatcher {
  private pending: Pending[] = [];
  private running = 0;

  constructor(
    private readonly db: PostgresDatabase,
    private readonly concurrentTransactions = 4,
    private readonly maxCallsPerTransaction = 64,
  ) {}

  submit<T>(rank: number, work: BatchedWork<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ rank, work: work as BatchedWork<unknown>, resolve: resolve as (value: unknown) => void, reject });
      if (this.running < this.concurrentTransactions) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running++;
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.splice(0, this.maxCallsPerTransaction).sort((left, right) => left.rank - right.rank);
        await this.commit(batch);
      }
    } finally {
      this.running--;
    }
  }

  private async commit(batch: readonly Pending[]): Promise<void> {
    try {
      const values = await this.run(batch);
      batch.forEach((call, index) => call.resolve(values[index]));
    } catch (error) {
      if (error instanceof UnavailableError || batch.length === 1) {
        for (const call of batch) call.reject(error);
        return;
      }
      for (const call of batch) {
        try {
          const [value] = await this.run([call]);
          call.resolve(value);
        } catch (callError) {
          call.reject(callError);
        }
      }
    }
  }

  private run(batch: readonly Pending[]): Promise<unknown[]> {
    return this.db.transaction(async (transaction) => {
      const values: unknown[] = [];
      const audit: PendingAuditEvent[] = [];
      for (const call of batch) {
        const outcome = await call.work(transaction);
        values.push(outcome.value);
        audit.push(...outcome.audit);
      }
      await appendAuditEvents(transaction, audit);
      return values;
    });
  }
}
