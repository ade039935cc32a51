import type { Issuer } from "../ca/issuer.js";
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
 * Expired certificates drop off: an entry is listed while its certificate is unexpired (RFC 5280 §5 allows
 * removal after expiry; we do not assert expiredCertsOnCRL). CRL numbers are reserved in the database before
 * signing, so they only go up, across restarts and across service processes.
 */
export class CrlPublisher {
  private readonly building = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
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
   * build after it, so a burst of revocations costs two signatures, not one per revocation.
   */
  rebuild(authorityId: string): Promise<void> {
    const running = this.building.get(authorityId);
    if (running) {
      this.again.add(authorityId);
      return running.then(() => this.building.get(authorityId));
    }
    const build = this.build(authorityId).finally(() => {
      this.building.delete(authorityId);
      if (this.again.delete(authorityId)) void this.rebuild(authorityId);
    });
    this.building.set(authorityId, build);
    return build;
  }

  /** Rebuilds every missing or ageing CRL now (also those of issuers that appeared since start). */
  async refreshStale(): Promise<void> {
    const now = this.deps.clock.now().getTime();
    for (const issuer of this.deps.issuers()) {
      const stored = this.deps.crls.get(issuer.id);
      const refreshAt = stored
        ? stored.thisUpdate.getTime() + (stored.nextUpdate.getTime() - stored.thisUpdate.getTime()) / 3
        : 0;
      if (now >= refreshAt) await this.rebuild(issuer.id);
    }
  }

  private async build(authorityId: string): Promise<void> {
    const issuer = this.deps.issuers().find((candidate) => candidate.id === authorityId);
    if (!issuer) return;
    const thisUpdate = this.deps.clock.now();
    const nextUpdate = new Date(thisUpdate.getTime() + this.deps.settings.validitySeconds * 1000);
    const crlNumber = this.deps.repository.reserveCrlNumber(authorityId);
    let count = 0;
    const entries = (function* (repository: RevocationRepository) {
      for (const entry of repository.revokedEntries(authorityId, thisUpdate)) {
        count++;
        const code = isRevocationReason(entry.reason) ? REVOCATION_REASON_CODES[entry.reason] : 0;
        yield { serialNumber: Buffer.from(entry.serial, "hex"), revocationDate: entry.revokedAt, ...(code ? { reason: code } : {}) };
      }
    })(this.deps.repository);
    const der = await issuer.issueCrl({ crlNumber, thisUpdate, nextUpdate, entries });
    try {
      this.deps.crls.save({ authorityId, crlNumber, der, thisUpdate, nextUpdate });
    } catch (error) {
      // Another process published a higher number meanwhile: theirs is at least as fresh.
      if (!(error instanceof RangeError)) throw error;
    }
    this.deps.logger.info({ authorityId, crlNumber: crlNumber.toString(), entries: count, bytes: der.length }, "CRL published");
  }
}
