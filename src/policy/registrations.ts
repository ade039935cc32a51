import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../common/clock.js";
import { BadUserInputError, NotFoundError } from "../common/errors.js";
import { generateId } from "../common/secrets.js";
import { requireRole } from "./api-keys.js";
import { integerInRange, parseIdentityInput } from "./identity-input.js";
import type { RegistrationRecord, RegistrationRepository } from "./model.js";
import { actorOf, type Principal } from "./principal.js";

export interface RegistrationInput {
  readonly spiffeId: string;
  readonly dnsNames?: readonly string[] | null;
  readonly maxTtlSeconds?: number | null;
  readonly jwtIssuer?: string | null;
  readonly jwtSubject?: string | null;
}

export interface RegistrationSettings {
  readonly trustDomain: string;
  readonly maxTtlSeconds: number;
  /** The `iss` values of the configured JWT issuers: a registration for any other could never match. */
  readonly jwtIssuers: readonly string[];
}

/**
 * Registrations (admin): durable entries saying which identity a JWT subject may obtain — or, for tokens
 * made from one, the holder of such a token — with its DNS names and longest lifetime. Every change is
 * audited with the entry before and after.
 */
export class RegistrationService {
  constructor(
    private readonly repository: RegistrationRepository,
    private readonly audit: AuditLog,
    private readonly clock: Clock,
    private readonly settings: RegistrationSettings,
  ) {}

  async list(principal: Principal, spiffeIdPrefix?: string | null): Promise<RegistrationRecord[]> {
    requireRole(principal, "ADMIN");
    return await this.repository.list(spiffeIdPrefix ? { spiffeIdPrefix } : {});
  }

  async create(principal: Principal, input: RegistrationInput, remoteAddress?: string): Promise<RegistrationRecord> {
    requireRole(principal, "ADMIN");
    const now = this.clock.now();
    const record: RegistrationRecord = { id: generateId("reg"), ...this.validate(input), createdBy: actorOf(principal), createdAt: now, updatedAt: now };
    await this.refuseDuplicateSubject(record);
    await this.repository.insert(record);
    await this.record("registration.created", principal, record.id, remoteAddress, { after: describe(record) });
    return record;
  }

  async update(principal: Principal, id: string, input: RegistrationInput, remoteAddress?: string): Promise<RegistrationRecord> {
    requireRole(principal, "ADMIN");
    const existing = await this.existing(id);
    const record: RegistrationRecord = { ...existing, ...this.validate(input), updatedAt: this.clock.now() };
    await this.refuseDuplicateSubject(record);
    await this.repository.update(record);
    await this.record("registration.updated", principal, id, remoteAddress, { before: describe(existing), after: describe(record) });
    return record;
  }

  async delete(principal: Principal, id: string, remoteAddress?: string): Promise<RegistrationRecord> {
    requireRole(principal, "ADMIN");
    const existing = await this.existing(id);
    await this.repository.delete(id);
    await this.record("registration.deleted", principal, id, remoteAddress, { before: describe(existing) });
    return existing;
  }

  private validate(input: RegistrationInput): Pick<RegistrationRecord, "spiffeId" | "dnsNames" | "maxTtlSeconds" | "jwtIssuer" | "jwtSubject"> {
    const identity = parseIdentityInput(input.spiffeId, input.dnsNames, this.settings.trustDomain);
    const maxTtlSeconds = integerInRange(input.maxTtlSeconds, this.settings.maxTtlSeconds, 60, this.settings.maxTtlSeconds, "maxTtlSeconds");
    const jwtIssuer = input.jwtIssuer ?? null;
    const jwtSubject = input.jwtSubject ?? null;
    if ((jwtIssuer === null) !== (jwtSubject === null)) throw new BadUserInputError("give jwtIssuer and jwtSubject together, or neither");
    if (jwtIssuer !== null && !this.settings.jwtIssuers.includes(jwtIssuer)) {
      throw new BadUserInputError(`no JWT issuer ${JSON.stringify(jwtIssuer.slice(0, 200))} is configured`);
    }
    if (jwtSubject !== null && (jwtSubject.length === 0 || jwtSubject.length > 512)) throw new BadUserInputError("jwtSubject must be 1 to 512 characters");
    return { ...identity, maxTtlSeconds, jwtIssuer, jwtSubject };
  }

  private async refuseDuplicateSubject(record: RegistrationRecord): Promise<void> {
    if (record.jwtIssuer === null || record.jwtSubject === null) return;
    const other = await this.repository.findByJwt(record.jwtIssuer, record.jwtSubject);
    if (other && other.id !== record.id) throw new BadUserInputError(`registration ${other.id} already maps this JWT subject`);
  }

  private async existing(id: string): Promise<RegistrationRecord> {
    const record = await this.repository.get(id);
    if (!record) throw new NotFoundError(`no registration with id ${JSON.stringify(id.slice(0, 64))}`);
    return record;
  }

  private async record(
    type: "registration.created" | "registration.updated" | "registration.deleted",
    principal: Principal,
    id: string,
    remoteAddress: string | undefined,
    details: Record<string, unknown>,
  ): Promise<void> {
    await this.audit.record({ type, actor: actorOf(principal), outcome: "success", subject: id, ...(remoteAddress ? { remoteAddress } : {}), details });
  }
}

function describe(record: RegistrationRecord): Record<string, unknown> {
  return {
    spiffeId: record.spiffeId,
    dnsNames: record.dnsNames,
    maxTtlSeconds: record.maxTtlSeconds,
    jwtIssuer: record.jwtIssuer,
    jwtSubject: record.jwtSubject,
  };
}
