import type { AuditLog } from "../audit/audit-log.js";
import type { IssuanceAuthorizer, IssuanceCredentials, IssuanceGrant } from "../ca/ports.js";
import type { Clock } from "../common/clock.js";
import { BadUserInputError, NotFoundError, UnauthenticatedError } from "../common/errors.js";
import { generateId, generateSecret, hashSecret } from "../common/secrets.js";
import { requireRole } from "./api-keys.js";
import { integerInRange, parseIdentityInput } from "./identity-input.js";
import type { EnrollmentTokenRecord, EnrollmentTokenRepository, RegistrationRepository } from "./model.js";
import { actorOf, type Principal } from "./principal.js";

export interface EnrollmentTokenSettings {
  readonly trustDomain: string;
  /** Operator maximum for certificate lifetimes; a token may allow less, never more. */
  readonly maxTtlSeconds: number;
  readonly defaultTokenLifetimeSeconds: number;
  readonly maxTokenLifetimeSeconds: number;
  readonly maxUses: number;
}

export const DEFAULT_TOKEN_SETTINGS = {
  defaultTokenLifetimeSeconds: 3600,
  maxTokenLifetimeSeconds: 30 * 86400,
  maxUses: 10_000,
} as const;

export interface CreateEnrollmentTokenInput {
  readonly spiffeId: string;
  readonly dnsNames?: readonly string[] | null;
  readonly maxTtlSeconds?: number | null;
  readonly expiresInSeconds?: number | null;
  readonly uses?: number | null;
  /** Makes the token follow this registration: its identity must match, and its later edits narrow the token. */
  readonly registrationId?: string | null;
}

export interface CreatedEnrollmentToken {
  /** The secret, shown once. Only its hash is stored. */
  readonly token: string;
  readonly record: EnrollmentTokenRecord;
}

const TOKEN_PREFIX = "anc_enroll";

/**
 * One-time (or n-time) enrollment tokens bound to one identity. Admins create them; a workload presents one
 * with its first CSR. Consumption happens atomically with the serial reservation (see IssuanceLedger).
 */
export class EnrollmentTokenService implements IssuanceAuthorizer {
  constructor(
    private readonly repository: EnrollmentTokenRepository,
    private readonly audit: AuditLog,
    private readonly clock: Clock,
    private readonly settings: EnrollmentTokenSettings,
    private readonly registrations?: Pick<RegistrationRepository, "get">,
  ) {}

  async create(principal: Principal, input: CreateEnrollmentTokenInput): Promise<CreatedEnrollmentToken> {
    requireRole(principal, "ADMIN");
    const { spiffeId, dnsNames: requestedDnsNames } = parseIdentityInput(input.spiffeId, input.dnsNames, this.settings.trustDomain);
    const registration = input.registrationId ? await this.registrations?.get(input.registrationId) : undefined;
    if (input.registrationId && !registration) throw new NotFoundError(`no registration with id ${JSON.stringify(input.registrationId.slice(0, 64))}`);
    if (registration && registration.spiffeId !== spiffeId) {
      throw new BadUserInputError(`registration ${registration.id} is for ${registration.spiffeId}, not ${spiffeId}`);
    }
    const dnsNames = registration && input.dnsNames == null ? [...registration.dnsNames] : requestedDnsNames;
    const outside = registration ? dnsNames.filter((name) => !registration.dnsNames.includes(name)) : [];
    if (outside.length > 0) throw new BadUserInputError(`registration ${registration?.id} does not allow ${outside.join(", ")}`);
    const ceiling = registration ? Math.min(registration.maxTtlSeconds, this.settings.maxTtlSeconds) : this.settings.maxTtlSeconds;
    const maxTtlSeconds = integerInRange(input.maxTtlSeconds, ceiling, 60, ceiling, "maxTtlSeconds");
    const expiresInSeconds = integerInRange(
      input.expiresInSeconds,
      this.settings.defaultTokenLifetimeSeconds,
      60,
      this.settings.maxTokenLifetimeSeconds,
      "expiresInSeconds",
    );
    const uses = integerInRange(input.uses, 1, 1, this.settings.maxUses, "uses");
    const now = this.clock.now();
    const token = generateSecret(TOKEN_PREFIX);
    const record: EnrollmentTokenRecord = {
      id: generateId("tok"),
      tokenHash: hashSecret(token),
      spiffeId,
      dnsNames,
      maxTtlSeconds,
      expiresAt: new Date(now.getTime() + expiresInSeconds * 1000),
      usesLeft: uses,
      createdBy: actorOf(principal),
      createdAt: now,
      registrationId: registration?.id ?? null,
    };
    await this.repository.insert(record);
    await this.audit.record({
      type: "token.created",
      actor: actorOf(principal),
      outcome: "success",
      subject: record.id,
      details: { spiffeId, dnsNames, maxTtlSeconds, uses, expiresAt: record.expiresAt.toISOString(), registrationId: registration?.id ?? null },
    });
    return { token, record };
  }

  /**
   * Voids a token: its remaining uses are taken away at once, so it obtains nothing more, and the certificates
   * it obtained can no longer renew. Idempotent.
   */
  async revoke(principal: Principal, id: string, remoteAddress?: string): Promise<EnrollmentTokenRecord> {
    requireRole(principal, "ADMIN");
    const existing = await this.repository.get(id);
    if (!existing) throw new NotFoundError(`no enrollment token with id ${JSON.stringify(id.slice(0, 64))}`);
    const usesTaken = await this.repository.revoke(id, this.clock.now());
    if (usesTaken > 0 || !existing.revokedAt) {
      await this.audit.record({
        type: "token.revoked",
        actor: actorOf(principal),
        outcome: "success",
        subject: id,
        ...(remoteAddress ? { remoteAddress } : {}),
        details: { spiffeId: existing.spiffeId, usesTaken },
      });
    }
    return await this.repository.get(id) as EnrollmentTokenRecord;
  }

  /**
   * The grant of a presented token, checked for existence, expiry and remaining uses. The use itself is
   * taken later, in the issuance transaction, which re-checks both conditions atomically.
   */
  async authorize(credentials: IssuanceCredentials, now: Date): Promise<IssuanceGrant> {
    const token = credentials.token;
    if (!token) {
      throw new UnauthenticatedError("issuance needs an enrollment token (input.token) or a JWT (input.jwt)");
    }
    const record = token.startsWith(`${TOKEN_PREFIX}_`) ? await this.repository.findByHash(hashSecret(token)) : undefined;
    if (!record || record.revokedAt || record.usesLeft <= 0 || record.expiresAt.getTime() <= now.getTime()) {
      throw new UnauthenticatedError("the enrollment token is unknown, expired or used up");
    }
    if (!record.registrationId) {
      return {
        requester: `token:${record.id}`,
        spiffeId: record.spiffeId,
        dnsNames: record.dnsNames,
        maxTtlSeconds: record.maxTtlSeconds,
        consumeTokenHash: record.tokenHash,
        origin: { kind: "token", tokenId: record.id, registrationId: null, maxTtlSeconds: record.maxTtlSeconds },
      };
    }
    // Made from a registration: what the registration allows now bounds the token.
    const registration = await this.registrations?.get(record.registrationId);
    if (!registration || registration.spiffeId !== record.spiffeId) {
      throw new UnauthenticatedError("the registration this enrollment token was made from has been deleted or changed identity");
    }
    const maxTtlSeconds = Math.min(record.maxTtlSeconds, registration.maxTtlSeconds);
    return {
      requester: `token:${record.id}`,
      spiffeId: record.spiffeId,
      dnsNames: record.dnsNames.filter((name) => registration.dnsNames.includes(name)),
      maxTtlSeconds,
      consumeTokenHash: record.tokenHash,
      origin: { kind: "token", tokenId: record.id, registrationId: registration.id, maxTtlSeconds },
    };
  }
}
