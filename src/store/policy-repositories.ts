import type {
  ApiKeyRecord,
  ApiKeyRepository,
  ApiKeyRole,
  EnrollmentTokenRecord,
  EnrollmentTokenRepository,
} from "../policy/model.js";
import type { SqliteDatabase } from "./database.js";

interface ApiKeyRow {
  id: string;
  name: string;
  role: ApiKeyRole;
  key_hash: Buffer;
  created_at: number;
  revoked_at: number | null;
}

const apiKeyFromRow = (row: ApiKeyRow): ApiKeyRecord => ({
  id: row.id,
  name: row.name,
  role: row.role,
  keyHash: row.key_hash,
  createdAt: new Date(row.created_at),
  revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
});

export class SqliteApiKeyRepository implements ApiKeyRepository {
  private readonly byHash;

  constructor(private readonly db: SqliteDatabase) {
    this.byHash = db.prepare("SELECT * FROM api_keys WHERE key_hash = ?");
  }

  insert(record: ApiKeyRecord): void {
    this.db
      .prepare("INSERT INTO api_keys (id, name, role, key_hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)")
      .run(record.id, record.name, record.role, record.keyHash, record.createdAt.getTime(), record.revokedAt?.getTime() ?? null);
  }

  findByHash(keyHash: Buffer): ApiKeyRecord | undefined {
    const row = this.byHash.get(keyHash) as ApiKeyRow | undefined;
    return row && apiKeyFromRow(row);
  }

  get(id: string): ApiKeyRecord | undefined {
    const row = this.db.prepare("SELECT * FROM api_keys WHERE id = ?").get(id) as ApiKeyRow | undefined;
    return row && apiKeyFromRow(row);
  }

  list(): ApiKeyRecord[] {
    return (this.db.prepare("SELECT * FROM api_keys ORDER BY created_at, id").all() as ApiKeyRow[]).map(apiKeyFromRow);
  }

  revoke(id: string, at: Date): void {
    this.db.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL").run(at.getTime(), id);
  }

  count(): number {
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
}

export class SqliteEnrollmentTokenRepository implements EnrollmentTokenRepository {
  private readonly byHash;

  constructor(private readonly db: SqliteDatabase) {
    this.byHash = db.prepare("SELECT * FROM enrollment_tokens WHERE token_hash = ?");
  }

  insert(record: EnrollmentTokenRecord): void {
    this.db
      .prepare(
        `INSERT INTO enrollment_tokens (id, token_hash, spiffe_id, dns_names, max_ttl_seconds, expires_at, uses_left, created_by, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
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
      );
  }

  findByHash(tokenHash: Buffer): EnrollmentTokenRecord | undefined {
    const row = this.byHash.get(tokenHash) as EnrollmentTokenRow | undefined;
    if (!row) return undefined;
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
    };
  }
}
