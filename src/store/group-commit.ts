import type { SqliteDatabase } from "./database.js";
import { isLockContention, isStorageFailure, unavailableFor } from "./storage-errors.js";
import { WalFlusher } from "./wal-flusher.js";

interface PendingWork {
  readonly work: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (reason: unknown) => void;
}

/** The first pause before trying the write lock again; it doubles on each try up to LONGEST_LOCK_RETRY_MS. */
const FIRST_LOCK_RETRY_MS = 1;
const LONGEST_LOCK_RETRY_MS = 25;

/**
 * Group commit: work submitted during one turn of the event loop runs in a single transaction. A durable
 * commit (fsync) costs about as much as hundreds of inserts, so concurrent requests share it instead of
 * queueing behind one fsync each. Every promise resolves after the commit is on disk, never before, so
 * nothing is reported as stored before it is durable. The sync itself runs off the event loop and after
 * the write lock is released (see WalFlusher): the next group commits while the previous one syncs.
 *
 * Several service processes write to the same file. When another one holds the write lock, SQLite's own
 * busy handler would sleep with the event loop blocked (in steps of up to 100 ms), stalling every request
 * of this process. Instead the group is attempted without waiting and, when the lock is taken, retried a
 * moment later while the event loop goes on with other requests — whose work joins the waiting group. The
 * wait is bounded by the connection's busy timeout: a lock that stays held past it (an operator's tool left
 * in a transaction, a stuck process) fails the group with UNAVAILABLE, so clients get a retryable answer
 * instead of none. A full or failing disk fails the group the same way, and the committer remembers it
 * until a commit goes through again (see `storageFailing`).
 *
 * Submissions are expected to succeed (they decide refusals with conditional updates rather than by
 * throwing). If one throws anyway, the whole group is rolled back and each submission is replayed in a
 * transaction of its own, so only the faulty one fails. The common path therefore needs no savepoints,
 * which cost more than the inserts they protect.
 */
export class GroupCommitter {
  private pending: PendingWork[] = [];
  private scheduled = false;
  private waitingSince: number | undefined;
  private retryDelay = FIRST_LOCK_RETRY_MS;
  private failingStorage = false;
  private readonly runGroup: (batch: readonly PendingWork[]) => unknown[];
  private readonly runOne: (item: PendingWork) => unknown;
  private readonly setBusyTimeout: (milliseconds: number) => void;
  private readonly setSynchronous: (level: "FULL" | "NORMAL") => void;
  private readonly defaultBusyTimeout: number;
  private readonly flusher: WalFlusher | undefined;

  constructor(db: SqliteDatabase) {
    this.runGroup = db.transaction((batch: readonly PendingWork[]) => batch.map((item) => item.work())).immediate;
    this.runOne = db.transaction((item: PendingWork) => item.work()).immediate;
    this.defaultBusyTimeout = Number(db.pragma("busy_timeout", { simple: true }));
    this.setBusyTimeout = (milliseconds) => {
      db.pragma(`busy_timeout = ${milliseconds}`);
    };
    this.setSynchronous = (level) => {
      db.pragma(`synchronous = ${level}`);
    };
    this.flusher = WalFlusher.for(db);
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

  /** Whether the last commit failed because the disk refused it (full or failing) and none has succeeded since. */
  get storageFailing(): boolean {
    return this.failingStorage;
  }

  private flush(): void {
    const batch = this.pending;
    this.waitingSince ??= performance.now();
    let results: unknown[];
    try {
      results = this.withoutWaiting(() => this.syncedLater(() => this.runGroup(batch)));
    } catch (error) {
      if (isLockContention(error) && performance.now() - this.waitingSince < this.defaultBusyTimeout) {
        setTimeout(() => this.flush(), this.retryDelay);
        this.retryDelay = Math.min(this.retryDelay * 2, LONGEST_LOCK_RETRY_MS);
        return;
      }
      this.settle();
      const unavailable = unavailableFor(error);
      if (unavailable) {
        // The lock or the disk, not any one submission: replaying them one by one would fail the same way.
        if (isStorageFailure(unavailable.cause)) this.failingStorage = true;
        for (const item of batch) item.reject(unavailable);
        return;
      }
      for (const item of batch) {
        try {
          item.resolve(this.runOne(item));
        } catch (itemError) {
          item.reject(unavailableFor(itemError) ?? itemError);
        }
      }
      return;
    }
    this.settle();
    if (!this.flusher) {
      this.failingStorage = false;
      batch.forEach((item, index) => item.resolve(results[index]));
      return;
    }
    this.flusher.flush().then(
      () => {
        this.failingStorage = false;
        batch.forEach((item, index) => item.resolve(results[index]));
      },
      (error: unknown) => {
        const unavailable = unavailableFor(error);
        if (isStorageFailure(unavailable?.cause)) this.failingStorage = true;
        for (const item of batch) item.reject(unavailable ?? error);
      },
    );
  }

  /** Commits without syncing when a flusher will sync afterwards; the connection's other commits stay FULL. */
  private syncedLater<T>(run: () => T): T {
    if (!this.flusher) return run();
    this.setSynchronous("NORMAL");
    try {
      return run();
    } finally {
      this.setSynchronous("FULL");
    }
  }

  /** The group ran (or failed for good): later submissions start a new one. */
  private settle(): void {
    this.pending = [];
    this.scheduled = false;
    this.waitingSince = undefined;
    this.retryDelay = FIRST_LOCK_RETRY_MS;
  }

  /** SQLite's own busy handler would sleep with the event loop blocked; the committer retries by timer instead. */
  private withoutWaiting<T>(run: () => T): T {
    this.setBusyTimeout(0);
    try {
      return run();
    } finally {
      this.setBusyTimeout(this.defaultBusyTimeout);
    }
  }
}
