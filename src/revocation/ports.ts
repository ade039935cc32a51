/** The current CRL of one authority, as served at /crl/<authority-id>.crl. */
export interface StoredCrl {
  readonly authorityId: string;
  readonly crlNumber: bigint;
  readonly der: Buffer;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
}

/** Port implemented by the store. `save` refuses a CRL number that does not go up. */
export interface CrlRepository {
  save(crl: StoredCrl): void;
  get(authorityId: string): StoredCrl | undefined;
}
