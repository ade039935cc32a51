import type { SqliteDatabase } from "./database.js";

interface PendingWork {
  readonly work: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (reason: unknown) => void;
}

/**
 * Group commit: work submitted during one turn of the event loop runs in a single transaction. A durable
 * commit (fsync) costs about as much as hundreds of inserts, so concurrent requests share it instead of
 * queueing behind one fsync each. Every promise resolves after the commit, never before, so nothing is
 * reported as stored before it is on disk.
 *
 * Submissions are expected to succeed (they decide refusals with conditional updates rather than by
 * throwing). If one throws anyway, the whole group is rolled back and each submission is replayed in a
 * transaction of its own, so only the faulty one fails. The common path therefore needs no savepoints,
 * which cost more than the inserts they protect.
 */
export class GroupCommitter {
  private pending: PendingWork[] = [];
  private scheduled = false;
  private readonly runGroup: (batch: readonly PendingWork[]) => unknown[];
  private readonly runOne: (item: PendingWork) => unknown;

  constructor(db: SqliteDatabase) {
    this.runGroup = db.transaction((batch: readonly PendingWork[]) => batch.map((item) => item.work())).immediate;
    this.runOne = db.transaction((item: PendingWork) => item.work()).immediate;
  }

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
    let results: unknown[];
    try {
      results = this.runGroup(batch);
    } catch {
      for (const item of batch) {
        try {
          item.resolve(this.runOne(item));
        } catch (error) {
          item.reject(error);
        }
      }
      return;
    }
    batch.forEach((item, index) => item.resolve(results[index]));
  }
}
