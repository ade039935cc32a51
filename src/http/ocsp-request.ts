/** Largest OCSP request body accepted; a request with the maximum number of CertIDs is far smaller. */
export const MAX_OCSP_REQUEST_BYTES = 16 * 1024;

/**
 * The DER of an RFC 6960 Appendix A GET request, from its path: `"missing"` when the path carries no request
 * (or an absurdly long one), `"malformed"` when its percent-encoding is broken. Real clients percent-encode the
 * base64 or not, turn "+" into a space, and add a double slash; all are accepted. The fast path and node:http
 * both decode with this, so the two can never answer the same GET differently.
 */
export function ocspRequestDerOfPath(rawPath: string): Buffer | "missing" | "malformed" {
  const encoded = rawPath.replace(/^\/+ocsp\/*/, "");
  if (encoded.length === 0 || encoded.length > MAX_OCSP_REQUEST_BYTES * 2) return "missing";
  let base64: string;
  try {
    base64 = decodeURIComponent(encoded).replaceAll(" ", "+");
  } catch {
    return "malformed";
  }
  return Buffer.from(base64, base64.includes("-") || base64.includes("_") ? "base64url" : "base64");
}
