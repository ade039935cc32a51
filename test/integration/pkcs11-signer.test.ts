/**
 * Pkcs11KeyStore against a real SoftHSM2 through pkcs11js: the signer contract, key attributes as a tool we
 * did not write (OpenSC pkcs11-tool) reports them, recovery from lost sessions and a finalised module,
 * login failures, and isolation between tokens.
 *
 * One SoftHSM config per file (see test/support/softhsm.ts); the suites below run one after the other and
 * each closes its key stores before the next starts.
 */
import { execFile } from "node:child_process";
import { createPublicKey, verify } from "node:crypto";
import { inspect, promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HsmUnavailableError } from "../../src/common/errors.js";
import type { Logger } from "../../src/common/logger.js";
import {
  Pkcs11KeyStore,
  type Pkcs11KeyStoreOptions,
  type SimulatedFault,
} from "../../src/signer/pkcs11/pkcs11-key-store.js";
import { KeyNotFoundError, type Signer } from "../../src/signer/signer.js";
import { signerContract } from "../contract/signer.contract.js";
import { createSoftHsm, softHsmUnavailableReason, type SoftHsm } from "../support/softhsm.js";

const execFileAsync = promisify(execFile);

const ONLINE = "anchorage-online";
const ONLINE_PIN = "online-pin-4711";
const ROOT = "anchorage-root";
const ROOT_PIN = "root-pin-9824";
const WRONG_PIN = "wrong-pin-6502";

const skipReason = softHsmUnavailableReason();

describe.skipIf(skipReason !== undefined)(`Pkcs11KeyStore on SoftHSM2${skipReason ? ` (skipped: ${skipReason})` : ""}`, () => {
  let hsm: SoftHsm;

  beforeAll(async () => {
    hsm = await createSoftHsm([
      { label: ONLINE, pin: ONLINE_PIN },
      { label: ROOT, pin: ROOT_PIN },
    ]);
  });
  afterAll(async () => {
    await hsm?.cleanup();
  });

  const open = (options: Partial<Pkcs11KeyStoreOptions> = {}): Promise<Pkcs11KeyStore> =>
    Pkcs11KeyStore.open({ modulePath: hsm.modulePath, tokenLabel: ONLINE, pin: ONLINE_PIN, ...options });

  signerContract("Pkcs11KeyStore on SoftHSM2", async () => {
    const store = await open();
    return { store, cleanup: () => store.close() };
  });

  describe("generated keys, as pkcs11-tool lists them", () => {
    let store: Pkcs11KeyStore;
    let objects: ToolObject[];

    beforeAll(async () => {
      store = await open();
      await store.generateKey("attributes-ec", { type: "ec", curve: "P-256" });
      await store.generateKey("attributes-rsa", { type: "rsa", modulusBits: 2048 });
      objects = await listObjects(hsm, ONLINE, ONLINE_PIN);
    });
    afterAll(async () => {
      await store?.close();
    });

    for (const label of ["attributes-ec", "attributes-rsa"]) {
      it(`${label}: the private key is sensitive, always sensitive and never extractable, and only signs`, () => {
        const privateKey = objects.find((o) => o.header.startsWith("Private Key Object") && o.fields.get("label") === label);
        expect(privateKey, `pkcs11-tool lists no private key labelled ${label}`).toBeDefined();
        // pkcs11-tool (OpenSC 0.2x) prints e.g. "Access:     sensitive, always sensitive, never extractable, local".
        expect(privateKey!.fields.get("Access")).toMatch(/^sensitive, always sensitive, never extractable(, local)?$/);
        expect(privateKey!.fields.get("Usage")).toBe("sign");
      });

      it(`${label}: both halves carry the same random 16-byte CKA_ID`, () => {
        const halves = objects.filter((o) => o.fields.get("label") === label);
        expect(halves.map((o) => o.header.split(";")[0]).sort()).toEqual(["Private Key Object", "Public Key Object"]);
        const ids = halves.map((o) => o.fields.get("ID"));
        expect(ids[0]).toMatch(/^[0-9a-f]{32}$/);
        expect(ids[1]).toBe(ids[0]);
      });
    }

    it("every private key on the token is sensitive and never extractable", () => {
      const privateKeys = objects.filter((o) => o.header.startsWith("Private Key Object"));
      expect(privateKeys.length).toBeGreaterThanOrEqual(2);
      for (const key of privateKeys) {
        expect(key.fields.get("Access"), key.fields.get("label")).toMatch(/^sensitive, always sensitive, never extractable/);
      }
    });
  });

  describe("recovery", () => {
    const logs: LogEntry[] = [];
    let store: Pkcs11KeyStore;
    let signer: Signer;

    beforeAll(async () => {
      store = await open({ logger: collectingLogger(logs) });
      signer = await store.generateKey("recovery-ec", { type: "ec", curve: "P-256" });
    });
    afterAll(async () => {
      await store?.close();
    });

    const faults: SimulatedFault[] = ["close-all-sessions", "logout", "finalize"];
    for (const fault of faults) {
      it(`after ${fault}: calls fail closed with HsmUnavailableError, then signing works again`, async () => {
        expectVerifies(signer, Buffer.from("before"), await signer.sign(Buffer.from("before")));

        store.simulateFaultForTests(fault);
        const messages = Array.from({ length: 8 }, (_, i) => Buffer.from(`during ${fault} ${i}`));
        const outcomes = await Promise.allSettled(messages.map((m) => signer.sign(m)));
        const failures = outcomes.filter((o): o is PromiseRejectedResult => o.status === "rejected");
        // The fault is real (some call hit it) and nothing but HsmUnavailableError escapes.
        expect(failures.length).toBeGreaterThan(0);
        for (const failure of failures) expect(failure.reason).toBeInstanceOf(HsmUnavailableError);
        outcomes.forEach((o, i) => {
          if (o.status === "fulfilled") expectVerifies(signer, messages[i]!, o.value);
        });

        const after = Buffer.from(`after ${fault}`);
        expectVerifies(signer, after, await signEventually(signer, after, 10_000));
        expect(await store.isHealthy()).toBe(true);
      });
    }

    it("while the module cannot be initialised: fails fast, reports unhealthy, retries with back-off, recovers", async () => {
      const confPath = process.env.SOFTHSM2_CONF;
      // SoftHSM reads SOFTHSM2_CONF at each C_Initialize: a missing file makes every reconnect attempt fail.
      process.env.SOFTHSM2_CONF = `${hsm.dir}/does-not-exist.conf`;
      try {
        store.simulateFaultForTests("finalize");
        await expect(signer.sign(Buffer.from("outage 1"))).rejects.toBeInstanceOf(HsmUnavailableError);
        await sleep(400);
        await expect(signer.sign(Buffer.from("outage 2"))).rejects.toBeInstanceOf(HsmUnavailableError);
        expect(await store.isHealthy()).toBe(false);
      } finally {
        process.env.SOFTHSM2_CONF = confPath;
      }
      const retries = logs.filter((entry) => entry.message === "HSM reconnect failed; retrying");
      expect(retries.length).toBeGreaterThanOrEqual(2);
      const delays = retries.map((entry) => (entry.fields as { retryInMs: number }).retryInMs);
      expect(delays[1]).toBeGreaterThan(delays[0]!);

      const data = Buffer.from("after the outage");
      expectVerifies(signer, data, await signEventually(signer, data, 15_000));
      expect(await store.isHealthy()).toBe(true);
    });

    it("logs the recovery and never the PIN", () => {
      const text = JSON.stringify(logs);
      expect(logs.some((entry) => entry.message === "replaced lost HSM sessions")).toBe(true);
      expect(logs.some((entry) => entry.message === "reconnected to the HSM token")).toBe(true);
      expect(text).not.toContain(ONLINE_PIN);
    });

    it("close is idempotent and later calls fail with HsmUnavailableError", async () => {
      await store.close();
      await store.close();
      await expect(signer.sign(Buffer.from("after close"))).rejects.toBeInstanceOf(HsmUnavailableError);
      await expect(store.openKey("recovery-ec")).rejects.toBeInstanceOf(HsmUnavailableError);
      expect(await store.isHealthy()).toBe(false);
    });
  });

  describe("opening", () => {
    it("a wrong PIN fails with HsmUnavailableError that names neither PIN, and leaves the module usable", async () => {
      const error = await open({ pin: WRONG_PIN }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(HsmUnavailableError);
      expect((error as Error).message).toMatch(/refused the PIN/);
      const everything = `${inspect(error, { depth: 10 })} ${(error as Error).stack} ${JSON.stringify(error)}`;
      expect(everything).not.toContain(WRONG_PIN);
      expect(everything).not.toContain(ONLINE_PIN);

      const store = await open();
      expect(await store.isHealthy()).toBe(true);
      await store.close();
    });

    it("an unknown token label fails with an error that lists the tokens present", async () => {
      const error = await open({ tokenLabel: "no-such-token" }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(HsmUnavailableError);
      expect((error as Error).message).toContain(`"${ONLINE}"`);
      expect((error as Error).message).not.toContain(ONLINE_PIN);
    });

    it("a module that does not exist fails with HsmUnavailableError", async () => {
      await expect(open({ modulePath: `${hsm.dir}/no-such-module.so` })).rejects.toBeInstanceOf(HsmUnavailableError);
    });
  });

  describe("token isolation", () => {
    it("the online PIN does not open the root token", async () => {
      const error = await Pkcs11KeyStore.open({ modulePath: hsm.modulePath, tokenLabel: ROOT, pin: ONLINE_PIN }).catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(HsmUnavailableError);
    });

    it("a key store logged into the online token cannot open a key on the root token", async () => {
      const root = await Pkcs11KeyStore.open({ modulePath: hsm.modulePath, tokenLabel: ROOT, pin: ROOT_PIN });
      const rootSigner = await root.generateKey("root-ca", { type: "ec", curve: "P-384" });

      // Opened second, so it shares the module initialised by `root` (one PKCS#11 module per process).
      const online = await open();
      try {
        const error = await online.openKey("root-ca").catch((e: unknown) => e);
        expect(error).toBeInstanceOf(KeyNotFoundError);
        await expect(online.generateKey("online-ca", { type: "ec", curve: "P-256" })).resolves.toBeDefined();
        await expect(root.openKey("online-ca")).rejects.toBeInstanceOf(KeyNotFoundError);
      } finally {
        await online.close();
      }

      // Closing the store that did not initialise the module leaves the other one working.
      expectVerifies(rootSigner, Buffer.from("root still signs"), await rootSigner.sign(Buffer.from("root still signs")));
      await root.close();

      // Keys are token objects: a later key store on the same token finds the same key.
      const again = await Pkcs11KeyStore.open({ modulePath: hsm.modulePath, tokenLabel: ROOT, pin: ROOT_PIN });
      try {
        expect((await again.openKey("root-ca")).publicKeySpki.equals(rootSigner.publicKeySpki)).toBe(true);
      } finally {
        await again.close();
      }
    });

    it("a store whose module was finalised by another store's close reconnects by itself", async () => {
      const first = await open();
      const second = await Pkcs11KeyStore.open({ modulePath: hsm.modulePath, tokenLabel: ROOT, pin: ROOT_PIN });
      try {
        const signer = await second.openKey("root-ca");
        await first.close(); // `first` initialised the module, so it finalises it
        const data = Buffer.from("after the other store closed");
        expectVerifies(signer, data, await signEventually(signer, data, 10_000));
      } finally {
        await first.close();
        await second.close();
      }
    });
  });
});

// ---- helpers ---------------------------------------------------------------------------------------------

interface ToolObject {
  header: string;
  fields: Map<string, string>;
}

/** `pkcs11-tool --list-objects` parsed into blocks: a header line, then indented "name: value" lines. */
async function listObjects(hsm: SoftHsm, token: string, pin: string): Promise<ToolObject[]> {
  const { stdout } = await execFileAsync(
    "pkcs11-tool",
    ["--module", hsm.modulePath, "--token-label", token, "--login", "--pin", pin, "--list-objects"],
    { env: { ...process.env, SOFTHSM2_CONF: hsm.confPath } },
  );
  const objects: ToolObject[] = [];
  for (const line of stdout.split("\n")) {
    if (line.trim() === "") continue;
    if (!/^\s/.test(line)) {
      objects.push({ header: line.trim(), fields: new Map() });
      continue;
    }
    const match = /^\s+([^:]+):\s*(.*)$/.exec(line);
    if (match && objects.length > 0) objects.at(-1)!.fields.set(match[1]!.trim(), match[2]!.trim());
  }
  return objects;
}

interface LogEntry {
  level: string;
  fields: object;
  message: string;
}

function collectingLogger(entries: LogEntry[], bindings: object = {}): Logger {
  const at =
    (level: string) =>
    (fields: object, message: string): void => {
      entries.push({ level, fields: { ...bindings, ...fields }, message });
    };
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    child: (more) => collectingLogger(entries, { ...bindings, ...more }),
  };
}

function expectVerifies(signer: Signer, data: Buffer, signature: Buffer): void {
  const key = createPublicKey({ key: signer.publicKeySpki, format: "der", type: "spki" });
  const hash = signer.signatureAlgorithm === "ecdsa-with-SHA384" ? "sha384" : "sha256";
  expect(verify(hash, data, { key, dsaEncoding: "der" }, signature)).toBe(true);
}

/** Signs, retrying while the store answers HsmUnavailableError, for at most `withinMs`. */
async function signEventually(signer: Signer, data: Buffer, withinMs: number): Promise<Buffer> {
  const deadline = Date.now() + withinMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      return await signer.sign(data);
    } catch (error) {
      if (!(error instanceof HsmUnavailableError)) throw error;
      last = error;
      await sleep(50);
    }
  }
  throw new Error(`signing still fails after ${withinMs} ms`, { cause: last });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
