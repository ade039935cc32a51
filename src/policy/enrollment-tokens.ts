import type { AuditLog } from "../audit/audit-log.js";
import type { IssuanceAuthorizer, IssuanceCredentials, IssuanceGrant } from "../ca/ports.js";
import type { Clock } from "../common/clock.js";
import { BadUserInputError, UnauthenticatedError } from "../common/errors.js";
import { generateId, generateSecret, hashSecret } from "../common/secrets.js";
import { requireRole } from "./api-keys.js";
import { InvalidIdentityError, parseDnsName, parseWorkloadSpiffeId } from "./identity.js";
import type { EnrollmentTokenRecord, EnrollmentTokenRepository } from "./model.js";
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
}

export interface CreatedEnrollmentToken {
  /** The secret, shown once. Only its hash is stored. */
  readonly token: string;
  readonly record: EnrollmentTokenRecord;
}

const TOKEN_PREFIX = "anc_enroll";

function integerInRange(value: number | null | undefined, fallback: number, min: number, max: number, field: string): number {
  const chosen = value ?? fallback;
  if (!Number.isInteger(chosen) || chosen < min || chosen > max) {
    throw new BadUserInputError(`${field} must be an integer from ${min} to ${max}`);
  }
  return chosen;
}

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
  ) {}

  create(principal: Principal, input: CreateEnrollmentTokenInput): CreatedEnrollmentToken {
    requireRole(principal, "ADMIN");
    let spiffeId: string;
    let dnsNames: string[];
    try {
      const parsed = parseWorkloadSpiffeId(input.spiffeId);
      if (parsed.trustDomain !== this.settings.trustDomain) {
        throw new InvalidIdentityError(
          `SPIFFE ID "${input.spiffeId}" is not in this CA's trust domain "${this.settings.trustDomain}"`,
        );
      }
      spiffeId = parsed.id;
      dnsNames = [...new Set((input.dnsNames ?? []).map(parseDnsName))];
    } catch (error) {
      if (error instanceof InvalidIdentityError) throw new BadUserInputError(error.message, { cause: error });
      throw error;
    }
    const maxTtlSeconds = integerInRange(
      input.maxTtlSeconds,
      this.settings.maxTtlSeconds,
      60,
      this.settings.maxTtlSeconds,
      "maxTtlSeconds",
    );
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
    };
    this.repository.insert(record);
    this.audit.record({
      type: "token.created",
      actor: actorOf(principal),
      outcome: "success",
      subject: record.id,
      details: { spiffeId, dnsNames, maxTtlSeconds, uses, expiresAt: record.expiresAt.toISOString() },
    });
    return { token, record };
  }

  /**
   * The grant of a presented token, checked for existence, expiry and remaining uses. The use itself is
   * taken later, in the issuance transaction, which re-checks both conditions atomically.
   */
  authorize(credentials: IssuanceCredentials, now: Date): IssuanceGrant {
    const token = credentials.token;
    if (!token) {
      throw new UnauthenticatedError("issuance needs an enrollment token (input.token) or a JWT (input.jwt)");
    }
    const record = token.startsWith(`${TOKEN_PREFIX}_`) ? this.repository.findByHash(hashSecret(token)) : undefined;
    if (!record || record.usesLeft <= 0 || record.expiresAt.getTime() <= now.getTime()) {
      throw new UnauthenticatedError("the enrollment token is unknown, expired or used up");
    }
    return {
      requester: `token:${record.id}`,
      spiffeId: record.spiffeId,
      dnsNames: record.dnsNames,
      maxTtlSeconds: record.maxTtlSeconds,
      consumeTokenHash: record.tokenHash,
    };
  }
}
