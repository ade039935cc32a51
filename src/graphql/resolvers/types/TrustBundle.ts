import { SPIFFE_REFRESH_HINT_SECONDS, spiffeBundleJson } from "../../../ca/spiffe-bundle.js";
import { certificateToPem } from "../../../common/pem.js";
import type { TrustBundleResolvers } from "../../generated/resolvers-types.js";

export const TrustBundle: TrustBundleResolvers = {
  rootsPem: (bundle) => bundle.roots.map((root) => certificateToPem(root.certificateDer)).join(""),
  intermediatesPem: (bundle) => bundle.intermediates.map((ca) => certificateToPem(ca.certificateDer)).join(""),
  authorities: (bundle) => [...bundle.roots, ...bundle.intermediates],
  spiffeBundle: (bundle) => spiffeBundleJson(bundle).trimEnd(),
  refreshHintSeconds: () => SPIFFE_REFRESH_HINT_SECONDS,
};
