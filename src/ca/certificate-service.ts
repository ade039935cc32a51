import type { Clock } from "../common/clock.js";
import { ForbiddenError } from "../common/errors.js";
import { pageSize } from "../common/page.js";
import type { CertificateOwnership } from "./certificate-ownership.js";
import { requireRole } from "../policy/api-keys.js";
import type { Principal } from "../policy/principal.js";
import type { CertificateFilter, CertificateRecord, Page } from "./model.js";
import type { CertificateQuery } from "./ports.js";
import { normaliseSerial } from "./serial.js";

/** Read access to the issuance history, for admins and auditors; a workload may read its own certificate. */
export class CertificateService {
  constructor(
    private readonly query: CertificateQuery,
    private readonly clock: Clock,
    private readonly ownership?: CertificateOwnership,
  ) {}

  /** Admins and auditors read any certificate; a workload presenting a certificate over mutual TLS reads that one. */
  async get(principal: Principal, serial: string, clientCertificate?: Buffer): Promise<CertificateRecord | undefined> {
    const normalised = normaliseSerial(serial);
    if (principal.kind === "anonymous" && clientCertificate && this.ownership) {
      const owner = await this.ownership.authenticate(clientCertificate, this.clock.now());
      if (owner.serial !== normalised) throw new ForbiddenError("a certificate may read only itself; other reads need an API key");
      return owner;
    }
    requireRole(principal, "ADMIN", "AUDITOR");
    return this.query.get(normalised, this.clock.now());
  }

  async list(
    principal: Principal,
    filter: CertificateFilter,
    first: number | null | undefined,
    after: string | null | undefined,
  ): Promise<Page<CertificateRecord>> {
    requireRole(principal, "ADMIN", "AUDITOR");
    return this.query.list(withNormalisedSerial(filter), pageSize(first), after ?? undefined, this.clock.now());
  }

  /** The whole matching history, streamed in commit order; nothing is held beyond one chunk. */
  export(principal: Principal, filter: CertificateFilter): AsyncIterable<CertificateRecord> {
    requireRole(principal, "ADMIN", "AUDITOR");
    return this.query.iterate(withNormalisedSerial(filter), this.clock.now());
  }

  now(): Date {
    return this.clock.now();
  }
}

function withNormalisedSerial(filter: CertificateFilter): CertificateFilter {
  return filter.serial === undefined ? filter : { ...filter, serial: normaliseSerial(filter.serial) };
}
