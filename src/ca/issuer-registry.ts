import { ConfigError, HsmUnavailableError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import type { KeyStore } from "../signer/signer.js";
import { authorityUrls, Issuer } from "./issuer.js";
import type { AuthorityRecord } from "./model.js";

/**
 * The issuers of this process: one per intermediate that is active or still published, each with its key
 * opened on the token. Exactly one is active for new certificates; the others keep signing their CRLs and
 * OCSP responses until they are retired. Activation elsewhere (another worker) reaches this registry through
 * `update`, and the switch needs no restart: a request already past `active()` finishes with the issuer it
 * got, which stays valid and published.
 */
export class IssuerRegistry {
  private readonly issuers = new Map<string, Issuer>();
  private activeId: string | undefined;
  private readonly activeListeners = new Set<(issuer: Issuer) => void>();

  constructor(
    private readonly deps: {
      readonly keyStore: KeyStore;
      readonly publicBaseUrl: string;
      readonly logger: Logger;
    },
  ) {}

  /** Opens the issuer of an intermediate (checking that the token's key is the certificate's), or returns it. */
  async load(authority: AuthorityRecord): Promise<Issuer> {
    const existing = this.issuers.get(authority.id);
    if (existing) return existing;
    if (authority.kind !== "intermediate" || !authority.keyLabel) {
      throw new ConfigError(`authority ${authority.id} is not an intermediate with a key on the online token`);
    }
    const signer = await this.deps.keyStore.openKey(authority.keyLabel);
    const issuer = new Issuer(authority, signer, [authority.certificateDer], authorityUrls(this.deps.publicBaseUrl, authority.id));
    this.issuers.set(authority.id, issuer);
    return issuer;
  }

  /** Brings the registry in line with the hierarchy: loads new intermediates, drops retired ones, switches the active one. */
  async update(authorities: readonly AuthorityRecord[]): Promise<void> {
    const live = authorities.filter((authority) => authority.kind === "intermediate" && authority.status !== "retired" && authority.keyLabel);
    for (const authority of live) {
      try {
        await this.load(authority);
      } catch (error) {
        this.deps.logger.error({ err: error, authorityId: authority.id }, "cannot open the key of a published intermediate");
      }
    }
    for (const id of [...this.issuers.keys()]) {
      if (!live.some((authority) => authority.id === id)) this.issuers.delete(id);
    }
    const active = live.find((authority) => authority.status === "active");
    if (active && this.issuers.has(active.id) && active.id !== this.activeId) {
      const switched = this.activeId !== undefined;
      if (switched) this.deps.logger.info({ from: this.activeId, to: active.id }, "issuing with a new intermediate");
      this.activeId = active.id;
      if (switched) for (const listener of this.activeListeners) listener(this.active());
    }
  }

  /** Calls `listener` whenever another intermediate becomes the active one (not for the first). */
  onActiveChange(listener: (issuer: Issuer) => void): void {
    this.activeListeners.add(listener);
  }

  /** The issuer of new certificates. */
  active(): Issuer {
    const issuer = this.activeId === undefined ? undefined : this.issuers.get(this.activeId);
    if (!issuer) throw new HsmUnavailableError("no active intermediate can sign right now");
    return issuer;
  }

  /** Every issuer still serving CRLs and OCSP: the active one and those published until their leaves expire. */
  all(): Issuer[] {
    return [...this.issuers.values()];
  }
}
