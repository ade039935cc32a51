import { BadUserInputError } from "../../common/errors.js";
import { decodeCursor, encodeCursor, type Page } from "../../common/page.js";
import type { PostgresDatabase } from "./database.js";

/** A WHERE clause (without the keyword) with `?` placeholders, and its parameters. */
export interface Condition {
  readonly sql: string;
  readonly parameters: readonly unknown[];
}

/**
 * The conditions joined with AND, their `?` placeholders numbered from `$first` on, as pg wants them.
 * (Condition SQL therefore must not use the jsonb `?` operators.)
 */
export function numberedWhere(conditions: readonly Condition[], first = 1): { sql: string; parameters: unknown[] } {
  let next = first;
  const sql = conditions.length === 0 ? "TRUE" : conditions.map((condition) => `(${condition.sql})`).join(" AND ");
  return { sql: sql.replace(/\?/g, () => `$${next++}`), parameters: conditions.flatMap((condition) => condition.parameters) };
}

/**
 * The PostgreSQL form of `../keyset-page.ts`: one page of `table` in the order of an increasing integer
 * column after the position an opaque cursor names (an index seek; rows added meanwhile land after the
 * cursor). The order column must be assigned in commit order for a page never to miss a row committed after
 * it was read. `countTotal` is a promise: counting is another round trip.
 */
export async function postgresKeysetPage<Row extends Record<string, unknown>, Item>(options: {
  readonly db: PostgresDatabase;
  readonly table: string;
  readonly orderColumn: string;
  readonly cursorTag: string;
  readonly conditions: readonly Condition[];
  readonly first: number;
  readonly after: string | undefined;
  readonly item: (row: Row) => Item;
}): Promise<Page<Item>> {
  const { db, table, orderColumn, cursorTag, conditions, first } = options;
  const afterPosition = options.after === undefined ? 0 : decodeCursor(cursorTag, options.after);
  if (afterPosition === undefined) throw new BadUserInputError("the cursor is not one this service returned");
  const where = numberedWhere(conditions);
  const afterParameter = where.parameters.length + 1;
  const { rows } = await db.query<Row>(
    `SELECT * FROM ${table} WHERE ${where.sql} AND ${orderColumn} > $${afterParameter} ORDER BY ${orderColumn} LIMIT $${afterParameter + 1}`,
    [...where.parameters, afterPosition, first + 1],
  );
  const page = rows.slice(0, first);
  return {
    items: page.map(options.item),
    cursors: page.map((row) => encodeCursor(cursorTag, Number(row[orderColumn]))),
    hasNextPage: rows.length > first,
    countTotal: async () => Number((await db.query<{ total: string }>(`SELECT count(*) AS total FROM ${table} WHERE ${where.sql}`, where.parameters)).rows[0]?.total),
  };
}
