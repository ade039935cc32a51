import type {
  ApiKeyRecord,
  ApiKeyRepository,
  EnrollmentTokenRecord,
  EnrollmentTokenRepository,
  RegistrationRecord,
  RegistrationRepository,
} from "../../policy/model.js";
import { duplicateJwtSubjectError } from "../policy-repositories.js";
import type { PostgresDatabase } from "./database.js";
import { apiKeyFromRow, enrollmentTokenFromRow, registrationFromRow, type ApiKeyRow, type EnrollmentTokenRow, type RegistrationRow } from "../rows.js";

// Text is ordered and compared COLLATE "C" (byte order, as SQLite does) whatever the database's default collation.

const UNIQUE_VIOLATION = "23505";

function violatedConstraint(error: unknown): string | undefined {
  const { code, constraint } = (error ?? {}) as { code?: unknown; constraint?: unknown };
  return code === UNIQUE_VIOLATION && typeof constraint === "string" ? constraint : undefined;
}

export class PostgresApiKeyRepository implements ApiKeyRepository {
  constructor(private readonly db: PostgresDatabase) {}

  async insert(record: ApiKeyRecord): Promise<void> {
    await this.db.query("INSERT INTO api_keys (id, name, role, key_hash, created_at, revoked_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)", [
      record.id,
      record.name,
      record.role,
      record.keyHash,
      record.createdAt.getTime(),
      record.revokedAt?.getTime() ?? null,
      record.expiresAt?.getTime() ?? null,
    ]);
  }

  async findByHash(keyHash: Buffer): Promise<ApiKeyRecord | undefined> {
    const { rows } = await this.db.query<ApiKeyRow>("SELECT * FROM api_keys WHERE key_hash = $1", [keyHash]);
    return rows[0] && apiKeyFromRow(rows[0]);
  }

  async get(id: string): Promise<ApiKeyRecord | undefined> {
    const { rows } = await this.db.query<ApiKeyRow>("SELECT * FROM api_keys WHERE id = $1", [id]);
    return rows[0] && apiKeyFromRow(rows[0]);
  }

  async list(): Promise<ApiKeyRecord[]> {
    const { rows } = await this.db.query<ApiKeyRow>('SELECT * FROM api_keys ORDER BY created_at, id COLLATE "C"');
    return rows.map(apiKeyFromRow);
  }

  async revoke(id: string, at: Date): Promise<void> {
    // Conditional on revoked_at being unset, re-checked after any concurrent revocation commits: the first time stands.
    await this.db.query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL", [at.getTime(), id]);
  }

  async count(): Promise<number> {
    const { rows } = await this.db.query<{ count: string }>("SELECT count(*) AS count FROM api_keys");
    return Number(rows[0]?.count ?? 0);
  }
}

export class PostgresEnrollmentTokenRepository implements EnrollmentTokenRepository {
  constructor(private readonly db: PostgresDatabase) {}

  async insert(record: EnrollmentTokenRecord): Promise<void> {
    await this.db.query(
      `INSERT INTO enrollment_tokens (id, token_hash, spiffe_id, dns_names, max_ttl_seconds, expires_at, uses_left, created_by, created_at, registration_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [
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
      ],
    );
  }

  async findByHash(tokenHash: Buffer): Promise<EnrollmentTokenRecord | undefined> {
    const { rows } = await this.db.query<EnrollmentTokenRow>("SELECT * FROM enrollment_tokens WHERE token_hash = $1", [tokenHash]);
    return rows[0] && enrollmentTokenFromRow(rows[0]);
  }

  async get(id: string): Promise<EnrollmentTokenRecord | undefined> {
    const { rows } = await this.db.query<EnrollmentTokenRow>("SELECT * FROM enrollment_tokens WHERE id = $1", [id]);
    return rows[0] && enrollmentTokenFromRow(rows[0]);
  }

  async revoke(id: string, at: Date): Promise<number> {
    // The row lock taken by FOR UPDATE keeps an issuance on another node from consuming a use between the
    // read of what is left and the zeroing, so the count returned is exactly the uses this revocation took.
    return this.db.transaction(async (transaction) => {
      const { rows } = await transaction.query<{ uses_left: number }>("SELECT uses_left FROM enrollment_tokens WHERE id = $1 FOR UPDATE", [id]);
      await transaction.query("UPDATE enrollment_tokens SET uses_left = 0, revoked_at = coalesce(revoked_at, $1) WHERE id = $2", [at.getTime(), id]);
      return rows[0]?.uses_left ?? 0;
    });
  }
}

export class PostgresRegistrationRepository implements RegistrationRepository {
  constructor(private readonly db: PostgresDatabase) {}

  async insert(record: RegistrationRecord): Promise<void> {
    await this.refusingDuplicateJwtSubject(record, () =>
      this.db.query(
        `INSERT INTO registrations (id, spiffe_id, dns_names, max_ttl_seconds, jwt_issuer, jwt_subject, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [
          record.id,
          record.spiffeId,
          JSON.stringify(record.dnsNames),
          record.maxTtlSeconds,
          record.jwtIssuer,
          record.jwtSubject,
          record.createdBy,
          record.createdAt.getTime(),
          record.updatedAt.getTime(),
        ],
      ),
    );
  }

  async update(record: RegistrationRecord): Promise<void> {
    await this.refusingDuplicateJwtSubject(record, () =>
      this.db.query("UPDATE registrations SET spiffe_id = $1, dns_names = $2, max_ttl_seconds = $3, jwt_issuer = $4, jwt_subject = $5, updated_at = $6 WHERE id = $7", [
        record.spiffeId,
        JSON.stringify(record.dnsNames),
        record.maxTtlSeconds,
        record.jwtIssuer,
        record.jwtSubject,
        record.updatedAt.getTime(),
        record.id,
      ]),
    );
  }

  async delete(id: string): Promise<boolean> {
    const result = await this.db.query("DELETE FROM registrations WHERE id = $1", [id]);
    return result.rowCount === 1;
  }

  async get(id: string): Promise<RegistrationRecord | undefined> {
    const { rows } = await this.db.query<RegistrationRow>("SELECT * FROM registrations WHERE id = $1", [id]);
    return rows[0] && registrationFromRow(rows[0]);
  }

  async findByJwt(issuer: string, subject: string): Promise<RegistrationRecord | undefined> {
    const { rows } = await this.db.query<RegistrationRow>("SELECT * FROM registrations WHERE jwt_issuer = $1 AND jwt_subject = $2", [issuer, subject]);
    return rows[0] && registrationFromRow(rows[0]);
  }

  async list(filter: { spiffeIdPrefix?: string }): Promise<RegistrationRecord[]> {
    const { rows } =
      filter.spiffeIdPrefix === undefined
        ? await this.db.query<RegistrationRow>('SELECT * FROM registrations ORDER BY spiffe_id COLLATE "C", id COLLATE "C"')
        : await this.db.query<RegistrationRow>(
            'SELECT * FROM registrations WHERE spiffe_id COLLATE "C" >= $1 AND spiffe_id COLLATE "C" < $2 ORDER BY spiffe_id COLLATE "C", id COLLATE "C"',
            [filter.spiffeIdPrefix, `${filter.spiffeIdPrefix}\u{10FFFF}`],
          );
    return rows.map(registrationFromRow);
  }

  /**
   * The service checks for another registration of the same JWT subject first, but two nodes (or an admin
   * CLI) can pass that check together; the unique index registrations_jwt decides, and the loser gets the
   * same typed refusal the check gives.
   */
  private async refusingDuplicateJwtSubject(record: RegistrationRecord, write: () => Promise<unknown>): Promise<void> {
    try {
      await write();
    } catch (error) {
      if (violatedConstraint(error) === "registrations_jwt") throw duplicateJwtSubjectError(record, { cause: error });
      throw error;
    }
  }
}
