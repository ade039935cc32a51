/**
 * Signature AlgorithmIdentifiers (RFC 5280 §4.1.1.2) for the algorithms our signers produce, pre-encoded.
 */
import type { SignatureAlgorithmName } from "../../signer/signer.js";
import { nullValue, oid, sequence } from "./der.js";

/** OBJECT IDENTIFIER of each signature algorithm: RFC 5758 §3.2 (ECDSA) and RFC 4055 §5 (RSA). */
export const SIGNATURE_ALGORITHM_OIDS: Readonly<Record<SignatureAlgorithmName, string>> = Object.freeze({
  "ecdsa-with-SHA256": "1.2.840.10045.4.3.2",
  "ecdsa-with-SHA384": "1.2.840.10045.4.3.3",
  sha256WithRSAEncryption: "1.2.840.113549.1.1.11",
});

/** node:crypto digest name used by each signature algorithm (for `createHash` and `sign`/`verify`). */
export const SIGNATURE_HASH_ALGORITHMS: Readonly<Record<SignatureAlgorithmName, "sha256" | "sha384">> =
  Object.freeze({
    "ecdsa-with-SHA256": "sha256",
    "ecdsa-with-SHA384": "sha384",
    sha256WithRSAEncryption: "sha256",
  });

// RFC 5758 §3.2: ECDSA identifiers MUST omit the parameters; RFC 4055 §5: RSA PKCS#1 v1.5 ones carry NULL.
const ALGORITHM_IDENTIFIERS: ReadonlyMap<SignatureAlgorithmName, Buffer> = new Map([
  ["ecdsa-with-SHA256", sequence(oid(SIGNATURE_ALGORITHM_OIDS["ecdsa-with-SHA256"]))],
  ["ecdsa-with-SHA384", sequence(oid(SIGNATURE_ALGORITHM_OIDS["ecdsa-with-SHA384"]))],
  ["sha256WithRSAEncryption", sequence(oid(SIGNATURE_ALGORITHM_OIDS.sha256WithRSAEncryption), nullValue())],
]);

/**
 * DER AlgorithmIdentifier (RFC 5280 §4.1.1.2) for `name`, as it appears in both the `signature` field of a
 * TBSCertificate / TBSCertList and the outer `signatureAlgorithm`. Returns a fresh copy.
 * Throws `TypeError` for a name outside `SignatureAlgorithmName` (e.g. from unchecked configuration).
 */
export function signatureAlgorithmIdentifier(name: SignatureAlgorithmName): Buffer {
  const der = ALGORITHM_IDENTIFIERS.get(name);
  if (der === undefined) throw new TypeError(`unsupported signature algorithm "${String(name)}"`);
  return Buffer.from(der);
}

/** The `SignatureAlgorithmName` of a dotted OID, or `undefined` when we do not sign with it. */
export function signatureAlgorithmFromOid(dotted: string): SignatureAlgorithmName | undefined {
  for (const [name, value] of Object.entries(SIGNATURE_ALGORITHM_OIDS) as [SignatureAlgorithmName, string][]) {
    if (value === dotted) return name;
  }
  return undefined;
}
