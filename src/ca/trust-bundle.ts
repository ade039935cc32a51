import type { AuthorityRecord } from "./model.js";

/** The trust material a relying party needs: anchors, plus the intermediates still published. */
export interface TrustBundle {
  readonly trustDomain: string;
  /** Version of the bundle: goes up whenever an authority is published or retired (SPIFFE `spiffe_sequence`). */
  readonly sequence: number;
  readonly roots: readonly AuthorityRecord[];
  readonly intermediates: readonly AuthorityRecord[];
}

export function trustBundleOf(trustDomain: string, authorities: readonly AuthorityRecord[], sequence: number): TrustBundle {
  const published = authorities.filter((authority) => authority.status !== "retired");
  return {
    trustDomain,
    sequence,
    roots: published.filter((authority) => authority.kind === "root"),
    intermediates: published.filter((authority) => authority.kind === "intermediate"),
  };
}
