import type { Clock } from "../common/clock.js";
import { BadUserInputError } from "../common/errors.js";
import { requireRole } from "../policy/api-keys.js";
import type { Principal } from "../policy/principal.js";
import type { CertificateFilter, CertificateRecord, Page } from "./model.js";
import type { CertificateQuery } from "./ports.js";
import { normaliseSerial } from "./serial.js";

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;

/** Read access to the issuance history. Admins now; auditors and owners join later. */
export class CertificateService {
  constructor(
    private readonly query: CertificateQuery,
    private readonly clock: Clock,
  ) {}

  get(principal: Principal, serial: string): CertificateRecord | undefined {
    requireRole(principal, "ADMIN");
    return this.query.get(normaliseSerial(serial), this.clock.now());
  }

  list(
    principal: Principal,
    filter: CertificateFilter,
    first: number | null | undefined,
    after: string | null | undefined,
  ): Page<CertificateRecord> {
    requireRole(principal, "ADMIN");
    const size = first ?? DEFAULT_PAGE_SIZE;
    if (!Number.isInteger(size) || size < 1 || size > MAX_PAGE_SIZE) {
      throw new BadUserInputError(`first must be an integer from 1 to ${MAX_PAGE_SIZE}`);
    }
    return this.query.list(filter, size, after ?? undefined, this.clock.now());
  }

  now(): Date {
    return this.clock.now();
  }
}
