import type { SqliteDatabase } from "./database.js";

interface PendingWork {
  readonly work: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (reason: unknown) => void;
}

/**
 * Group commit: work submitted during one turn of the event loop runs in a single transaction, each
 * submission in its own savepoint. A durable commit (fsync) costs about as much as hundreds of inserts, so
 * concurrent requests share it instead of queueing behind one fsync each. A submission that throws rolls
 * back only its own savepoint and rejects only its own promise; the promise of every other submission
 * resolves after the commit, never before, so nothing is reported as stored before it is on disk.
 */
export class GroupCommitter {
  private pending: PendingWork[] = [];
  private scheduled = false;

  constructor(private readonly db: SqliteDatabase) {}

  submit<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    this.scheduled = false;
    const outcomes: { ok: boolean; value: unknown }[] = [];
    try {
      this.db
        .transaction(() => {
          for (const item of batch) {
            try {
              outcomes.push({ ok: true, value: this.db.transaction(item.work)() });
            } catch (error) {
              outcomes.push({ ok: false, value: error });
            }
          }
        })
        .immediate();
    } catch (error) {
      for (const item of batch) item.reject(error);
      return;
    }
    batch.forEach((item, index) => {
      const outcome = outcomes[index] as { ok: boolean; value: unknown };
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.value);
    });
  }
}
