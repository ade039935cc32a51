/**
 * A `KeyStore` on any PKCS#11 module (SoftHSM2 in development, a network HSM or p11-kit in production),
 * through pkcs11js. Everything PKCS#11-specific stays in this file: sessions, login, object handles,
 * mechanisms and return codes never cross the `Signer` / `KeyStore` interface.
 */
import { createHash, createPublicKey, randomBytes, verify as verifySignature, type JsonWebKey } from "node:crypto";
import { endianness } from "node:os";
import pkcs11js from "pkcs11js";
import type { PKCS11, Template } from "pkcs11js";
import {
  AnchorageError,
  BadUserInputError,
  ConfigError,
  HsmUnavailableError,
  InternalError,
} from "../../common/errors.js";
import { silentLogger, type Logger } from "../../common/logger.js";
import {
  KeyNotFoundError,
  signatureAlgorithmFor,
  type CurveName,
  type KeySpec,
  type KeyStore,
  type SignatureAlgorithmName,
  type Signer,
} from "../signer.js";

/**
 * The part of pkcs11js this key store calls. Keeping it narrow documents what we rely on from a module and
 * lets a test hand in a fake.
 */
export type Pkcs11Api = Pick<
  PKCS11,
  | "close"
  | "C_Initialize"
  | "C_Finalize"
  | "C_GetSlotList"
  | "C_GetTokenInfo"
  | "C_OpenSession"
  | "C_CloseSession"
  | "C_CloseAllSessions"
  | "C_GetSessionInfo"
  | "C_Login"
  | "C_Logout"
  | "C_FindObjectsInit"
  | "C_FindObjects"
  | "C_FindObjectsFinal"
  | "C_GetAttributeValue"
  | "C_GenerateKeyPairAsync"
  | "C_DestroyObject"
  | "C_SignInit"
  | "C_SignAsync"
>;

export interface Pkcs11KeyStoreOptions {
  /** Path of the PKCS#11 module (shared library) to load. */
  modulePath: string;
  /** Label of the token to use, as shown by `pkcs11-tool --list-slots` (without the padding). */
  tokenLabel: string;
  /** User PIN of the token. Kept in memory for re-login after an outage; never logged. */
  pin: string;
  /** Number of logged-in sessions signing in parallel (one operation per session at a time). Default 4. */
  sessionPoolSize?: number;
  /** How long a call waits for a free session before failing with `HsmUnavailableError`. Default 10 s. */
  acquireTimeoutMs?: number;
  logger?: Logger;
}

/** Ways `simulateFaultForTests` can break the connection to the token. */
export type SimulatedFault = "close-all-sessions" | "logout" | "finalize";

// pkcs11js is CommonJS and builds its exports at run time, so Node's ESM loader sees only a default export.
const {
  CKA_CLASS,
  CKA_EC_PARAMS,
  CKA_EC_POINT,
  CKA_EXTRACTABLE,
  CKA_ID,
  CKA_KEY_TYPE,
  CKA_LABEL,
  CKA_MODULUS,
  CKA_MODULUS_BITS,
  CKA_PRIVATE,
  CKA_PUBLIC_EXPONENT,
  CKA_SENSITIVE,
  CKA_SIGN,
  CKA_TOKEN,
  CKA_VERIFY,
  CKA_DECRYPT,
  CKA_DERIVE,
  CKA_UNWRAP,
  CKA_ENCRYPT,
  CKA_WRAP,
  CKF_OS_LOCKING_OK,
  CKF_RW_SESSION,
  CKF_SERIAL_SESSION,
  CKK_EC,
  CKK_RSA,
  CKM_EC_KEY_PAIR_GEN,
  CKM_ECDSA,
  CKM_RSA_PKCS_KEY_PAIR_GEN,
  CKM_SHA256_RSA_PKCS,
  CKO_PRIVATE_KEY,
  CKO_PUBLIC_KEY,
  CKR_CRYPTOKI_ALREADY_INITIALIZED,
  CKR_CRYPTOKI_NOT_INITIALIZED,
  CKR_DEVICE_ERROR,
  CKR_DEVICE_MEMORY,
  CKR_DEVICE_REMOVED,
  CKR_GENERAL_ERROR,
  CKR_KEY_HANDLE_INVALID,
  CKR_OBJECT_HANDLE_INVALID,
  CKR_OPERATION_ACTIVE,
  CKR_PIN_EXPIRED,
  CKR_PIN_INCORRECT,
  CKR_PIN_INVALID,
  CKR_PIN_LEN_RANGE,
  CKR_PIN_LOCKED,
  CKR_SESSION_CLOSED,
  CKR_SESSION_HANDLE_INVALID,
  CKR_TOKEN_NOT_PRESENT,
  CKR_TOKEN_NOT_RECOGNIZED,
  CKR_USER_ALREADY_LOGGED_IN,
  CKR_USER_NOT_LOGGED_IN,
  CKU_USER,
} = pkcs11js;

// Session states from the PKCS#11 specification (pkcs11js does not export them).
const CKS_RO_USER_FUNCTIONS = 1;
const CKS_RW_USER_FUNCTIONS = 3;

/** The session is gone; closing it again is pointless and, with a module that reuses handles, harmful. */
const SESSION_GONE = new Set([CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED]);
/** The session exists but cannot be used as it is: close it and open a fresh, logged-in one. */
const SESSION_UNUSABLE = new Set([CKR_USER_NOT_LOGGED_IN, CKR_OPERATION_ACTIVE]);
/** The module or the device behind it is gone: only C_Finalize, C_Initialize and a new login help. */
const MODULE_GONE = new Set([
  CKR_CRYPTOKI_NOT_INITIALIZED,
  CKR_DEVICE_ERROR,
  CKR_DEVICE_MEMORY,
  CKR_DEVICE_REMOVED,
  CKR_GENERAL_ERROR,
  CKR_TOKEN_NOT_PRESENT,
  CKR_TOKEN_NOT_RECOGNIZED,
]);
/** Retrying a refused PIN would only run the token's retry counter down until it locks. */
const PIN_REFUSED = new Set([CKR_PIN_INCORRECT, CKR_PIN_INVALID, CKR_PIN_LEN_RANGE, CKR_PIN_LOCKED, CKR_PIN_EXPIRED]);

const DEFAULT_POOL_SIZE = 4;
const DEFAULT_ACQUIRE_TIMEOUT_MS = 10_000;
const BACKOFF_INITIAL_MS = 100;
const BACKOFF_MAX_MS = 5_000;
/** How long recovery and close wait for in-flight calls before touching the module under them. */
const DRAIN_TIMEOUT_MS = 10_000;

/** DER OIDs of the curves we accept (RFC 5480): namedCurve as it appears in CKA_EC_PARAMS. */
const CURVES: Record<CurveName, { oid: Buffer; fieldBytes: number; hash: "sha256" | "sha384"; jwkCrv: string }> = {
  "P-256": { oid: Buffer.from("06082a8648ce3d030107", "hex"), fieldBytes: 32, hash: "sha256", jwkCrv: "P-256" },
  "P-384": { oid: Buffer.from("06052b81040022", "hex"), fieldBytes: 48, hash: "sha384", jwkCrv: "P-384" },
};
const RSA_PUBLIC_EXPONENT = Buffer.from([0x01, 0x00, 0x01]);
const SELF_TEST_MESSAGE = Buffer.from("anchorage key self-test: the token's key must match its public key");

type StoreState = "ready" | "recovering" | "failed" | "closed";

interface PooledSession {
  readonly handle: Buffer;
  /** Which incarnation of the module connection opened it; sessions of an older one are never reused. */
  readonly generation: number;
  /** Private key handles found on this session, by label. Handles are per session in some modules. */
  readonly keyHandles: Map<string, Buffer>;
}

interface Waiter {
  resolve(session: PooledSession): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/** What we learn about a key from the token before trusting it. */
interface KeyInfo {
  spec: KeySpec;
  spki: Buffer;
  id: Buffer;
}

/** Raised inside a session operation to say the session (its login), not the key, is the problem. */
class SessionFault extends Error {}

/**
 * Signing keys held in one token of a PKCS#11 module.
 *
 * Keys are found by `CKA_LABEL`. Signing runs on a pool of logged-in sessions with pkcs11js' async calls,
 * so signatures proceed in parallel and the event loop stays free. When the token or the module goes away,
 * calls fail fast with `HsmUnavailableError` while the store reconnects in the background with back-off.
 *
 * A PKCS#11 module is process-wide state: two key stores on the same module path share one initialisation
 * and one login per token. The store that initialised the module finalises it on close, so close stores in
 * the reverse order of opening; a store that finds the module finalised under it reconnects by itself.
 * Because the login is shared, a second store on a token this process is already logged into gets in
 * whatever PIN it was given (C_Login answers CKR_USER_ALREADY_LOGGED_IN): keeping the root token away from
 * the online service is a matter of processes, not of PINs inside one process.
 *
 * @example
 * const store = await Pkcs11KeyStore.open({ modulePath, tokenLabel: "online", pin });
 * const signer = await store.openKey("intermediate-2025");
 * const signature = await signer.sign(tbsDer);
 */
export class Pkcs11KeyStore implements KeyStore {
  readonly #pin: string;
  private readonly api: Pkcs11Api;
  private readonly modulePath: string;
  private readonly tokenLabel: string;
  private readonly poolSize: number;
  private readonly acquireTimeoutMs: number;
  private readonly logger: Logger;

  private state: StoreState = "recovering";
  private slot: Buffer | undefined;
  private ownsInitialization = false;
  private generation = 0;
  private idle: PooledSession[] = [];
  private readonly busy = new Set<PooledSession>();
  private waiters: Waiter[] = [];
  private drainWaiters: (() => void)[] = [];
  private repairScheduled = false;
  private recovery: Promise<void> | undefined;
  private wakeRecovery: (() => void) | undefined;
  private closing: Promise<void> | undefined;
  private keyGeneration: Promise<unknown> = Promise.resolve();
  private readonly signers = new Map<string, Pkcs11Signer>();

  private constructor(api: Pkcs11Api, options: Pkcs11KeyStoreOptions, poolSize: number, acquireTimeoutMs: number) {
    this.api = api;
    this.#pin = options.pin;
    this.modulePath = options.modulePath;
    this.tokenLabel = options.tokenLabel;
    this.poolSize = poolSize;
    this.acquireTimeoutMs = acquireTimeoutMs;
    this.logger = (options.logger ?? silentLogger).child({ component: "pkcs11-key-store", token: options.tokenLabel });
  }

  /**
   * Loads the module, initialises it, finds the token by label, opens the session pool and logs in.
   *
   * @param options where the module and token are and how to log in
   * @returns a ready key store
   * @throws HsmUnavailableError when the module cannot be loaded or initialised, no token (or more than one)
   *   carries `tokenLabel`, or the token refuses the PIN. The message never contains the PIN.
   * @throws ConfigError when `sessionPoolSize` or `acquireTimeoutMs` is not a positive integer.
   */
  static async open(options: Pkcs11KeyStoreOptions): Promise<Pkcs11KeyStore> {
    const poolSize = options.sessionPoolSize ?? DEFAULT_POOL_SIZE;
    if (!Number.isInteger(poolSize) || poolSize < 1) {
      throw new ConfigError(`sessionPoolSize must be a positive integer, got ${poolSize}`);
    }
    const acquireTimeoutMs = options.acquireTimeoutMs ?? DEFAULT_ACQUIRE_TIMEOUT_MS;
    if (!Number.isInteger(acquireTimeoutMs) || acquireTimeoutMs < 1) {
      throw new ConfigError(`acquireTimeoutMs must be a positive integer, got ${acquireTimeoutMs}`);
    }

    const api = new pkcs11js.PKCS11();
    try {
      api.load(options.modulePath);
    } catch (error) {
      throw new HsmUnavailableError(`cannot load the PKCS#11 module "${options.modulePath}"`, { cause: error });
    }

    const store = new Pkcs11KeyStore(api, options, poolSize, acquireTimeoutMs);
    try {
      store.connect(false);
    } catch (error) {
      store.unloadModule();
      throw error;
    }
    store.logger.info({ sessions: poolSize, module: options.modulePath }, "connected to the HSM token");
    return store;
  }

  /**
   * Generates a key pair inside the token: a token object, private, sensitive and never extractable, usable
   * only for signing, with `label` and a random 16-byte CKA_ID on both halves. The new key must pass a
   * test signature before it is returned.
   *
   * @throws BadUserInputError when a key or object already carries `label`, or another process sharing the
   *   token generated a key with that label at the same time (the new pair is then destroyed again)
   * @throws HsmUnavailableError when the token cannot be reached or refuses the generation
   * @throws InternalError when the token ignored the template or the key does not verify
   */
  async generateKey(label: string, spec: KeySpec): Promise<Signer> {
    checkLabel(label);
    checkSpec(spec);
    // Serialised so that two generations of the same label cannot both pass the "label is free" check.
    const run = this.keyGeneration.then(() => this.generateKeyNow(label, spec));
    this.keyGeneration = run.catch(() => undefined);
    return run;
  }

  /**
   * The signer of the key labelled `label`, after checking that the token holds exactly one private and one
   * public key with that label, that they belong together and that a test signature verifies.
   *
   * @throws KeyNotFoundError when no private key carries `label` on this token
   * @throws HsmUnavailableError when the token cannot be reached
   * @throws InternalError when the key is ambiguous, unsupported or does not verify
   */
  async openKey(label: string): Promise<Signer> {
    checkLabel(label);
    return this.openVerifiedKey(label, undefined);
  }

  /** `openKey`, limited to the key with CKA_ID `id` when given (a key this store has just generated). */
  private async openVerifiedKey(label: string, id: Buffer | undefined): Promise<Signer> {
    const info = await this.withSession(`opening key "${label}"`, async (session) => this.inspectKey(session, label, id));
    const signer: Pkcs11Signer = new Pkcs11Signer(label, info, (data) => this.signWith(signer, data));
    await this.selfTest(signer);
    this.signers.set(label, signer);
    this.logger.info({ key: label, algorithm: signer.signatureAlgorithm }, "opened HSM key");
    return signer;
  }

  /**
   * True when the token can sign right now: a test signature with the most recently opened key verifies
   * (or, before any key is open, a pooled session answers C_GetSessionInfo). Never throws.
   */
  async isHealthy(): Promise<boolean> {
    if (this.state !== "ready") return false;
    try {
      const signer = [...this.signers.values()].at(-1);
      if (signer !== undefined) {
        const signature = await signer.sign(SELF_TEST_MESSAGE);
        return verifies(signer, SELF_TEST_MESSAGE, signature);
      }
      await this.withSession("health check", async (session) => {
        this.api.C_GetSessionInfo(session.handle);
      });
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Waits for calls in flight, closes the sessions, logs out and finalises the module if this store
   * initialised it. Later calls fail with `HsmUnavailableError`. Safe to call more than once.
   */
  async close(): Promise<void> {
    this.closing ??= this.closeNow();
    return this.closing;
  }

  /**
   * TEST ONLY — never call from service code. Breaks the connection to the token the way an outage would,
   * so integration tests can check recovery against a real module:
   * - `close-all-sessions`: C_CloseAllSessions on the slot (sessions lost, login gone with them);
   * - `logout`: C_Logout (sessions stay, the login is gone);
   * - `finalize`: C_Finalize (the module is gone for every session; call it with no signature in flight).
   */
  simulateFaultForTests(fault: SimulatedFault): void {
    if (this.state !== "ready" || this.slot === undefined) throw new Error(`key store is not ready (${this.state})`);
    this.logger.warn({ fault }, "simulating an HSM fault (test hook)");
    switch (fault) {
      case "close-all-sessions":
        this.api.C_CloseAllSessions(this.slot);
        return;
      case "logout": {
        const session = this.idle[0] ?? [...this.busy][0];
        if (session === undefined) throw new Error("no session to log out from");
        this.api.C_Logout(session.handle);
        return;
      }
      case "finalize":
        this.api.C_Finalize();
        return;
    }
  }

  /** Signs with the key of `signer` on a pooled session; each signer's `sign` lands here. */
  private async signWith(signer: Pkcs11Signer, data: Uint8Array): Promise<Buffer> {
    const spec = signer.keySpec;
    let mechanism: number;
    let input: Buffer;
    let signatureBytes: number;
    if (spec.type === "ec") {
      // Hash in software and sign the digest with raw ECDSA: SoftHSM 2.6 has no CKM_ECDSA_SHA256, and every
      // module that has CKM_ECDSA signs a digest the same way.
      const curve = CURVES[spec.curve];
      mechanism = CKM_ECDSA;
      input = createHash(curve.hash).update(data).digest();
      signatureBytes = 2 * curve.fieldBytes;
    } else {
      mechanism = CKM_SHA256_RSA_PKCS;
      // A copy: the module reads it on a worker thread, after the caller may have reused its buffer.
      input = Buffer.from(data);
      signatureBytes = spec.modulusBits / 8;
    }

    const raw = await this.withSession(`signing with key "${signer.keyLabel}"`, async (session) => {
      const key = this.privateKeyHandle(session, signer);
      try {
        this.api.C_SignInit(session.handle, { mechanism }, key);
      } catch (error) {
        const code = ckrOf(error);
        if (code === CKR_KEY_HANDLE_INVALID || code === CKR_OBJECT_HANDLE_INVALID) {
          session.keyHandles.delete(signer.keyLabel);
          // Private objects vanish from a session whose login is gone: that is the session's fault, not the key's.
          this.assertLoggedIn(session);
        }
        throw error;
      }
      return this.api.C_SignAsync(session.handle, input, Buffer.alloc(signatureBytes));
    });

    if (spec.type === "rsa") return raw;
    return ecdsaRawToDer(raw, CURVES[spec.curve].fieldBytes);
  }

  // ---- connection ----------------------------------------------------------------------------------

  /**
   * (Re)establishes the connection: C_Initialize, find the slot, open the pool and log in. Synchronous on
   * purpose, so that nothing else can run against the module half-way through.
   */
  private connect(finalizeFirst: boolean): void {
    const api = this.api;
    if (finalizeFirst) {
      try {
        api.C_Finalize();
      } catch {
        // A module that is gone often refuses C_Finalize too; C_Initialize below is what matters.
      }
      this.ownsInitialization = false;
    }
    try {
      api.C_Initialize({ flags: CKF_OS_LOCKING_OK });
      this.ownsInitialization = true;
    } catch (error) {
      // Another key store in this process initialised the module: the module is shared, so we are a guest.
      if (ckrOf(error) !== CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        throw new HsmUnavailableError(
          `cannot initialise the PKCS#11 module "${this.modulePath}" (${ckrName(error)})`,
          { cause: error },
        );
      }
    }

    const slot = this.findSlot();
    const handles: Buffer[] = [];
    try {
      for (let i = 0; i < this.poolSize; i++) handles.push(api.C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION));
    } catch (error) {
      this.closeSessions(handles);
      throw new HsmUnavailableError(`cannot open a session on token "${this.tokenLabel}" (${ckrName(error)})`, {
        cause: error,
      });
    }
    try {
      this.login(handles[0] as Buffer);
    } catch (error) {
      this.closeSessions(handles);
      throw error;
    }

    this.slot = slot;
    this.generation += 1;
    this.idle = handles.map((handle) => ({ handle, generation: this.generation, keyHandles: new Map() }));
    this.state = "ready";
  }

  private findSlot(): Buffer {
    let labels: { slot: Buffer; label: string }[];
    try {
      labels = this.api.C_GetSlotList(true).map((slot) => ({
        slot,
        label: tokenLabelOf(this.api.C_GetTokenInfo(slot)),
      }));
    } catch (error) {
      throw new HsmUnavailableError(`cannot list the tokens of PKCS#11 module "${this.modulePath}" (${ckrName(error)})`, {
        cause: error,
      });
    }
    const matches = labels.filter((entry) => entry.label === this.tokenLabel);
    if (matches.length === 1) return (matches[0] as { slot: Buffer }).slot;
    if (matches.length > 1) {
      // SoftHSM and others allow duplicate labels; picking one would be a guess about which key we sign with.
      throw new HsmUnavailableError(`${matches.length} tokens are labelled "${this.tokenLabel}"; token labels must be unique`);
    }
    const present = labels.map((entry) => `"${entry.label}"`).join(", ") || "none";
    throw new HsmUnavailableError(
      `no token labelled "${this.tokenLabel}" in PKCS#11 module "${this.modulePath}" (tokens present: ${present})`,
    );
  }

  /** Logs the user in. Login state belongs to the application and token, so one login covers every session. */
  private login(session: Buffer): void {
    try {
      this.api.C_Login(session, CKU_USER, this.#pin);
    } catch (error) {
      const code = ckrOf(error);
      if (code === CKR_USER_ALREADY_LOGGED_IN) return;
      const why = code !== undefined && PIN_REFUSED.has(code) ? "the token refused the PIN" : "login failed";
      throw new HsmUnavailableError(`cannot log in to token "${this.tokenLabel}": ${why} (${ckrName(error)})`, {
        cause: error,
      });
    }
  }

  private closeSessions(handles: Buffer[]): void {
    for (const handle of handles) {
      try {
        this.api.C_CloseSession(handle);
      } catch {
        // Best effort: the session may already be gone.
      }
    }
  }

  /** Finalises the module if we initialised it, and unloads our handle on the library. */
  private unloadModule(): void {
    if (this.ownsInitialization) {
      try {
        this.api.C_Finalize();
      } catch {
        // Already finalised (e.g. by a test hook or an outage); nothing left to release.
      }
      this.ownsInitialization = false;
    }
    try {
      this.api.close();
    } catch {
      // Unloading is best effort; the process keeps working either way.
    }
  }

  private async closeNow(): Promise<void> {
    this.state = "closed";
    this.rejectWaiters(() => new HsmUnavailableError(`the key store for token "${this.tokenLabel}" is closed`));
    this.wakeRecovery?.();
    const drained = await this.drained(DRAIN_TIMEOUT_MS);
    await this.recovery;
    if (!drained) {
      // Finalising or unloading the module under a running call could crash the process; leave it loaded.
      this.logger.error({ inFlight: this.busy.size }, "HSM calls still in flight at close; leaving the module loaded");
      return;
    }
    // Only sessions of the current connection are ever idle; recovery drops the others.
    if (this.idle.length > 0) {
      const handles = this.idle.map((session) => session.handle);
      try {
        this.api.C_Logout(handles[0] as Buffer);
      } catch {
        // Not logged in any more, or the session is gone: either way there is nothing to log out of.
      }
      this.closeSessions(handles);
    }
    this.idle = [];
    this.signers.clear();
    this.unloadModule();
    this.logger.info({}, "closed the HSM key store");
  }

  // ---- session pool --------------------------------------------------------------------------------

  /** Runs `operation` on a pooled session and turns token failures into `HsmUnavailableError` plus recovery. */
  private async withSession<T>(what: string, operation: (session: PooledSession) => Promise<T>): Promise<T> {
    const session = await this.acquire();
    let fault: "gone" | "unusable" | undefined;
    try {
      return await operation(session);
    } catch (error) {
      if (error instanceof AnchorageError || error instanceof KeyNotFoundError) throw error;
      if (error instanceof SessionFault) {
        fault = "unusable";
        this.logger.warn({ operation: what, reason: error.message }, "HSM session unusable; replacing it");
        throw new HsmUnavailableError(`HSM unavailable: ${what} failed`, { cause: error });
      }
      const code = ckrOf(error);
      if (code === undefined && !isNativeError(error)) throw error; // a bug of ours, not the token's
      if (code !== undefined && SESSION_GONE.has(code)) fault = "gone";
      else if (code !== undefined && SESSION_UNUSABLE.has(code)) fault = "unusable";
      if (fault !== undefined) {
        this.logger.warn({ operation: what, error: ckrName(error) }, "HSM session lost; replacing it");
      } else if (code !== undefined && MODULE_GONE.has(code) && session.generation === this.generation) {
        this.startRecovery(what, error, code !== CKR_CRYPTOKI_NOT_INITIALIZED);
      } else {
        this.logger.warn({ operation: what, error: ckrName(error) }, "HSM operation failed");
      }
      throw new HsmUnavailableError(`HSM unavailable: ${what} failed`, { cause: error });
    } finally {
      this.release(session, fault);
    }
  }

  private acquire(): Promise<PooledSession> {
    if (this.state !== "ready") return Promise.reject(this.unavailable());
    const session = this.idle.pop();
    if (session !== undefined) {
      this.busy.add(session);
      return Promise.resolve(session);
    }
    return new Promise<PooledSession>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(new HsmUnavailableError(`HSM unavailable: no session became free within ${this.acquireTimeoutMs} ms`));
        }, this.acquireTimeoutMs),
      };
      waiter.timer.unref();
      this.waiters.push(waiter);
    });
  }

  private release(session: PooledSession, fault: "gone" | "unusable" | undefined): void {
    this.busy.delete(session);
    if (session.generation !== this.generation) {
      // From a connection that has since been finalised: its handle may now name someone else's session.
    } else if (fault !== undefined) {
      if (fault === "unusable") this.closeSessions([session.handle]);
      this.scheduleRepair();
    } else if (this.state === "ready") {
      this.handOver(session);
    } else {
      this.idle.push(session); // closing: close() closes it with the others
    }
    if (this.busy.size === 0) {
      const waiting = this.drainWaiters;
      this.drainWaiters = [];
      for (const wake of waiting) wake();
    }
  }

  private handOver(session: PooledSession): void {
    const waiter = this.waiters.shift();
    if (waiter === undefined) {
      this.idle.push(session);
      return;
    }
    clearTimeout(waiter.timer);
    this.busy.add(session);
    waiter.resolve(session);
  }

  private rejectWaiters(makeError: () => Error): void {
    const waiting = this.waiters;
    this.waiters = [];
    for (const waiter of waiting) {
      clearTimeout(waiter.timer);
      waiter.reject(makeError());
    }
  }

  /** Resolves true once no call is in flight, or false after `timeoutMs`. */
  private drained(timeoutMs: number): Promise<boolean> {
    if (this.busy.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.drainWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  private unavailable(): HsmUnavailableError {
    switch (this.state) {
      case "closed":
        return new HsmUnavailableError(`the key store for token "${this.tokenLabel}" is closed`);
      case "failed":
        return new HsmUnavailableError(`HSM unavailable: token "${this.tokenLabel}" refused the PIN; operator action needed`);
      default:
        return new HsmUnavailableError(`HSM unavailable: reconnecting to token "${this.tokenLabel}"`);
    }
  }

  // ---- recovery ------------------------------------------------------------------------------------

  /**
   * Replaces lost sessions without disturbing the healthy ones: drop idle sessions the module no longer
   * knows, open new ones up to the pool size and log in again. Escalates to a full reconnect on failure.
   */
  private scheduleRepair(): void {
    if (this.repairScheduled) return;
    this.repairScheduled = true;
    setImmediate(() => {
      this.repairScheduled = false;
      if (this.state !== "ready" || this.slot === undefined) return;
      try {
        this.idle = this.idle.filter((session) => this.sessionStillOpen(session));
        const missing = this.poolSize - this.idle.length - this.busy.size;
        const fresh: PooledSession[] = [];
        try {
          for (let i = 0; i < missing; i++) {
            const handle = this.api.C_OpenSession(this.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION);
            fresh.push({ handle, generation: this.generation, keyHandles: new Map() });
          }
          const loginSession = fresh[0] ?? this.idle[0];
          if (loginSession !== undefined) this.login(loginSession.handle);
        } catch (error) {
          this.closeSessions(fresh.map((session) => session.handle));
          throw error;
        }
        for (const session of fresh) this.handOver(session);
        this.logger.info({ replaced: fresh.length }, "replaced lost HSM sessions");
      } catch (error) {
        // Opening a session failed too: the module itself is in trouble, which a new session cannot fix.
        this.startRecovery("session repair", error, ckrOf(causeOf(error)) !== CKR_CRYPTOKI_NOT_INITIALIZED);
      }
    });
  }

  private sessionStillOpen(session: PooledSession): boolean {
    try {
      this.api.C_GetSessionInfo(session.handle);
      return true;
    } catch (error) {
      const code = ckrOf(error);
      if (code !== undefined && SESSION_GONE.has(code)) return false;
      throw error;
    }
  }

  /**
   * Enters the "recovering" state: every call fails fast with `HsmUnavailableError` while a background loop
   * reconnects with exponential back-off. `finalizeFirst` is false only when the module was finalised under
   * us (CKR_CRYPTOKI_NOT_INITIALIZED): finalising again would break other key stores sharing the module.
   */
  private startRecovery(what: string, cause: unknown, finalizeFirst: boolean): void {
    if (this.state !== "ready") return;
    this.state = "recovering";
    this.generation += 1; // sessions of the old connection are dropped as they come back
    this.idle = []; // cached key handles go with the sessions they belong to
    this.rejectWaiters(() => this.unavailable());
    this.logger.warn({ operation: what, error: ckrName(cause) }, "HSM unavailable; reconnecting in the background");
    this.recovery = this.recoverLoop(finalizeFirst);
  }

  private async recoverLoop(finalizeFirst: boolean): Promise<void> {
    if (!(await this.drained(DRAIN_TIMEOUT_MS))) {
      this.logger.warn({ inFlight: this.busy.size }, "HSM calls still in flight; reconnecting anyway");
    }
    let delay = BACKOFF_INITIAL_MS;
    for (let attempt = 1; this.state === "recovering"; attempt++) {
      try {
        this.connect(finalizeFirst);
        this.logger.info({ attempt }, "reconnected to the HSM token");
        return;
      } catch (error) {
        const code = ckrOf(causeOf(error));
        if (code !== undefined && PIN_REFUSED.has(code)) {
          this.state = "failed";
          this.logger.error({ attempt, error: ckrName(error) }, "the HSM token refused the PIN; giving up reconnecting");
          return;
        }
        this.logger.warn({ attempt, retryInMs: delay, error: errorSummary(error) }, "HSM reconnect failed; retrying");
        finalizeFirst = true;
        await this.sleep(delay);
        delay = Math.min(delay * 2, BACKOFF_MAX_MS);
      }
    }
  }

  /** A back-off pause that `close()` can cut short. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wakeRecovery = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.wakeRecovery = done;
    });
  }

  // ---- keys ----------------------------------------------------------------------------------------

  private async generateKeyNow(label: string, spec: KeySpec): Promise<Signer> {
    const generatedId = await this.withSession(`generating key "${label}"`, async (session) => {
      if (this.findObjects(session.handle, [{ type: CKA_LABEL, value: label }]).length > 0) {
        throw new BadUserInputError(`a key labelled "${label}" already exists on token "${this.tokenLabel}"`);
      }
      const id = randomBytes(16);
      const common: Template = [
        { type: CKA_TOKEN, value: true },
        { type: CKA_LABEL, value: label },
        { type: CKA_ID, value: id },
      ];
      // A CA key signs and does nothing else: no decryption, unwrapping or key agreement with it.
      const publicTemplate: Template = [
        ...common,
        { type: CKA_CLASS, value: CKO_PUBLIC_KEY },
        { type: CKA_PRIVATE, value: false },
        { type: CKA_VERIFY, value: true },
        { type: CKA_ENCRYPT, value: false },
        { type: CKA_WRAP, value: false },
      ];
      const privateTemplate: Template = [
        ...common,
        { type: CKA_CLASS, value: CKO_PRIVATE_KEY },
        { type: CKA_PRIVATE, value: true },
        { type: CKA_SENSITIVE, value: true },
        { type: CKA_EXTRACTABLE, value: false },
        { type: CKA_SIGN, value: true },
        { type: CKA_DECRYPT, value: false },
        { type: CKA_UNWRAP, value: false },
      ];
      let mechanism: number;
      if (spec.type === "ec") {
        mechanism = CKM_EC_KEY_PAIR_GEN;
        publicTemplate.push({ type: CKA_KEY_TYPE, value: CKK_EC }, { type: CKA_EC_PARAMS, value: CURVES[spec.curve].oid });
        privateTemplate.push({ type: CKA_KEY_TYPE, value: CKK_EC }, { type: CKA_DERIVE, value: false });
      } else {
        mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
        publicTemplate.push(
          { type: CKA_KEY_TYPE, value: CKK_RSA },
          { type: CKA_MODULUS_BITS, value: spec.modulusBits },
          { type: CKA_PUBLIC_EXPONENT, value: RSA_PUBLIC_EXPONENT },
        );
        privateTemplate.push({ type: CKA_KEY_TYPE, value: CKK_RSA });
      }
      const pair = await this.api.C_GenerateKeyPairAsync(session.handle, { mechanism }, publicTemplate, privateTemplate);

      // A module may ignore parts of a template; a CA key that could leave the token is not acceptable.
      const [sensitive, extractable] = this.attributes(session.handle, pair.privateKey, [CKA_SENSITIVE, CKA_EXTRACTABLE]);
      if (!isTrue(sensitive) || isTrue(extractable)) {
        throw new InternalError(`token "${this.tokenLabel}" generated key "${label}" as extractable or not sensitive; refusing it`);
      }

      // Nodes sharing the token (a network HSM) may generate the same label at the same moment: the check above
      // and the serialisation in generateKey cannot see another process, and PKCS#11 has no "create unless the
      // label exists". So look again now that our pair exists, and yield (destroy it) when anything else carries
      // the label. Of racing generations at most one survives: of two keys, the later one's owner always finds
      // the earlier one, unless that one was already yielded. Both may yield, which leaves the label free.
      // That takes a token whose object list every session sees at once. SoftHSM re-reads its token folder only
      // when the token's change counter moved, and its own writes carry its copy of the counter past other
      // processes' changes, so there a race can still, rarely, leave two keys (which openKey refuses).
      const others = this.findObjects(session.handle, [{ type: CKA_LABEL, value: label }]).filter(
        (handle) => !handle.equals(pair.privateKey) && !handle.equals(pair.publicKey),
      );
      if (others.length > 0) {
        this.destroyGeneratedPair(session.handle, pair, label);
        throw new BadUserInputError(
          `another key labelled "${label}" appeared on token "${this.tokenLabel}" while this one was generated (generated elsewhere at the same time?); this one was discarded`,
        );
      }
      return id;
    });
    this.logger.info({ key: label, keyType: spec.type }, "generated a key pair in the HSM");
    // By CKA_ID as well: a racing generation elsewhere may still show its key under the label for a moment.
    return this.openVerifiedKey(label, generatedId);
  }

  private destroyGeneratedPair(session: Buffer, pair: { privateKey: Buffer; publicKey: Buffer }, label: string): void {
    try {
      // The private half first: once it is gone, nothing can sign with the pair.
      this.api.C_DestroyObject(session, pair.privateKey);
      this.api.C_DestroyObject(session, pair.publicKey);
    } catch (error) {
      this.logger.error({ key: label, error: ckrName(error) }, "could not discard a duplicate key; two keys now carry the label");
      throw error;
    }
    this.logger.warn({ key: label }, "discarded a generated key: another key with its label appeared meanwhile");
  }

  private async selfTest(signer: Pkcs11Signer): Promise<void> {
    const signature = await signer.sign(SELF_TEST_MESSAGE);
    if (!verifies(signer, SELF_TEST_MESSAGE, signature)) {
      throw new InternalError(`key "${signer.keyLabel}" on token "${this.tokenLabel}" does not match its public key; refusing it`);
    }
  }

  /** Reads and checks the key pair labelled `label` (with CKA_ID `id`, when given), and builds its SubjectPublicKeyInfo. */
  private inspectKey(session: PooledSession, label: string, id: Buffer | undefined): KeyInfo {
    const handle = session.handle;
    const withId: Template = id === undefined ? [] : [{ type: CKA_ID, value: id }];
    const privateKeys = this.findObjects(handle, [
      { type: CKA_CLASS, value: CKO_PRIVATE_KEY },
      { type: CKA_LABEL, value: label },
      ...withId,
    ]);
    if (privateKeys.length === 0) throw new KeyNotFoundError(label);
    if (privateKeys.length > 1) {
      throw new InternalError(`token "${this.tokenLabel}" holds ${privateKeys.length} private keys labelled "${label}"; refusing to pick one`);
    }
    const privateKey = privateKeys[0] as Buffer;
    const [privLabel, keyType, privateId, canSign, extractable] = this.attributes(handle, privateKey, [
      CKA_LABEL,
      CKA_KEY_TYPE,
      CKA_ID,
      CKA_SIGN,
      CKA_EXTRACTABLE,
    ]);
    if (!privLabel.equals(Buffer.from(label, "utf8"))) {
      throw new InternalError(`token "${this.tokenLabel}" returned a key that is not labelled "${label}"`);
    }
    if (!isTrue(canSign)) throw new InternalError(`key "${label}" on token "${this.tokenLabel}" is not allowed to sign`);
    if (isTrue(extractable)) this.logger.warn({ key: label }, "HSM key is extractable");

    const publicKeys = this.findObjects(handle, [
      { type: CKA_CLASS, value: CKO_PUBLIC_KEY },
      { type: CKA_LABEL, value: label },
      ...withId,
    ]);
    if (publicKeys.length !== 1) {
      throw new InternalError(
        `token "${this.tokenLabel}" holds ${publicKeys.length} public keys labelled "${label}"; expected exactly one`,
      );
    }
    const publicKey = publicKeys[0] as Buffer;
    const [pubId] = this.attributes(handle, publicKey, [CKA_ID]);
    if (!pubId.equals(privateId)) {
      throw new InternalError(`the public and private keys labelled "${label}" have different CKA_IDs`);
    }

    const type = readUlong(keyType);
    if (type === CKK_EC) {
      const [params, point] = this.attributes(handle, publicKey, [CKA_EC_PARAMS, CKA_EC_POINT]);
      const curve = (Object.keys(CURVES) as CurveName[]).find((name) => CURVES[name].oid.equals(params));
      if (curve === undefined) {
        throw new InternalError(`key "${label}" is on a curve we do not support (EC params ${params.toString("hex")})`);
      }
      const spki = ecSpki(curve, unwrapEcPoint(point, CURVES[curve].fieldBytes, label));
      return { spec: { type: "ec", curve }, spki, id: privateId };
    }
    if (type === CKK_RSA) {
      const [modulus, exponent] = this.attributes(handle, publicKey, [CKA_MODULUS, CKA_PUBLIC_EXPONENT]);
      const n = stripLeadingZeros(modulus);
      const bits = n.length * 8;
      if ((bits !== 2048 && bits !== 3072 && bits !== 4096) || (n[0] as number) < 0x80) {
        throw new InternalError(`key "${label}" is an RSA key of an unsupported size`);
      }
      const spki = jwkToSpki({ kty: "RSA", n: n.toString("base64url"), e: stripLeadingZeros(exponent).toString("base64url") });
      return { spec: { type: "rsa", modulusBits: bits }, spki, id: privateId };
    }
    throw new InternalError(`key "${label}" has a key type we do not support (CKK ${type})`);
  }

  /**
   * The private key handle of `signer` on this session, found by label and the CKA_ID the signer was opened
   * with, and checked to carry both, so a key swapped under the label is never used (and a key another node
   * briefly generated under the same label, before discarding it, is never picked).
   */
  private privateKeyHandle(session: PooledSession, signer: Pkcs11Signer): Buffer {
    const cached = session.keyHandles.get(signer.keyLabel);
    if (cached !== undefined) return cached;
    const found = this.findObjects(session.handle, [
      { type: CKA_CLASS, value: CKO_PRIVATE_KEY },
      { type: CKA_LABEL, value: signer.keyLabel },
      { type: CKA_ID, value: signer.keyId },
    ]);
    if (found.length === 0) {
      // Private objects are invisible without a login, so an empty search may mean the login is gone.
      this.assertLoggedIn(session);
      throw new HsmUnavailableError(`HSM unavailable: key "${signer.keyLabel}" is no longer on token "${this.tokenLabel}"`);
    }
    if (found.length > 1) {
      throw new InternalError(`token "${this.tokenLabel}" holds ${found.length} private keys labelled "${signer.keyLabel}"`);
    }
    const handle = found[0] as Buffer;
    const [label, id] = this.attributes(session.handle, handle, [CKA_LABEL, CKA_ID]);
    if (!label.equals(Buffer.from(signer.keyLabel, "utf8")) || !id.equals(signer.keyId)) {
      throw new InternalError(`the key labelled "${signer.keyLabel}" on token "${this.tokenLabel}" is not the one opened`);
    }
    session.keyHandles.set(signer.keyLabel, handle);
    return handle;
  }

  private assertLoggedIn(session: PooledSession): void {
    const { state } = this.api.C_GetSessionInfo(session.handle);
    if (state !== CKS_RO_USER_FUNCTIONS && state !== CKS_RW_USER_FUNCTIONS) {
      throw new SessionFault("session is no longer logged in");
    }
  }

  private findObjects(session: Buffer, template: Template): Buffer[] {
    this.api.C_FindObjectsInit(session, template);
    try {
      const found: Buffer[] = [];
      for (;;) {
        const batch = this.api.C_FindObjects(session, 32);
        if (batch.length === 0) return found;
        found.push(...batch);
      }
    } finally {
      this.api.C_FindObjectsFinal(session);
    }
  }

  /** The values of `types` on `object`, in the order asked. */
  private attributes<const T extends readonly number[]>(
    session: Buffer,
    object: Buffer,
    types: T,
  ): { [K in keyof T]: Buffer } {
    const values = this.api.C_GetAttributeValue(
      session,
      object,
      types.map((type) => ({ type })),
    );
    return types.map((type) => {
      const value = values.find((attribute) => attribute.type === type)?.value;
      if (!Buffer.isBuffer(value)) throw new InternalError(`the token returned no value for attribute 0x${type.toString(16)}`);
      return value;
    }) as { [K in keyof T]: Buffer };
  }
}

/** A key in a `Pkcs11KeyStore`. Holds only the label and public data; the store finds the handle per session. */
class Pkcs11Signer implements Signer {
  readonly keySpec: KeySpec;
  readonly signatureAlgorithm: SignatureAlgorithmName;
  readonly publicKeySpki: Buffer;
  /** CKA_ID of the key when it was opened; a key re-created under the same label is refused. */
  readonly keyId: Buffer;

  constructor(
    readonly keyLabel: string,
    info: KeyInfo,
    private readonly signWithStore: (data: Uint8Array) => Promise<Buffer>,
  ) {
    this.keySpec = info.spec;
    this.signatureAlgorithm = signatureAlgorithmFor(info.spec);
    this.publicKeySpki = info.spki;
    this.keyId = info.id;
  }

  sign(data: Uint8Array): Promise<Buffer> {
    return this.signWithStore(data);
  }
}

// ---- encodings -----------------------------------------------------------------------------------------

/**
 * Converts a raw PKCS#11 ECDSA signature (r ‖ s, each `fieldBytes` long) to the DER Ecdsa-Sig-Value of
 * RFC 3279: SEQUENCE { r INTEGER, s INTEGER }, each INTEGER minimal and positive.
 */
export function ecdsaRawToDer(raw: Buffer, fieldBytes: number): Buffer {
  if (raw.length !== 2 * fieldBytes) {
    throw new InternalError(`ECDSA signature of ${raw.length} bytes from the token; expected ${2 * fieldBytes}`);
  }
  const r = derInteger(raw.subarray(0, fieldBytes));
  const s = derInteger(raw.subarray(fieldBytes));
  return Buffer.concat([Buffer.from([0x30]), derLength(r.length + s.length), r, s]);
}

function derInteger(unsigned: Buffer): Buffer {
  let value = stripLeadingZeros(unsigned);
  if (value.length === 0) value = Buffer.from([0]);
  // A set high bit would read as negative; DER adds one zero byte in front.
  if (((value[0] as number) & 0x80) !== 0) value = Buffer.concat([Buffer.from([0]), value]);
  return Buffer.concat([Buffer.from([0x02]), derLength(value.length), value]);
}

function derLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  if (length < 0x100) return Buffer.from([0x81, length]);
  return Buffer.from([0x82, length >> 8, length & 0xff]);
}

function stripLeadingZeros(bytes: Buffer): Buffer {
  let start = 0;
  while (start < bytes.length && bytes[start] === 0) start++;
  return bytes.subarray(start);
}

/**
 * The uncompressed point from CKA_EC_POINT, which PKCS#11 defines as a DER OCTET STRING around it; a few
 * older modules return the bare point, which we accept too.
 */
function unwrapEcPoint(value: Buffer, fieldBytes: number, label: string): Buffer {
  const pointLength = 1 + 2 * fieldBytes;
  let point: Buffer | undefined;
  if (value.length === pointLength) point = value;
  else if (value.length === pointLength + 2 && value[0] === 0x04 && value[1] === pointLength) point = value.subarray(2);
  if (point === undefined || point[0] !== 0x04) {
    throw new InternalError(`key "${label}" has a CKA_EC_POINT that is not an uncompressed point`);
  }
  return point;
}

function ecSpki(curve: CurveName, point: Buffer): Buffer {
  const { fieldBytes, jwkCrv } = CURVES[curve];
  return jwkToSpki({
    kty: "EC",
    crv: jwkCrv,
    x: point.subarray(1, 1 + fieldBytes).toString("base64url"),
    y: point.subarray(1 + fieldBytes).toString("base64url"),
  });
}

/** node:crypto checks the point is on the curve while importing, so a corrupt public key fails here. */
function jwkToSpki(jwk: JsonWebKey): Buffer {
  try {
    return createPublicKey({ key: jwk, format: "jwk" }).export({ type: "spki", format: "der" });
  } catch (error) {
    throw new InternalError("the token returned a public key that does not parse", { cause: error });
  }
}

function verifies(signer: Signer, data: Buffer, signature: Buffer): boolean {
  const spec = signer.keySpec;
  const hash = spec.type === "ec" ? CURVES[spec.curve].hash : "sha256";
  const key = createPublicKey({ key: signer.publicKeySpki, format: "der", type: "spki" });
  return verifySignature(hash, data, { key, dsaEncoding: "der" }, signature);
}

/** CK_ULONG attribute values arrive as native-endian bytes of the platform's unsigned long. */
function readUlong(value: Buffer): number {
  const littleEndian = endianness() === "LE";
  if (value.length === 8) return Number(littleEndian ? value.readBigUInt64LE() : value.readBigUInt64BE());
  if (value.length === 4) return littleEndian ? value.readUInt32LE() : value.readUInt32BE();
  throw new InternalError(`unexpected CK_ULONG attribute of ${value.length} bytes`);
}

function isTrue(value: Buffer): boolean {
  return value.length > 0 && value[0] !== 0;
}

function checkLabel(label: string): void {
  if (typeof label !== "string" || label.length === 0) throw new BadUserInputError("a key label must be a non-empty string");
}

function checkSpec(spec: KeySpec): void {
  const ok =
    (spec?.type === "ec" && (spec.curve === "P-256" || spec.curve === "P-384")) ||
    (spec?.type === "rsa" && [2048, 3072, 4096].includes(spec.modulusBits));
  if (!ok) throw new BadUserInputError(`unsupported key spec ${JSON.stringify(spec)}`);
}

// ---- errors ----------------------------------------------------------------------------------------------

/** The CKR_* return value of a pkcs11js error (duck-typed, so a fake module's errors work the same way). */
function ckrOf(error: unknown): number | undefined {
  if (error instanceof Error && error.name === "Pkcs11Error" && typeof (error as { code?: unknown }).code === "number") {
    return (error as unknown as { code: number }).code;
  }
  return undefined;
}

/** The pkcs11js error inside one of our `HsmUnavailableError`s, or the error itself. */
function causeOf(error: unknown): unknown {
  return error instanceof HsmUnavailableError && error.cause !== undefined ? error.cause : error;
}

/** The CKR_* name pkcs11js puts in the message; safe to log and to show (it never holds arguments). */
function ckrName(error: unknown): string {
  const inner = causeOf(error);
  if (inner instanceof Error && /^CKR_[A-Z0-9_]+$/.test(inner.message)) return inner.message;
  return inner instanceof Error ? inner.name : "unknown error";
}

function errorSummary(error: unknown): string {
  if (error instanceof HsmUnavailableError) return `${error.message}`;
  return ckrName(error);
}

function isNativeError(error: unknown): boolean {
  return error instanceof Error && (error.name === "NativeError" || error.name === "Pkcs11Error");
}

/** A token's label as set: labels are blank-padded to 32 bytes, and some modules pad with NULs instead. */
export function tokenLabelOf(info: { readonly label: string }): string {
  return info.label.replace(/[\s\0]+$/, "");
}
