import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../common/clock.js";
import { AnchorageError, ForbiddenError } from "../common/errors.js";
import { subjectPublicKeyInfoOf, type CertificateOwnership } from "./certificate-ownership.js";
import type { IssuanceService, IssuedCertificate, RequestContext } from "./issuance-service.js";
import type { CertificateRecord } from "./model.js";
import type { OriginStanding } from "./ports.js";

export interface RenewalSettings {
  /** How long after expiry a certificate may still renew itself; 0 (the default) means not at all. */
  readonly graceSeconds: number;
  /** Whether a renewal may keep the current key; refused by default, since renewal is when keys rotate. */
  readonly allowSameKey: boolean;
}

export interface RenewRequest {
  readonly csr: string;
  readonly ttlSeconds?: number | null;
}

/**
 * Renewal over mutual TLS: the current certificate is the credential. The new certificate keeps the
 * identity exactly, gets a fresh lifetime and records its predecessor; the ledger refuses a second successor
 * of the same certificate atomically, so only the newest certificate of a lineage can renew.
 *
 * A lineage stays within the credential it started with (its origin, recorded on every certificate): a
 * renewal never gets a longer lifetime than that credential allowed, and is refused once the credential was
 * revoked or deleted. Certificates from before origins were recorded renew under the operator maximum.
 */
export class RenewalService {
  constructor(
    private readonly deps: {
      readonly ownership: CertificateOwnership;
      readonly issuance: IssuanceService;
      readonly audit: AuditLog;
      readonly clock: Clock;
      readonly maxTtlSeconds: number;
      readonly settings: RenewalSettings;
      readonly origins: OriginStanding;
    },
  ) {}

  async renew(clientCertificate: Buffer | undefined, request: RenewRequest, context: RequestContext = {}): Promise<IssuedCertificate> {
    let current: CertificateRecord | undefined;
    try {
      current = await this.deps.ownership.authenticate(clientCertificate, this.deps.clock.now(), this.deps.settings.graceSeconds);
      const refusal = current.origin ? await this.deps.origins.refusal(current.origin, current.spiffeId) : undefined;
      if (refusal) throw new ForbiddenError(`certificate ${current.serial} can no longer renew: ${refusal}`);
    } catch (error) {
      if (error instanceof AnchorageError) {
        await this.deps.audit.recordCountedRefusal({
          type: "issuance.refused",
          actor: current ? `certificate:${current.serial}` : clientCertificate ? "certificate:unverified" : "anonymous",
          ...(current ? { subject: current.spiffeId } : {}),
          outcome: "failure",
          code: error.code,
          ...(context.remoteAddress ? { remoteAddress: context.remoteAddress } : {}),
          details: { reason: error.message, renewal: true },
        });
      }
      throw error;
    }
    return this.deps.issuance.issueWithGrant(
      { csr: request.csr, ttlSeconds: request.ttlSeconds ?? null },
      {
        requester: `certificate:${current.serial}`,
        spiffeId: current.spiffeId,
        dnsNames: current.dnsNames,
        maxTtlSeconds: Math.min(this.deps.maxTtlSeconds, current.origin?.maxTtlSeconds ?? this.deps.maxTtlSeconds),
        ...(current.origin ? { origin: current.origin } : {}),
        renewal: {
          predecessorSerial: current.serial,
          predecessorSubjectPublicKeyInfo: subjectPublicKeyInfoOf(current.der),
          allowSameKey: this.deps.settings.allowSameKey,
        },
      },
      context,
    );
  }
}
