/**
 * One "node" of a test: a child process holding a `Pkcs11KeyStore`, driven by its parent over the IPC channel.
 * A PKCS#11 module is process-wide state (pkcs11js loads one copy per process, and two stores on one module
 * path share its connection and login), so separate nodes need separate processes.
 *
 * The module, token and PIN come from the environment (`ANCHORAGE_PKCS11_MODULE`, `ANCHORAGE_HSM_TOKEN_LABEL`,
 * `ANCHORAGE_HSM_PIN`), as the service reads them; whatever else the module needs (P11_KIT_SERVER_ADDRESS
 * for p11-kit's client module) is in the same environment. Start it with `startKeyStoreNode`.
 */
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { AnchorageError } from "../../src/common/errors.js";
import { Pkcs11KeyStore } from "../../src/signer/pkcs11/pkcs11-key-store.js";
import type { KeySpec, Signer } from "../../src/signer/signer.js";

type Request =
  | { op: "generateKey"; label: string; spec: KeySpec }
  | { op: "openKey"; label: string }
  | { op: "sign"; label: string; messages: string[] }
  | { op: "isHealthy" }
  | { op: "close" };

/** What a node answers; `error` carries the class name and, for our typed errors, the code. */
type Reply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: { name: string; code?: string; message: string } };

export interface NodeError {
  readonly name: string;
  readonly code?: string;
  readonly message: string;
}

export interface KeyStoreNode {
  readonly pid: number;
  /** Generates a key in the token; resolves to its DER SubjectPublicKeyInfo. */
  generateKey(label: string, spec: KeySpec): Promise<Buffer>;
  /** Opens an existing key; resolves to its DER SubjectPublicKeyInfo. */
  openKey(label: string): Promise<Buffer>;
  /** Signs every message concurrently with an opened key; resolves to the signatures in order. */
  sign(label: string, messages: readonly Buffer[]): Promise<Buffer[]>;
  isHealthy(): Promise<boolean>;
  /** Closes the key store and waits for the process to exit. */
  close(): Promise<void>;
}

/** Raised in the parent with the name, code and message of the error the node's key store threw. */
export class NodeCallError extends Error implements NodeError {
  readonly code: string | undefined;
  constructor(readonly remote: NodeError) {
    super(remote.message);
    this.name = remote.name;
    this.code = remote.code;
  }
}

const ENTRY = fileURLToPath(import.meta.url);
/** No call may hang: an answer that does not come within this bound fails the call. */
const CALL_TIMEOUT_MS = 30_000;

/** Children still running when the test process exits are killed, so a crashed test leaves none behind. */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/**
 * Starts a node with `env` and waits until its key store is open. The test process's own HSM settings
 * (ANCHORAGE_*, SOFTHSM2_CONF) are not passed on: a node reaches the token only as `env` says.
 * Rejects with the node's error when the store cannot open.
 */
export async function startKeyStoreNode(env: Record<string, string>): Promise<KeyStoreNode> {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith("ANCHORAGE_") && name !== "SOFTHSM2_CONF" && !name.startsWith("P11_KIT_")),
  );
  const child = fork(ENTRY, [], {
    env: { ...inherited, ...env },
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  running.add(child);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  void exited.then(() => running.delete(child));

  let nextId = 1;
  const pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void; timer: NodeJS.Timeout }>();
  const failAll = (error: Error): void => {
    for (const call of pending.values()) {
      clearTimeout(call.timer);
      call.reject(error);
    }
    pending.clear();
  };
  child.on("message", (message: Reply | { ready: true } | { ready: false; error: NodeError }) => {
    if ("ready" in message) return;
    const call = pending.get(message.id);
    if (call === undefined) return;
    pending.delete(message.id);
    clearTimeout(call.timer);
    if (message.ok) call.resolve(message.value);
    else call.reject(new NodeCallError(message.error));
  });
  void exited.then(() => failAll(new Error(`key store node ${child.pid} exited`)));

  const ready = await new Promise<{ ready: true } | { ready: false; error: NodeError }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the key store node did not open its store in time")), CALL_TIMEOUT_MS);
    child.once("message", (message: { ready: true } | { ready: false; error: NodeError }) => {
      clearTimeout(timer);
      resolve(message);
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error("the key store node exited before opening its store"));
    });
  });
  if (!ready.ready) {
    await exited;
    throw new NodeCallError(ready.error);
  }

  const call = <T>(request: Request): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`key store node: no answer to ${request.op} within ${CALL_TIMEOUT_MS} ms`));
      }, CALL_TIMEOUT_MS);
      pending.set(id, { resolve: resolve as (value: unknown) => void, reject, timer });
      child.send({ id, ...request });
    });

  return {
    pid: child.pid as number,
    generateKey: async (label, spec) => Buffer.from(await call<string>({ op: "generateKey", label, spec }), "base64"),
    openKey: async (label) => Buffer.from(await call<string>({ op: "openKey", label }), "base64"),
    sign: async (label, messages) =>
      (await call<string[]>({ op: "sign", label, messages: messages.map((m) => m.toString("base64")) })).map((s) => Buffer.from(s, "base64")),
    isHealthy: () => call<boolean>({ op: "isHealthy" }),
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        await call({ op: "close" }).catch(() => undefined);
        child.disconnect();
      }
      await exited;
    },
  };
}

// ---- the node process ------------------------------------------------------------------------------

function describeError(error: unknown): NodeError {
  if (error instanceof AnchorageError) return { name: error.name, code: error.code, message: error.message };
  if (error instanceof Error) return { name: error.name, message: error.message };
  return { name: "Error", message: String(error) };
}

async function serve(): Promise<void> {
  const send = (message: unknown): void => {
    process.send?.(message);
  };
  let store: Pkcs11KeyStore;
  try {
    store = await Pkcs11KeyStore.open({
      modulePath: process.env.ANCHORAGE_PKCS11_MODULE as string,
      tokenLabel: process.env.ANCHORAGE_HSM_TOKEN_LABEL as string,
      pin: process.env.ANCHORAGE_HSM_PIN as string,
    });
  } catch (error) {
    send({ ready: false, error: describeError(error) });
    process.disconnect?.();
    return;
  }
  const signers = new Map<string, Signer>();
  const handle = async (request: Request): Promise<unknown> => {
    switch (request.op) {
      case "generateKey": {
        const signer = await store.generateKey(request.label, request.spec);
        signers.set(request.label, signer);
        return signer.publicKeySpki.toString("base64");
      }
      case "openKey": {
        const signer = await store.openKey(request.label);
        signers.set(request.label, signer);
        return signer.publicKeySpki.toString("base64");
      }
      case "sign": {
        const signer = signers.get(request.label);
        if (signer === undefined) throw new Error(`key "${request.label}" is not open on this node`);
        const signatures = await Promise.all(request.messages.map((message) => signer.sign(Buffer.from(message, "base64"))));
        return signatures.map((signature) => signature.toString("base64"));
      }
      case "isHealthy":
        return store.isHealthy();
      case "close":
        await store.close();
        return null;
    }
  };
  process.on("message", (message: Request & { id: number }) => {
    handle(message).then(
      (value) => send({ id: message.id, ok: true, value }),
      (error: unknown) => send({ id: message.id, ok: false, error: describeError(error) }),
    );
  });
  // The parent disconnecting (or dying) ends the node; close the store first so the module is released cleanly.
  process.once("disconnect", () => {
    void store.close().finally(() => process.exit(0));
  });
  send({ ready: true });
}

if (process.argv[1] === ENTRY && process.send !== undefined) void serve();
