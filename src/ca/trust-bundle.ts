import type { AuthorityRecord } from "./model.js";

/** The trust material a relying party needs: anchors, plus the intermediates still published. */
export interface TrustBundle {
  readonly trustDomain: string;
  readonly roots: readonly AuthorityRecord[];
  readonly intermediates: readonly AuthorityRecord[];
}

export function trustBundleOf(trustDomain: string, authorities: readonly AuthorityRecord[]): TrustBundle {
  const published = authorities.filter((authority) => authority.status !== "retired");
  return {
    trustDomain,
    roots: published.filter((authority) => authority.kind === "root"),
    intermediates: published.filter((authority) => authority.kind === "intermediate"),
  };
}
