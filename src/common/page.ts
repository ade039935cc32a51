import { BadUserInputError } from "./errors.js";

/** One page of a Relay-style connection, as the domain returns it. */
export interface Page<T> {
  readonly items: readonly T[];
  /** Opaque cursor of each item, same order as `items`. */
  readonly cursors: readonly string[];
  readonly hasNextPage: boolean;
  /**
   * Rows matching the filter, all pages together. A function: counting costs more than a page, so only on
   * demand. A promise where the count is another round trip to a database server.
   */
  countTotal(): number | Promise<number>;
}

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;

/** Cursors are opaque to clients: a tag and a position, base64url. */
export function encodeCursor(tag: string, position: number): string {
  return Buffer.from(`${tag}:${position}`).toString("base64url");
}

/** The position in a cursor made by `encodeCursor` with the same tag; undefined for anything else. */
export function decodeCursor(tag: string, cursor: string): number | undefined {
  const text = Buffer.from(cursor, "base64url").toString("utf8");
  if (!text.startsWith(`${tag}:`)) return undefined;
  const digits = text.slice(tag.length + 1);
  return /^\d{1,15}$/.test(digits) ? Number(digits) : undefined;
}

/** Validates a requested page size (`first`), defaulting when absent. */
export function pageSize(first: number | null | undefined): number {
  const size = first ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(size) || size < 1 || size > MAX_PAGE_SIZE) {
    throw new BadUserInputError(`first must be an integer from 1 to ${MAX_PAGE_SIZE}`);
  }
  return size;
}
