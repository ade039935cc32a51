import { createPublicKey } from "node:crypto";
import { certificateFields } from "./x509/ca-certificates.js";
import type { TrustBundle } from "./trust-bundle.js";

/** How often (seconds) consumers should re-fetch the bundle. */
export const SPIFFE_REFRESH_HINT_SECONDS = 300;

/**
 * The SPIFFE trust bundle format (SPIFFE Trust Domain and Bundle, §4): a JWK set whose `x509-svid` keys
 * carry the authorities' public keys and certificates (x5c); `spiffe_sequence` is the bundle version.
 */
export function spiffeBundleJson(bundle: TrustBundle): string {
  const authorities = [...bundle.roots, ...bundle.intermediates];
  const keys = authorities.map((authority) => {
    const spki = certificateFields(authority.certificateDer).subjectPublicKeyInfo;
    const jwk = createPublicKey({ key: spki, format: "der", type: "spki" }).export({ format: "jwk" });
    return { use: "x509-svid", kid: authority.id, ...jwk, x5c: [authority.certificateDer.toString("base64")] };
  });
  return `${JSON.stringify({ keys, spiffe_sequence: bundle.sequence, spiffe_refresh_hint: SPIFFE_REFRESH_HINT_SECONDS })}\n`;
}
