import type {
  ApiKeyRecord,
  ApiKeyRepository,
  ApiKeyRole,
  EnrollmentTokenRecord,
  EnrollmentTokenRepository,
  RegistrationRecord,
  RegistrationRepository,
} from "../policy/model.js";
import { BadUserInputError } from "../common/errors.js";
import { inTransaction, type SqliteDatabase } from "./database.js";

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

interface ApiKeyRow {
  id: string;
  name: string;
  role: ApiKeyRole;
  key_hash: Buffer;
  created_at: number;
  revoked_at: number | null;
  expires_at: number | null;
}

const apiKeyFromRow = (row: ApiKeyRow): ApiKeyRecord => ({
  id: row.id,
  name: row.name,
  role: row.role,
  keyHash: row.key_hash,
  createdAt: new Date(row.created_at),
  revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
  expiresAt: row.expires_at === null ? null : new Date(row.expires_at),
});

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

interface EnrollmentTokenRow {
  id: string;
  token_hash: Buffer;
  spiffe_id: string;
  dns_names: string;
  max_ttl_seconds: number;
  expires_at: number;
  uses_left: number;
  created_by: string;
  created_at: number;
  registration_id: string | null;
  revoked_at: number | null;
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

function enrollmentTokenFromRow(row: EnrollmentTokenRow): EnrollmentTokenRecord {
  return {
    id: row.id,
    tokenHash: row.token_hash,
    spiffeId: row.spiffe_id,
    dnsNames: JSON.parse(row.dns_names) as string[],
    maxTtlSeconds: row.max_ttl_seconds,
    expiresAt: new Date(row.expires_at),
    usesLeft: row.uses_left,
    createdBy: row.created_by,
    createdAt: new Date(row.created_at),
    registrationId: row.registration_id,
    revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
  };
}

interface RegistrationRow {
  id: string;
  spiffe_id: string;
  dns_names: string;
  max_ttl_seconds: number;
  jwt_issuer: string | null;
  jwt_subject: string | null;
  created_by: string;
  created_at: number;
  updated_at: number;
}

const registrationFromRow = (row: RegistrationRow): RegistrationRecord => ({
  id: row.id,
  spiffeId: row.spiffe_id,
  dnsNames: JSON.parse(row.dns_names) as string[],
  maxTtlSeconds: row.max_ttl_seconds,
  jwtIssuer: row.jwt_issuer,
  jwtSubject: row.jwt_subject,
  createdBy: row.created_by,
  createdAt: new Date(row.created_at),
  updatedAt: new Date(row.updated_at),
});

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
