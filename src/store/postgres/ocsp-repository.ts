import type {
  CertIdHash,
  CertificateRevocationStatus,
  OcspRepository,
  OcspSignerRecord,
  StoredOcspResponse,
} from "../../revocation/ports.js";
import type { PostgresChangeFeed } from "./change-feed.js";
import type { PostgresDatabase, PostgresTransaction } from "./database.js";

interface SaveItem {
  readonly response: StoredOcspResponse;
  readonly signedStatus: CertificateRevocationStatus["kind"];
}

type StatusRow = { revoked_at: string | null; revocation_reason: string | null };

function statusFromRow(row: StatusRow | undefined): CertificateRevocationStatus {
  if (!row) return { kind: "unknown" };
  if (row.revoked_at === null) return { kind: "good" };
  return { kind: "revoked", revokedAt: new Date(Number(row.revoked_at)), reason: row.revocation_reason ?? "UNSPECIFIED" };
}

const STATUS = "SELECT revoked_at, revocation_reason FROM certificates WHERE serial = $1 AND authority_id = $2 AND state = 'issued'";

/**
 * Responder certificates and pre-signed responses on PostgreSQL: the counterpart of `SqliteOcspRepository`.
 * `externalChangeCounter` stays synchronous (the responder asks it on every cached lookup): it reads the
 * change feed's counters instead of the database.
 */
export class PostgresOcspRepository implements OcspRepository {
  constructor(
    private readonly db: PostgresDatabase,
    private readonly changes: PostgresChangeFeed,
  ) {}

  async newestSigner(authorityId: string): Promise<OcspSignerRecord | undefined> {
    const { rows } = await this.db.query<{
      key_label: string;
      authority_id: string;
      certificate_der: Buffer;
      not_before: string;
      not_after: string;
      created_at: string;
    }>("SELECT * FROM ocsp_signers WHERE authority_id = $1 ORDER BY not_after DESC LIMIT 1", [authorityId]);
    const row = rows[0];
    return (
      row && {
        keyLabel: row.key_label,
        authorityId: row.authority_id,
        certificateDer: row.certificate_der,
        notBefore: new Date(Number(row.not_before)),
        notAfter: new Date(Number(row.not_after)),
        createdAt: new Date(Number(row.created_at)),
      }
    );
  }

  async claimSignerCreation(authorityId: string, now: Date, staleBefore: Date): Promise<boolean> {
    // Of two nodes claiming at once, the second's upsert waits on the first's row and then re-checks its
    // condition against the fresh claim, which is not stale: exactly one gets true.
    const { rowCount } = await this.db.query(
      `INSERT INTO ocsp_signer_claims (authority_id, claimed_at) VALUES ($1, $2)
       ON CONFLICT (authority_id) DO UPDATE SET claimed_at = excluded.claimed_at WHERE ocsp_signer_claims.claimed_at < $3`,
      [authorityId, now.getTime(), staleBefore.getTime()],
    );
    return rowCount === 1;
  }

  async insertSigner(record: OcspSignerRecord): Promise<void> {
    await this.db.query(
      "INSERT INTO ocsp_signers (key_label, authority_id, certificate_der, not_before, not_after, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
      [record.keyLabel, record.authorityId, record.certificateDer, record.notBefore.getTime(), record.notAfter.getTime(), record.createdAt.getTime()],
    );
  }

  async getResponse(authorityId: string, serial: string, hashAlgorithm: CertIdHash): Promise<StoredOcspResponse | undefined> {
    const { rows } = await this.db.query<{ der: Buffer; this_update: string; next_update: string }>(
      "SELECT der, this_update, next_update FROM ocsp_responses WHERE authority_id = $1 AND serial = $2 AND hash_algorithm = $3",
      [authorityId, serial, hashAlgorithm],
    );
    const row = rows[0];
    return (
      row && {
        authorityId,
        serial,
        hashAlgorithm,
        der: row.der,
        thisUpdate: new Date(Number(row.this_update)),
        nextUpdate: new Date(Number(row.next_update)),
      }
    );
  }

  async saveResponse(response: StoredOcspResponse, signedStatus: CertificateRevocationStatus["kind"]): Promise<boolean> {
    return (await this.saveResponses([{ response, signedStatus }])).length === 1;
  }

  saveResponses(items: readonly SaveItem[]): Promise<StoredOcspResponse[]> {
    if (items.length === 0) return Promise.resolve([]);
    return this.db.transaction(async (transaction) => {
      const saved: StoredOcspResponse[] = [];
      for (const { response, signedStatus } of items) {
        if (await this.saveIfCurrent(transaction, response, signedStatus)) saved.push(response);
      }
      return saved;
    });
  }

  /**
   * The status check locks the certificate row (FOR SHARE) until the write commits: a revocation on another
   * node, an UPDATE of that row, either committed before and is seen here, or waits until this response is
   * stored and then makes the responder sign again. A response signed for `good` never overwrites one of a
   * revoked certificate.
   */
  private async saveIfCurrent(
    transaction: PostgresTransaction,
    response: StoredOcspResponse,
    signedStatus: CertificateRevocationStatus["kind"],
  ): Promise<boolean> {
    const { rows } = await transaction.query<StatusRow>(`${STATUS} FOR SHARE`, [response.serial, response.authorityId]);
    if (statusFromRow(rows[0]).kind !== signedStatus) return false;
    await transaction.query(
      `INSERT INTO ocsp_responses (authority_id, serial, hash_algorithm, der, this_update, next_update) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (authority_id, serial, hash_algorithm) DO UPDATE SET der = excluded.der,
         this_update = excluded.this_update, next_update = excluded.next_update
       WHERE excluded.this_update >= ocsp_responses.this_update`,
      [
        response.authorityId,
        response.serial,
        response.hashAlgorithm,
        response.der,
        response.thisUpdate.getTime(),
        response.nextUpdate.getTime(),
      ],
    );
    return true;
  }

  async status(authorityId: string, serial: string): Promise<CertificateRevocationStatus> {
    const { rows } = await this.db.query<StatusRow>(STATUS, [serial, authorityId]);
    return statusFromRow(rows[0]);
  }

  async responsesDue(before: Date, now: Date, limit: number): Promise<{ authorityId: string; serial: string; hashAlgorithm: CertIdHash }[]> {
    const { rows } = await this.db.query<{ authority_id: string; serial: string; hash_algorithm: CertIdHash }>(
      `SELECT r.authority_id, r.serial, r.hash_algorithm FROM ocsp_responses r
       JOIN certificates c ON c.serial = r.serial
       WHERE r.next_update < $1 AND c.not_after > $2 ORDER BY r.next_update LIMIT $3`,
      [before.getTime(), now.getTime(), limit],
    );
    return rows.map((row) => ({ authorityId: row.authority_id, serial: row.serial, hashAlgorithm: row.hash_algorithm }));
  }

  /**
   * Changes whenever a commit may have changed an answer: a revocation, a stored response or responder
   * certificate, an authority. Unlike SQLite's data_version it also changes after this process's own
   * commits (PostgreSQL notifies every listener, the writer included): the responder then drops its cache
   * once more than needed, which costs a lookup, never a stale answer.
   */
  externalChangeCounter(): number {
    return this.changes.counter("revocation") + this.changes.counter("ocsp") + this.changes.counter("authorities");
  }

  async deleteExpired(now: Date): Promise<number> {
    const { rowCount } = await this.db.query("DELETE FROM ocsp_responses WHERE serial IN (SELECT serial FROM certificates WHERE not_after <= $1)", [
      now.getTime(),
    ]);
    return rowCount ?? 0;
  }
}
