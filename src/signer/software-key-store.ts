/**
 * A `KeyStore` that keeps node:crypto keys in memory. For unit tests and the signer contract suite only:
 * its keys die with the process and nothing protects them, so the service never uses it for a CA key.
 */
import { createPublicKey, generateKeyPair, sign, type KeyObject } from "node:crypto";
import { promisify } from "node:util";
import { BadUserInputError, HsmUnavailableError } from "../common/errors.js";
import {
  KeyNotFoundError,
  signatureAlgorithmFor,
  type KeySpec,
  type KeyStore,
  type SignatureAlgorithmName,
  type Signer,
} from "./signer.js";

const generateKeyPairAsync = promisify(generateKeyPair);

const NAMED_CURVES = { "P-256": "prime256v1", "P-384": "secp384r1" } as const;

interface SoftwareKey {
  readonly spec: KeySpec;
  readonly privateKey: KeyObject;
  readonly spki: Buffer;
}

/**
 * In-memory key store with the same behaviour and output formats as the PKCS#11 one: labels are unique,
 * ECDSA signatures are DER Ecdsa-Sig-Value, RSA signatures are PKCS#1 v1.5 with SHA-256.
 *
 * @example
 * const store = new SoftwareKeyStore();
 * const signer = await store.generateKey("test-intermediate", { type: "ec", curve: "P-256" });
 */
export class SoftwareKeyStore implements KeyStore {
  private readonly keys = new Map<string, SoftwareKey>();
  /** Labels being generated, so a concurrent generation of the same label is refused too. */
  private readonly pending = new Set<string>();
  private closed = false;

  /**
   * Generates a key pair in memory.
   *
   * @throws BadUserInputError when `label` is taken or the spec is not supported
   */
  async generateKey(label: string, spec: KeySpec): Promise<Signer> {
    this.assertOpen();
    checkLabel(label);
    this.assertLabelFree(label);
    this.pending.add(label);
    try {
      const { privateKey } =
        spec.type === "ec"
          ? await generateKeyPairAsync("ec", { namedCurve: namedCurve(spec) })
          : await generateKeyPairAsync("rsa", { modulusLength: modulusLength(spec), publicExponent: 0x10001 });
      this.assertOpen();
      this.keys.set(label, toSoftwareKey(spec, privateKey));
    } finally {
      this.pending.delete(label);
    }
    return this.signerFor(label);
  }

  /**
   * Adds an existing private key (e.g. a fixed test key, for golden-DER tests) under `label`.
   *
   * @throws BadUserInputError when `label` is taken or the key is not EC P-256/P-384 or RSA 2048/3072/4096
   */
  importKey(label: string, privateKey: KeyObject): Signer {
    this.assertOpen();
    checkLabel(label);
    this.assertLabelFree(label);
    if (privateKey.type !== "private") throw new BadUserInputError("importKey needs a private key");
    this.keys.set(label, toSoftwareKey(specOf(privateKey), privateKey));
    return this.signerFor(label);
  }

  /** The signer of the key labelled `label`; `KeyNotFoundError` when there is none. */
  async openKey(label: string): Promise<Signer> {
    this.assertOpen();
    return this.signerFor(label);
  }

  /** True until `close()`. */
  async isHealthy(): Promise<boolean> {
    return !this.closed;
  }

  /** Forgets every key. Safe to call more than once. */
  async close(): Promise<void> {
    this.closed = true;
    this.keys.clear();
  }

  private signerFor(label: string): Signer {
    const key = this.keys.get(label);
    if (key === undefined) throw new KeyNotFoundError(label);
    // After close the key is unreachable, as it would be on a token we are no longer connected to.
    const privateKey = (): KeyObject => {
      if (this.closed) throw new HsmUnavailableError(`key "${label}" is not available: the software key store is closed`);
      return key.privateKey;
    };
    return new SoftwareSigner(label, key, privateKey);
  }

  private assertLabelFree(label: string): void {
    if (this.keys.has(label) || this.pending.has(label)) {
      throw new BadUserInputError(`a key labelled "${label}" already exists in the key store`);
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new HsmUnavailableError("the software key store is closed");
  }
}

class SoftwareSigner implements Signer {
  readonly keySpec: KeySpec;
  readonly signatureAlgorithm: SignatureAlgorithmName;
  readonly publicKeySpki: Buffer;

  constructor(
    readonly keyLabel: string,
    key: SoftwareKey,
    private readonly privateKey: () => KeyObject,
  ) {
    this.keySpec = key.spec;
    this.signatureAlgorithm = signatureAlgorithmFor(key.spec);
    this.publicKeySpki = key.spki;
  }

  async sign(data: Uint8Array): Promise<Buffer> {
    const hash = this.keySpec.type === "ec" && this.keySpec.curve === "P-384" ? "sha384" : "sha256";
    return sign(hash, data, { key: this.privateKey(), dsaEncoding: "der" });
  }
}

function toSoftwareKey(spec: KeySpec, privateKey: KeyObject): SoftwareKey {
  const spki = createPublicKey(privateKey).export({ type: "spki", format: "der" });
  return { spec, privateKey, spki };
}

function namedCurve(spec: KeySpec & { type: "ec" }): string {
  const curve = NAMED_CURVES[spec.curve];
  if (curve === undefined) throw new BadUserInputError(`unsupported curve ${JSON.stringify(spec.curve)}`);
  return curve;
}

function modulusLength(spec: KeySpec & { type: "rsa" }): number {
  if (![2048, 3072, 4096].includes(spec.modulusBits)) {
    throw new BadUserInputError(`unsupported RSA modulus size ${JSON.stringify(spec.modulusBits)}`);
  }
  return spec.modulusBits;
}

function specOf(privateKey: KeyObject): KeySpec {
  const details = privateKey.asymmetricKeyDetails ?? {};
  if (privateKey.asymmetricKeyType === "ec") {
    if (details.namedCurve === "prime256v1") return { type: "ec", curve: "P-256" };
    if (details.namedCurve === "secp384r1") return { type: "ec", curve: "P-384" };
  }
  if (privateKey.asymmetricKeyType === "rsa") {
    const bits = details.modulusLength;
    if (bits === 2048 || bits === 3072 || bits === 4096) return { type: "rsa", modulusBits: bits };
  }
  throw new BadUserInputError(`unsupported key: ${privateKey.asymmetricKeyType} ${JSON.stringify(details)}`);
}

function checkLabel(label: string): void {
  if (typeof label !== "string" || label.length === 0) throw new BadUserInputError("a key label must be a non-empty string");
}
