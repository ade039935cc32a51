import type { CrlRepository, StoredCrl } from "../revocation/ports.js";
import type { SqliteDatabase } from "./database.js";

interface CrlRow {
  authority_id: string;
  crl_number: number;
  der: Buffer;
  this_update: number;
  next_update: number;
}

export class SqliteCrlRepository implements CrlRepository {
  constructor(private readonly db: SqliteDatabase) {}

  async save(crl: StoredCrl): Promise<void> {
    // The upsert only replaces an older CRL: a stale writer can never roll the number back.
    const result = this.db
      .prepare(
        `INSERT INTO crls (authority_id, crl_number, der, this_update, next_update) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (authority_id) DO UPDATE SET crl_number = excluded.crl_number, der = excluded.der,
           this_update = excluded.this_update, next_update = excluded.next_update
         WHERE excluded.crl_number > crls.crl_number`,
      )
      .run(crl.authorityId, crl.crlNumber, crl.der, crl.thisUpdate.getTime(), crl.nextUpdate.getTime());
    if (result.changes === 0) {
      throw new RangeError(`CRL number ${crl.crlNumber} for ${crl.authorityId} is not above the stored one`);
    }
  }

  async get(authorityId: string): Promise<StoredCrl | undefined> {
    const row = this.db
      .prepare("SELECT * FROM crls WHERE authority_id = ?")
      .safeIntegers(true)
      .get(authorityId) as (Omit<CrlRow, "crl_number" | "this_update" | "next_update"> & Record<"crl_number" | "this_update" | "next_update", bigint>) | undefined;
    if (!row) return undefined;
    return {
      authorityId: row.authority_id,
      crlNumber: row.crl_number,
      der: row.der,
      thisUpdate: new Date(Number(row.this_update)),
      nextUpdate: new Date(Number(row.next_update)),
    };
  }
}
