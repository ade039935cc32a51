import type { AuditLog } from "../audit/audit-log.js";
import type { CertificateOwnership } from "../ca/certificate-ownership.js";
import type { CertificateRecord } from "../ca/model.js";
import type { CertificateQuery } from "../ca/ports.js";
import { normaliseSerial } from "../ca/serial.js";
import type { Clock } from "../common/clock.js";
import { ForbiddenError, InternalError, NotFoundError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import { requireRole } from "../policy/api-keys.js";
import { actorOf, type Principal } from "../policy/principal.js";
import type { RevocationRepository } from "./ports.js";
import type { RevocationReason } from "./reasons.js";


/**
 * Revokes certificates. Revoking twice is idempotent: the first time and reason stand. Every revocation is
 * audited and, before the call returns, rebuilds the issuer's CRL and re-signs the stored OCSP responses, so
 * the next CRL fetch and the next OCSP lookup both see it.
 */
export class RevocationService {
  constructor(
    private readonly deps: {
      readonly repository: RevocationRepository;
      readonly certificates: CertificateQuery;
      readonly audit: AuditLog;
      readonly clock: Clock;
      readonly logger: Logger;
      /** Called after a revocation is durable; the CRL publisher's rebuild. */
      readonly onRevoked: (authorityId: string, serial: string) => Promise<void>;
      /** Lets a workload revoke its own certificate over mutual TLS; admins only without it. */
      readonly ownership?: CertificateOwnership;
    },
  ) {}

  /**
   * Admins revoke any certificate; a workload may revoke its own, presenting it as the TLS client certificate
   * (`clientCertificate`), for example when its key is compromised.
   */
  async revoke(
    principal: Principal,
    serial: string,
    reason: RevocationReason = "UNSPECIFIED",
    clientCertificate?: Buffer,
  ): Promise<CertificateRecord> {
    const normalised = normaliseSerial(serial);
    const now = this.deps.clock.now();
    const actor = await this.authorize(principal, normalised, now, clientCertificate);
    // Whoever holds a compromised key may have renewed with it before the owner noticed: the renewals go too.
    const successorAudit =
      reason === "KEY_COMPROMISE"
        ? (successor: string) => ({
            type: "certificate.revoked" as const,
            actor,
            outcome: "success" as const,
            subject: successor,
            details: { reason, lineageOf: normalised },
          })
        : undefined;
    const outcome = await this.deps.repository.revoke(
      normalised,
      reason,
      now,
      { type: "certificate.revoked", actor, outcome: "success", subject: normalised, details: { reason } },
      successorAudit,
    );
    if (outcome.kind === "not-found") throw new NotFoundError(`no issued certificate has serial ${normalised}`);
    const changed = [
      ...(outcome.kind === "revoked" ? [{ serial: normalised, authorityId: outcome.authorityId }] : []),
      ...outcome.successors,
    ];
    // All at once: the CRL publisher folds concurrent rebuilds of one authority into one more build, so a
    // lineage costs about two CRL signatures rather than one per certificate.
    await Promise.all(
      changed.map(async ({ serial: revokedSerial, authorityId }) => {
        try {
          await this.deps.onRevoked(authorityId, revokedSerial);
        } catch (error) {
          // The revocation stands (it is durable); the CRL timer retries. Say so rather than hide it.
          this.deps.logger.error({ err: error, serial: revokedSerial }, "CRL rebuild after revocation failed");
        }
      }),
    );
    const record = await this.deps.certificates.get(normalised, now);
    if (!record) throw new InternalError("a revoked certificate could not be read back");
    return record;
  }

  /** The actor of an allowed revocation: an admin key, or the certificate revoking itself. */
  private async authorize(principal: Principal, serial: string, now: Date, clientCertificate: Buffer | undefined): Promise<string> {
    if (principal.kind === "apiKey" || !clientCertificate || !this.deps.ownership) {
      requireRole(principal, "ADMIN");
      return actorOf(principal);
    }
    const owner = await this.deps.ownership.authenticate(clientCertificate, now);
    if (owner.serial !== serial) throw new ForbiddenError("a certificate may revoke only itself; other revocations need an admin API key");
    return `certificate:${owner.serial}`;
  }
}
