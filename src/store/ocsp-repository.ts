import type {
  CertIdHash,
  CertificateRevocationStatus,
  OcspRepository,
  OcspSignerRecord,
  StoredOcspResponse,
} from "../revocation/ports.js";
import type { SqliteDatabase } from "./database.js";

interface SaveItem {
  readonly response: StoredOcspResponse;
  readonly signedStatus: CertificateRevocationStatus["kind"];
}

export class SqliteOcspRepository implements OcspRepository {
  private readonly statements;

  private readonly saveMany: (items: readonly SaveItem[]) => StoredOcspResponse[];

  constructor(db: SqliteDatabase) {
    this.statements = {
      newestSigner: db.prepare("SELECT * FROM ocsp_signers WHERE authority_id = ? ORDER BY not_after DESC LIMIT 1"),
      claimSignerCreation: db.prepare(
        `INSERT INTO ocsp_signer_claims (authority_id, claimed_at) VALUES (?, ?)
         ON CONFLICT (authority_id) DO UPDATE SET claimed_at = excluded.claimed_at WHERE ocsp_signer_claims.claimed_at < ?`,
      ),
      insertSigner: db.prepare(
        "INSERT INTO ocsp_signers (key_label, authority_id, certificate_der, not_before, not_after, created_at) VALUES (?, ?, ?, ?, ?, ?)",
      ),
      getResponse: db.prepare(
        "SELECT der, this_update, next_update FROM ocsp_responses WHERE authority_id = ? AND serial = ? AND hash_algorithm = ?",
      ),
      saveResponse: db.prepare(
        `INSERT INTO ocsp_responses (authority_id, serial, hash_algorithm, der, this_update, next_update) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (authority_id, serial, hash_algorithm) DO UPDATE SET der = excluded.der,
           this_update = excluded.this_update, next_update = excluded.next_update
         WHERE excluded.this_update >= ocsp_responses.this_update`,
      ),
      status: db.prepare(
        "SELECT revoked_at, revocation_reason FROM certificates WHERE serial = ? AND authority_id = ? AND state = 'issued'",
      ),
      due: db.prepare(
        `SELECT r.authority_id, r.serial, r.hash_algorithm FROM ocsp_responses r
         JOIN certificates c ON c.serial = r.serial
         WHERE r.next_update < ? AND c.not_after > ? ORDER BY r.next_update LIMIT ?`,
      ),
      dataVersion: db.prepare("PRAGMA data_version").pluck(),
      deleteExpired: db.prepare(
        "DELETE FROM ocsp_responses WHERE serial IN (SELECT serial FROM certificates WHERE not_after <= ?)",
      ),
    };
    this.saveMany = db.transaction((items: readonly SaveItem[]) =>
      items.filter(({ response, signedStatus }) => this.saveIfCurrent(response, signedStatus)).map(({ response }) => response),
    ).immediate;
  }

  async saveResponses(items: readonly SaveItem[]): Promise<StoredOcspResponse[]> {
    return items.length > 0 ? this.saveMany(items) : [];
  }

  async newestSigner(authorityId: string): Promise<OcspSignerRecord | undefined> {
    const row = this.statements.newestSigner.get(authorityId) as
      | { key_label: string; authority_id: string; certificate_der: Buffer; not_before: number; not_after: number; created_at: number }
      | undefined;
    return (
      row && {
        keyLabel: row.key_label,
        authorityId: row.authority_id,
        certificateDer: row.certificate_der,
        notBefore: new Date(row.not_before),
        notAfter: new Date(row.not_after),
        createdAt: new Date(row.created_at),
      }
    );
  }

  async claimSignerCreation(authorityId: string, now: Date, staleBefore: Date): Promise<boolean> {
    return this.statements.claimSignerCreation.run(authorityId, now.getTime(), staleBefore.getTime()).changes === 1;
  }

  async insertSigner(record: OcspSignerRecord): Promise<void> {
    this.statements.insertSigner.run(
      record.keyLabel,
      record.authorityId,
      record.certificateDer,
      record.notBefore.getTime(),
      record.notAfter.getTime(),
      record.createdAt.getTime(),
    );
  }

  async getResponse(authorityId: string, serial: string, hashAlgorithm: CertIdHash): Promise<StoredOcspResponse | undefined> {
    const row = this.statements.getResponse.get(authorityId, serial, hashAlgorithm) as
      | { der: Buffer; this_update: number; next_update: number }
      | undefined;
    return (
      row && {
        authorityId,
        serial,
        hashAlgorithm,
        der: row.der,
        thisUpdate: new Date(row.this_update),
        nextUpdate: new Date(row.next_update),
      }
    );
  }

  async saveResponse(response: StoredOcspResponse, signedStatus: CertificateRevocationStatus["kind"]): Promise<boolean> {
    return this.saveMany([{ response, signedStatus }]).length === 1;
  }

  /** Inside the caller's transaction: the status check and the upsert see the same database state. */
  private saveIfCurrent(response: StoredOcspResponse, signedStatus: CertificateRevocationStatus["kind"]): boolean {
    if (this.statusNow(response.authorityId, response.serial).kind !== signedStatus) return false;
    this.statements.saveResponse.run(
      response.authorityId,
      response.serial,
      response.hashAlgorithm,
      response.der,
      response.thisUpdate.getTime(),
      response.nextUpdate.getTime(),
    );
    return true;
  }

  async status(authorityId: string, serial: string): Promise<CertificateRevocationStatus> {
    return this.statusNow(authorityId, serial);
  }

  private statusNow(authorityId: string, serial: string): CertificateRevocationStatus {
    const row = this.statements.status.get(serial, authorityId) as
      | { revoked_at: number | null; revocation_reason: string | null }
      | undefined;
    if (!row) return { kind: "unknown" };
    if (row.revoked_at === null) return { kind: "good" };
    return { kind: "revoked", revokedAt: new Date(row.revoked_at), reason: row.revocation_reason ?? "UNSPECIFIED" };
  }

  async responsesDue(before: Date, now: Date, limit: number): Promise<{ authorityId: string; serial: string; hashAlgorithm: CertIdHash }[]> {
    const rows = this.statements.due.all(before.getTime(), now.getTime(), limit) as {
      authority_id: string;
      serial: string;
      hash_algorithm: CertIdHash;
    }[];
    return rows.map((row) => ({ authorityId: row.authority_id, serial: row.serial, hashAlgorithm: row.hash_algorithm }));
  }

  externalChangeCounter(): number {
    return Number(this.statements.dataVersion.get());
  }

  async deleteExpired(now: Date): Promise<number> {
    return this.statements.deleteExpired.run(now.getTime()).changes;
  }
}
