import { closeSync, fdatasync, fstatSync, openSync, statSync } from "node:fs";
import type { SqliteDatabase } from "./database.js";

/** How often the WAL file is checked for having been replaced (which SQLite does not do while we are connected). */
const REOPEN_CHECK_MS = 1_000;

/**
 * Makes commits durable off the event loop. A transaction committed with `synchronous = NORMAL` in WAL mode
 * is written to the WAL file but not synced; an fdatasync of that file afterwards makes it — and every
 * commit written before it — as durable as `synchronous = FULL` would have. Done on libuv's thread pool,
 * the sync neither blocks the event loop nor holds SQLite's write lock, so the other processes commit
 * meanwhile. Callers that arrive while a sync runs share the next one.
 */
export class WalFlusher {
  private fd: number | undefined;
  private inode: number | undefined;
  private checkedAt = Number.NEGATIVE_INFINITY;
  private running = false;
  private waiting: { resolve: () => void; reject: (error: unknown) => void }[] = [];

  constructor(private readonly walPath: string) {}

  static for(db: SqliteDatabase): WalFlusher | undefined {
    return db.memory ? undefined : new WalFlusher(`${db.name}-wal`);
  }

  /** Resolves once everything written to the WAL before the call is on disk. */
  flush(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      if (!this.running) this.next();
    });
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private next(): void {
    const batch = this.waiting;
    this.waiting = [];
    if (batch.length === 0) return;
    let fd: number;
    try {
      fd = this.descriptor();
    } catch (error) {
      for (const waiter of batch) waiter.reject(error);
      return;
    }
    this.running = true;
    fdatasync(fd, (error) => {
      this.running = false;
      for (const waiter of batch) {
        if (error) waiter.reject(error);
        else waiter.resolve();
      }
      this.next();
    });
  }

  private descriptor(): number {
    const now = performance.now();
    if (this.fd !== undefined && now - this.checkedAt < REOPEN_CHECK_MS) return this.fd;
    this.checkedAt = now;
    const inode = statSync(this.walPath).ino;
    if (this.fd === undefined || inode !== this.inode) {
      this.close();
      this.fd = openSync(this.walPath, "r");
      this.inode = fstatSync(this.fd).ino;
    }
    return this.fd;
  }
}
