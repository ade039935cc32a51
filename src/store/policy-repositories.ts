import type {
  ApiKeyRecord,
  ApiKeyRepository,
  EnrollmentTokenRecord,
  EnrollmentTokenRepository,
  RegistrationRecord,
  RegistrationRepository,
} from "../policy/model.js";
import { BadUserInputError } from "../common/errors.js";
import { inTransaction, type SqliteDatabase } from "./database.js";
import { apiKeyFromRow, enrollmentTokenFromRow, registrationFromRow, type ApiKeyRow, type EnrollmentTokenRow, type RegistrationRow } from "./rows.js";

/**
 * The refusal for a registration whose JWT issuer and subject another registration already maps, when the
 * unique index rather than the service's own check catches it (two writers passing the check together).
 */
export function duplicateJwtSubjectError(record: Pick<RegistrationRecord, "jwtIssuer" | "jwtSubject">, options?: { cause?: unknown }): BadUserInputError {
  const subject = JSON.stringify(record.jwtSubject?.slice(0, 200));
  return new BadUserInputError(`another registration already maps JWT subject ${subject} of this issuer`, options);
}

/** SQLite names the columns of the violated unique index in its message, e.g. `registrations.jwt_issuer, ...`. */
function isUniqueViolationOf(error: unknown, column: string): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return code === "SQLITE_CONSTRAINT_UNIQUE" && typeof message === "string" && message.includes(column);
}

export class SqliteApiKeyRepository implements ApiKeyRepository {
  private readonly byHash;

  constructor(private readonly db: SqliteDatabase) {
    this.byHash = db.prepare("SELECT * FROM api_keys WHERE key_hash = ?");
  }

  async insert(record: ApiKeyRecord): Promise<void> {
    this.db
      .prepare("INSERT INTO api_keys (id, name, role, key_hash, created_at, revoked_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
      .run(
        record.id,
        record.name,
        record.role,
        record.keyHash,
        record.createdAt.getTime(),
        record.revokedAt?.getTime() ?? null,
        record.expiresAt?.getTime() ?? null,
      );
  }

  async findByHash(keyHash: Buffer): Promise<ApiKeyRecord | undefined> {
    const row = this.byHash.get(keyHash) as ApiKeyRow | undefined;
    return row && apiKeyFromRow(row);
  }

  async get(id: string): Promise<ApiKeyRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM api_keys WHERE id = ?").get(id) as ApiKeyRow | undefined;
    return row && apiKeyFromRow(row);
  }

  async list(): Promise<ApiKeyRecord[]> {
    return (this.db.prepare("SELECT * FROM api_keys ORDER BY created_at, id").all() as ApiKeyRow[]).map(apiKeyFromRow);
  }

  async revoke(id: string, at: Date): Promise<void> {
    this.db.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL").run(at.getTime(), id);
  }

  async count(): Promise<number> {
    return Number(this.db.prepare("SELECT count(*) FROM api_keys").pluck().get());
  }
}

export class SqliteEnrollmentTokenRepository implements EnrollmentTokenRepository {
  private readonly byHash;

  constructor(private readonly db: SqliteDatabase) {
    this.byHash = db.prepare("SELECT * FROM enrollment_tokens WHERE token_hash = ?");
  }

  async insert(record: EnrollmentTokenRecord): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO enrollment_tokens (id, token_hash, spiffe_id, dns_names, max_ttl_seconds, expires_at, uses_left, created_by, created_at, registration_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        record.id,
        record.tokenHash,
        record.spiffeId,
        JSON.stringify(record.dnsNames),
        record.maxTtlSeconds,
        record.expiresAt.getTime(),
        record.usesLeft,
        record.createdBy,
        record.createdAt.getTime(),
        record.registrationId ?? null,
      );
  }

  async findByHash(tokenHash: Buffer): Promise<EnrollmentTokenRecord | undefined> {
    const row = this.byHash.get(tokenHash) as EnrollmentTokenRow | undefined;
    return row && enrollmentTokenFromRow(row);
  }

  async get(id: string): Promise<EnrollmentTokenRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM enrollment_tokens WHERE id = ?").get(id) as EnrollmentTokenRow | undefined;
    return row && enrollmentTokenFromRow(row);
  }

  async revoke(id: string, at: Date): Promise<number> {
    return inTransaction(this.db, () => {
      const left = this.db.prepare("SELECT uses_left FROM enrollment_tokens WHERE id = ?").pluck().get(id) as number | undefined;
      this.db.prepare("UPDATE enrollment_tokens SET uses_left = 0, revoked_at = coalesce(revoked_at, ?) WHERE id = ?").run(at.getTime(), id);
      return left ?? 0;
    });
  }
}

export class SqliteRegistrationRepository implements RegistrationRepository {
  constructor(private readonly db: SqliteDatabase) {}

  async insert(record: RegistrationRecord): Promise<void> {
    this.refusingDuplicateJwtSubject(record, () =>
      this.db
        .prepare(
          `INSERT INTO registrations (id, spiffe_id, dns_names, max_ttl_seconds, jwt_issuer, jwt_subject, created_by, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          record.id,
          record.spiffeId,
          JSON.stringify(record.dnsNames),
          record.maxTtlSeconds,
          record.jwtIssuer,
          record.jwtSubject,
          record.createdBy,
          record.createdAt.getTime(),
          record.updatedAt.getTime(),
        ),
    );
  }

  async update(record: RegistrationRecord): Promise<void> {
    this.refusingDuplicateJwtSubject(record, () =>
      this.db
        .prepare("UPDATE registrations SET spiffe_id = ?, dns_names = ?, max_ttl_seconds = ?, jwt_issuer = ?, jwt_subject = ?, updated_at = ? WHERE id = ?")
        .run(record.spiffeId, JSON.stringify(record.dnsNames), record.maxTtlSeconds, record.jwtIssuer, record.jwtSubject, record.updatedAt.getTime(), record.id),
    );
  }

  async delete(id: string): Promise<boolean> {
    return this.db.prepare("DELETE FROM registrations WHERE id = ?").run(id).changes === 1;
  }

  async get(id: string): Promise<RegistrationRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM registrations WHERE id = ?").get(id) as RegistrationRow | undefined;
    return row && registrationFromRow(row);
  }

  async findByJwt(issuer: string, subject: string): Promise<RegistrationRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM registrations WHERE jwt_issuer = ? AND jwt_subject = ?").get(issuer, subject) as RegistrationRow | undefined;
    return row && registrationFromRow(row);
  }

  async list(filter: { spiffeIdPrefix?: string }): Promise<RegistrationRecord[]> {
    const rows =
      filter.spiffeIdPrefix === undefined
        ? this.db.prepare("SELECT * FROM registrations ORDER BY spiffe_id, id").all()
        : this.db
            .prepare("SELECT * FROM registrations WHERE spiffe_id >= ? AND spiffe_id < ? ORDER BY spiffe_id, id")
            .all(filter.spiffeIdPrefix, `${filter.spiffeIdPrefix}\u{10FFFF}`);
    return (rows as RegistrationRow[]).map(registrationFromRow);
  }

  /** The service checks for a duplicate first; the unique index catches a writer in another process passing that check too. */
  private refusingDuplicateJwtSubject(record: RegistrationRecord, write: () => unknown): void {
    try {
      write();
    } catch (error) {
      if (isUniqueViolationOf(error, "registrations.jwt_issuer")) throw duplicateJwtSubjectError(record, { cause: error });
      throw error;
    }
  }
}
