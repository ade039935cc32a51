import { UnavailableError } from "../common/errors.js";

/** SQLite's result codes (extended ones start with the primary's name) and the errno of a full disk. */
const LOCK_CODES = ["SQLITE_BUSY", "SQLITE_LOCKED"];
const STORAGE_CODES = ["SQLITE_FULL", "SQLITE_IOERR", "ENOSPC", "EIO", "EDQUOT"];

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "";
}

/** Another connection holds the write lock: worth trying again a moment later. */
export function isLockContention(error: unknown): boolean {
  const code = codeOf(error);
  return LOCK_CODES.some((prefix) => code.startsWith(prefix));
}

/** The disk refuses the write (full, over quota, failing): no point in retrying at once. */
export function isStorageFailure(error: unknown): boolean {
  const code = codeOf(error);
  return STORAGE_CODES.some((prefix) => code === prefix || code.startsWith(`${prefix}_`));
}

/**
 * The typed, retryable error for a database that cannot take a write now, or undefined when `error` is
 * something else (a bug, a constraint), which callers keep as it is.
 */
export function unavailableFor(error: unknown): UnavailableError | undefined {
  if (error instanceof UnavailableError) return error;
  if (isLockContention(error)) {
    return new UnavailableError("the database is locked by another process; the request was not completed, retry it shortly", { cause: error });
  }
  if (isStorageFailure(error)) {
    return new UnavailableError("the database cannot be written (storage full or failing); the request was not completed, retry it later", {
      cause: error,
    });
  }
  return undefined;
}

/** Rethrows a lock or storage failure as UnavailableError, anything else unchanged. */
export function asStorageError(error: unknown): unknown {
  return unavailableFor(error) ?? error;
}
