import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../common/clock.js";
import { BadUserInputError, ForbiddenError, NotFoundError, UnauthenticatedError } from "../common/errors.js";
import { generateId, generateSecret, hashSecret } from "../common/secrets.js";
import type { ApiKeyRecord, ApiKeyRepository, ApiKeyRole } from "./model.js";
import { actorOf, type Principal } from "./principal.js";

const KEY_PREFIX: Record<ApiKeyRole, string> = { ADMIN: "anc_admin", AUDITOR: "anc_audit" };

/** A key meant to expire is rotated at least yearly; one that should not expire is created without a lifetime. */
export const MAX_API_KEY_LIFETIME_SECONDS = 366 * 86_400;

export interface CreatedApiKey {
  readonly id: string;
  readonly name: string;
  readonly role: ApiKeyRole;
  /** The secret, shown once. Only its hash is stored. */
  readonly key: string;
  readonly expiresAt: Date | null;
}

/** API keys for operators and auditors: created by an admin (or the first-start bootstrap), stored hashed. */
export class ApiKeyService {
  constructor(
    private readonly repository: ApiKeyRepository,
    private readonly audit: AuditLog,
    private readonly clock: Clock,
  ) {}

  /**
   * Resolves a bearer key to its principal. Unknown and revoked keys are the same failure to the caller; an
   * expired key says so, since only its holder can present it and the fix (a new key) differs.
   */
  async authenticate(bearer: string, remoteAddress?: string): Promise<Principal> {
    const record = await this.repository.findByHash(hashSecret(bearer));
    if (record && !record.revokedAt && record.expiresAt && record.expiresAt.getTime() <= this.clock.now().getTime()) {
      await this.audit.record({
        type: "authentication.failed",
        actor: "anonymous",
        outcome: "failure",
        code: "UNAUTHENTICATED",
        subject: record.id,
        ...(remoteAddress ? { remoteAddress } : {}),
        details: { credential: "api-key", reason: "expired", expiresAt: record.expiresAt.toISOString() },
      });
      throw new UnauthenticatedError(`the API key expired at ${record.expiresAt.toISOString()}: ask an admin for a new one`);
    }
    if (!record || record.revokedAt) {
      await this.audit.recordCountedRefusal({
        type: "authentication.failed",
        actor: "anonymous",
        outcome: "failure",
        code: "UNAUTHENTICATED",
        ...(remoteAddress ? { remoteAddress } : {}),
        details: { credential: "api-key" },
      });
      throw new UnauthenticatedError("the API key is not valid");
    }
    return { kind: "apiKey", id: record.id, name: record.name, role: record.role };
  }

  /** `expiresInSeconds`: the key's lifetime, up to a year; without it the key lasts until revoked. */
  async create(principal: Principal | "bootstrap", input: { name: string; role: ApiKeyRole; expiresInSeconds?: number | null }): Promise<CreatedApiKey> {
    if (principal !== "bootstrap") requireRole(principal, "ADMIN");
    const name = input.name.trim();
    if (name.length === 0 || name.length > 100) {
      throw new BadUserInputError("the API key name must be 1 to 100 characters");
    }
    const lifetime = input.expiresInSeconds;
    if (lifetime != null && (!Number.isInteger(lifetime) || lifetime < 1 || lifetime > MAX_API_KEY_LIFETIME_SECONDS)) {
      throw new BadUserInputError(`expiresInSeconds must be an integer from 1 to ${MAX_API_KEY_LIFETIME_SECONDS}, or omitted for a key that lasts until revoked`);
    }
    const key = generateSecret(KEY_PREFIX[input.role]);
    const id = generateId("key");
    const now = this.clock.now();
    const expiresAt = lifetime == null ? null : new Date(now.getTime() + lifetime * 1000);
    await this.repository.insert({
      id,
      name,
      role: input.role,
      keyHash: hashSecret(key),
      createdAt: now,
      revokedAt: null,
      expiresAt,
    });
    await this.audit.record({
      type: "apikey.created",
      actor: principal === "bootstrap" ? "system" : actorOf(principal),
      outcome: "success",
      subject: id,
      details: { name, role: input.role, expiresAt: expiresAt?.toISOString() ?? null },
    });
    return { id, name, role: input.role, key, expiresAt };
  }

  async list(principal: Principal): Promise<ApiKeyRecord[]> {
    requireRole(principal, "ADMIN");
    return await this.repository.list();
  }

  /** Revokes a key; revoking again returns it unchanged. An admin may revoke its own key (and is then locked out). */
  async revoke(principal: Principal, id: string, remoteAddress?: string): Promise<ApiKeyRecord> {
    requireRole(principal, "ADMIN");
    const existing = await this.repository.get(id);
    if (!existing) throw new NotFoundError(`no API key with id ${JSON.stringify(id.slice(0, 64))}`);
    if (existing.revokedAt) return existing;
    await this.repository.revoke(id, this.clock.now());
    await this.audit.record({
      type: "apikey.revoked",
      actor: actorOf(principal),
      outcome: "success",
      subject: id,
      ...(remoteAddress ? { remoteAddress } : {}),
      details: { name: existing.name, role: existing.role },
    });
    return await this.repository.get(id) as ApiKeyRecord;
  }

  async count(): Promise<number> {
    return await this.repository.count();
  }
}

/**
 * Auditors read and never change anything: every mutation is refused for them, whatever credentials the
 * request carries besides the key (an enrollment token included).
 */
export function requireMayChangeState(principal: Principal): void {
  if (principal.kind === "apiKey" && principal.role === "AUDITOR") {
    throw new ForbiddenError("the AUDITOR role is read-only");
  }
}

/** Throws unless the principal holds `role`: UNAUTHENTICATED without credentials, FORBIDDEN with the wrong ones. */
export function requireRole(principal: Principal, ...roles: ApiKeyRole[]): asserts principal is Extract<Principal, { kind: "apiKey" }> {
  if (principal.kind !== "apiKey") throw new UnauthenticatedError("this operation needs an API key (Authorization: Bearer <key>)");
  if (!roles.includes(principal.role)) {
    throw new ForbiddenError(`this operation needs the ${roles.join(" or ")} role`);
  }
}
