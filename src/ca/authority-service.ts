import type { AuthorityRecord } from "./model.js";
import type { AuthorityRepository } from "./ports.js";
import { trustBundleOf, type TrustBundle } from "./trust-bundle.js";

/** Public read access to the CA hierarchy. */
export class AuthorityService {
  constructor(
    private readonly repository: AuthorityRepository,
    readonly trustDomain: string,
  ) {}

  list(): AuthorityRecord[] {
    return this.repository.list();
  }

  get(id: string): AuthorityRecord | undefined {
    return this.repository.get(id);
  }

  /** The bundle of this CA's trust domain; an empty bundle for any other (we federate with none yet). */
  trustBundle(trustDomain?: string | null): TrustBundle {
    const domain = trustDomain ?? this.trustDomain;
    return trustBundleOf(domain, domain === this.trustDomain ? this.repository.list() : []);
  }
}
