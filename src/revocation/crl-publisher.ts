import type { Issuer } from "../ca/issuer.js";
import { encodeCrlEntries } from "../ca/x509/crl.js";
import type { Clock } from "../common/clock.js";
import type { Logger } from "../common/logger.js";
import type { CrlRepository, RevocationRepository } from "./ports.js";
import { REVOCATION_REASON_CODES, isRevocationReason } from "./reasons.js";

export interface CrlSettings {
  /** nextUpdate - thisUpdate of intermediate CRLs. */
  readonly validitySeconds: number;
}

/**
 * Builds and signs the CRL of each issuing authority, stores it, and serves it from storage (the HSM is never
 * on a request's path). A CRL is rebuilt right after every revocation and, on a timer, once a third of its
 * validity has passed, so relying parties always find one well before nextUpdate.
 *
 * Expired certificates drop off, but not at once (RFC 5280 §3.3): an entry stays until it has appeared on one
 * scheduled CRL (a timer's refresh, not the out-of-cycle one a revocation triggers) whose thisUpdate is after
 * the certificate's notAfter; that is recorded in the database once the CRL is stored, and later CRLs leave
 * the entry out. We do not assert expiredCertsOnCRL. CRL numbers are reserved in the database before
 * signing, so they only go up, across restarts and across service processes.
 */
export class CrlPublisher {
  private readonly building = new Map<string, Promise<void>>();
  /** Builds asked for while one runs, and whether any of those asks was a scheduled refresh. */
  private readonly again = new Map<string, boolean>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: {
      readonly repository: RevocationRepository;
      readonly crls: CrlRepository;
      readonly issuers: () => readonly Issuer[];
      readonly clock: Clock;
      readonly logger: Logger;
      readonly settings: CrlSettings;
    },
  ) {}

  /** Publishes a fresh CRL for every issuer whose stored one is missing or past a third of its life, then keeps doing so. */
  async start(checkEveryMs = 60_000): Promise<void> {
    await this.refreshStale();
    this.timer = setInterval(() => {
      this.refreshStale().catch((error: unknown) => this.deps.logger.error({ err: error }, "CRL refresh failed"));
    }, checkEveryMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * Rebuilds the CRL of one authority now. Calls that arrive while a build runs are folded into one more
   * build after it, so a burst of revocations costs two signatures, not one per revocation. `scheduled`
   * marks the periodic refresh, the only kind of CRL after which an expired entry may leave.
   */
  rebuild(authorityId: string, { scheduled = false }: { readonly scheduled?: boolean } = {}): Promise<void> {
    const running = this.building.get(authorityId);
    if (running) {
      this.again.set(authorityId, (this.again.get(authorityId) ?? false) || scheduled);
      return running.then(() => this.building.get(authorityId));
    }
    const build = this.build(authorityId, scheduled).finally(() => {
      this.building.delete(authorityId);
      const again = this.again.get(authorityId);
      if (again === undefined) return;
      this.again.delete(authorityId);
      void this.rebuild(authorityId, { scheduled: again });
    });
    this.building.set(authorityId, build);
    return build;
  }

  /** Rebuilds every missing or ageing CRL now (also those of issuers that appeared since start). */
  async refreshStale(): Promise<void> {
    const now = this.deps.clock.now().getTime();
    for (const issuer of this.deps.issuers()) {
      const stored = await this.deps.crls.get(issuer.id);
      const refreshAt = stored
        ? stored.thisUpdate.getTime() + (stored.nextUpdate.getTime() - stored.thisUpdate.getTime()) / 3
        : 0;
      if (now >= refreshAt) await this.rebuild(issuer.id, { scheduled: true });
    }
  }

  private async build(authorityId: string, scheduled: boolean): Promise<void> {
    const issuer = this.deps.issuers().find((candidate) => candidate.id === authorityId);
    if (!issuer) return;
    const thisUpdate = this.deps.clock.now();
    const nextUpdate = new Date(thisUpdate.getTime() + this.deps.settings.validitySeconds * 1000);
    const crlNumber = await this.deps.repository.reserveCrlNumber(authorityId);
    let count = 0;
    const listedAfterExpiry: string[] = [];
    const entries = await encodeCrlEntries(
      (async function* (repository: RevocationRepository) {
        for await (const entry of repository.revokedEntries(authorityId)) {
          count++;
          if (entry.notAfter.getTime() < thisUpdate.getTime()) listedAfterExpiry.push(entry.serial);
          const code = isRevocationReason(entry.reason) ? REVOCATION_REASON_CODES[entry.reason] : 0;
          yield { serialNumber: Buffer.from(entry.serial, "hex"), revocationDate: entry.revokedAt, ...(code ? { reason: code } : {}) };
        }
      })(this.deps.repository),
    );
    const der = await issuer.issueCrl({ crlNumber, thisUpdate, nextUpdate, entries });
    try {
      await this.deps.crls.save({ authorityId, crlNumber, der, thisUpdate, nextUpdate });
    } catch (error) {
      // Another process published a higher number meanwhile: theirs is at least as fresh.
      if (!(error instanceof RangeError)) throw error;
      return;
    }
    // Only once the CRL is stored (and so served): an entry must have been published after expiry to leave.
    if (scheduled) await this.deps.repository.recordListedAfterExpiry(authorityId, listedAfterExpiry, thisUpdate);
    this.deps.logger.info({ authorityId, crlNumber: crlNumber.toString(), entries: count, bytes: der.length }, "CRL published");
  }
}
