/**
 * The signing port of the CA core. The core never sees key material: it hands over the bytes to sign
 * (a TBSCertificate, TBSCertList, CertificationRequestInfo…) and gets back the signature value exactly as it
 * goes into the X.509 BIT STRING.
 */

export type CurveName = "P-256" | "P-384";

export type KeySpec =
  | { readonly type: "ec"; readonly curve: CurveName }
  | { readonly type: "rsa"; readonly modulusBits: 2048 | 3072 | 4096 };

/** Signature algorithms the signers produce, named as in RFC 5758 / RFC 4055. */
export type SignatureAlgorithmName = "ecdsa-with-SHA256" | "ecdsa-with-SHA384" | "sha256WithRSAEncryption";

/** The algorithm X.509 signatures made with a key of this spec use: SHA-256 for P-256 and RSA, SHA-384 for P-384. */
export function signatureAlgorithmFor(spec: KeySpec): SignatureAlgorithmName {
  if (spec.type === "rsa") return "sha256WithRSAEncryption";
  return spec.curve === "P-256" ? "ecdsa-with-SHA256" : "ecdsa-with-SHA384";
}

export interface Signer {
  /** Human-readable identity of the key (e.g. its token label), for logs and errors. */
  readonly keyLabel: string;
  readonly keySpec: KeySpec;
  readonly signatureAlgorithm: SignatureAlgorithmName;
  /** DER SubjectPublicKeyInfo of the key; the CA compares it with its certificate before it signs anything. */
  readonly publicKeySpki: Buffer;
  /**
   * Signs `data` with `signatureAlgorithm`. ECDSA signatures come back DER-encoded (Ecdsa-Sig-Value,
   * RFC 3279), RSA signatures as the raw PKCS#1 v1.5 block. Throws `HsmUnavailableError` when the key
   * cannot be reached.
   */
  sign(data: Uint8Array): Promise<Buffer>;
}

/**
 * A place that holds CA keys: an HSM token in production, memory in unit tests. Keys are found by label;
 * generated keys never leave it.
 */
export interface KeyStore {
  /** Generates a new key pair inside the store; fails if `label` is taken. */
  generateKey(label: string, spec: KeySpec): Promise<Signer>;
  /** The signer for an existing key; `NotFoundError`-style failure (`KeyNotFoundError`) when absent. */
  openKey(label: string): Promise<Signer>;
  /** True when the store can sign right now (for readiness probes); never throws. */
  isHealthy(): Promise<boolean>;
  close(): Promise<void>;
}

/** Raised by `KeyStore.openKey` when no key carries the label. */
export class KeyNotFoundError extends Error {
  constructor(readonly label: string) {
    super(`no key labelled "${label}" in the key store`);
    this.name = "KeyNotFoundError";
  }
}
