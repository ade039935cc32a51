import { BadUserInputError } from "../common/errors.js";
import { decodeCursor, encodeCursor, type Page } from "../common/page.js";
import type { SqliteDatabase } from "./database.js";

/**
 * One page of `table` in the order of an increasing integer column, after the position an opaque cursor
 * names: an index seek, so a deep page costs what the first does, and rows added meanwhile land after the
 * cursor instead of shifting pages. `where` and `parameters` are the filter (trusted SQL built by the caller).
 */
export function keysetPage<Row, Item>(options: {
  readonly db: SqliteDatabase;
  readonly table: string;
  readonly orderColumn: string;
  readonly cursorTag: string;
  readonly where: string;
  readonly parameters: readonly unknown[];
  readonly first: number;
  readonly after: string | undefined;
  readonly position: (row: Row) => number;
  readonly item: (row: Row) => Item;
}): Page<Item> {
  const { db, table, orderColumn, cursorTag, where, parameters, first } = options;
  const afterPosition = options.after === undefined ? 0 : decodeCursor(cursorTag, options.after);
  if (afterPosition === undefined) throw new BadUserInputError("the cursor is not one this service returned");
  const rows = db
    .prepare(`SELECT * FROM ${table} WHERE ${where} AND ${orderColumn} > ? ORDER BY ${orderColumn} LIMIT ?`)
    .all(...parameters, afterPosition, first + 1) as Row[];
  const page = rows.slice(0, first);
  return {
    items: page.map(options.item),
    cursors: page.map((row) => encodeCursor(cursorTag, options.position(row))),
    hasNextPage: rows.length > first,
    countTotal: () => Number(db.prepare(`SELECT count(*) FROM ${table} WHERE ${where}`).pluck().get(...parameters)),
  };
}
