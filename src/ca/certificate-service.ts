import type { Clock } from "../common/clock.js";
import { pageSize } from "../common/page.js";
import { requireRole } from "../policy/api-keys.js";
import type { Principal } from "../policy/principal.js";
import type { CertificateFilter, CertificateRecord, Page } from "./model.js";
import type { CertificateQuery } from "./ports.js";
import { normaliseSerial } from "./serial.js";

/** Read access to the issuance history, for admins and auditors. */
export class CertificateService {
  constructor(
    private readonly query: CertificateQuery,
    private readonly clock: Clock,
  ) {}

  get(principal: Principal, serial: string): CertificateRecord | undefined {
    requireRole(principal, "ADMIN", "AUDITOR");
    return this.query.get(normaliseSerial(serial), this.clock.now());
  }

  list(
    principal: Principal,
    filter: CertificateFilter,
    first: number | null | undefined,
    after: string | null | undefined,
  ): Page<CertificateRecord> {
    requireRole(principal, "ADMIN", "AUDITOR");
    const normalised = filter.serial === undefined ? filter : { ...filter, serial: normaliseSerial(filter.serial) };
    return this.query.list(normalised, pageSize(first), after ?? undefined, this.clock.now());
  }

  /** The whole matching history, streamed in commit order; nothing is held beyond one chunk. */
  export(principal: Principal, filter: CertificateFilter): Iterable<CertificateRecord> {
    requireRole(principal, "ADMIN", "AUDITOR");
    const normalised = filter.serial === undefined ? filter : { ...filter, serial: normaliseSerial(filter.serial) };
    return this.query.iterate(normalised, this.clock.now());
  }

  now(): Date {
    return this.clock.now();
  }
}
