import type { CrlRepository, StoredCrl } from "../../revocation/ports.js";
import type { PostgresDatabase } from "./database.js";

/** The current CRL of each authority on PostgreSQL: the counterpart of `SqliteCrlRepository`. */
export class PostgresCrlRepository implements CrlRepository {
  constructor(private readonly db: PostgresDatabase) {}

  async save(crl: StoredCrl): Promise<void> {
    // The upsert only replaces an older CRL: a stale writer can never roll the number back. Two nodes saving
    // at once queue on the row (or on the primary key for the first one), and the second's condition is
    // checked against the first's committed number.
    const { rowCount } = await this.db.query(
      `INSERT INTO crls (authority_id, crl_number, der, this_update, next_update) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (authority_id) DO UPDATE SET crl_number = excluded.crl_number, der = excluded.der,
         this_update = excluded.this_update, next_update = excluded.next_update
       WHERE excluded.crl_number > crls.crl_number`,
      [crl.authorityId, crl.crlNumber.toString(), crl.der, crl.thisUpdate.getTime(), crl.nextUpdate.getTime()],
    );
    if (rowCount === 0) {
      throw new RangeError(`CRL number ${crl.crlNumber} for ${crl.authorityId} is not above the stored one`);
    }
  }

  async get(authorityId: string): Promise<StoredCrl | undefined> {
    const { rows } = await this.db.query<{ authority_id: string; crl_number: string; der: Buffer; this_update: string; next_update: string }>(
      "SELECT * FROM crls WHERE authority_id = $1",
      [authorityId],
    );
    const row = rows[0];
    if (!row) return undefined;
    return {
      authorityId: row.authority_id,
      crlNumber: BigInt(row.crl_number),
      der: row.der,
      thisUpdate: new Date(Number(row.this_update)),
      nextUpdate: new Date(Number(row.next_update)),
    };
  }
}
