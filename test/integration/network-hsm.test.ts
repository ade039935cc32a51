/**
 * Two service nodes sharing one token through a network HSM, with `p11-kit server` exporting a SoftHSM token
 * over a Unix socket as the stand-in. Each node is a separate process (a PKCS#11 module is process-wide
 * state) holding a `Pkcs11KeyStore` on p11-kit's client module, with P11_KIT_SERVER_ADDRESS in its
 * environment and no access of its own to the token files.
 *
 * The server serves each connection in a process of its own, with its own SoftHSM instance over the same
 * token files: keys made through one connection must be found through the others, and losing the server
 * must make both nodes fail closed and then recover by themselves once it is back.
 */
import { createPublicKey, verify } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initialiseToken } from "../../src/signer/pkcs11/token-initialisation.js";
import { NodeCallError, startKeyStoreNode, type KeyStoreNode } from "../support/key-store-node.js";
import { requireP11Kit, startP11KitServer, type P11KitServer } from "../support/p11-kit.js";
import { createSoftHsm, softHsmUnavailableReason, type SoftHsm } from "../support/softhsm.js";

const TOKEN = "anchorage-network";
const PIN = "network-pin-1618";
const KEY = "shared-intermediate";

/** How long the nodes may take to sign again once the server is back (the store's back-off is capped at 5 s). */
const RECOVERY_WITHIN_MS = 15_000;
/** How long a call may take to fail while the HSM is gone: the key store fails fast, it never waits an outage out. */
const FAILS_WITHIN_MS = 10_000;

const missing = softHsmUnavailableReason() ?? requireP11Kit();

const messages = (node: string, count: number): Buffer[] =>
  Array.from({ length: count }, (_, i) => Buffer.from(`${node} message ${i}: ${"x".repeat(i)}`));

function verifiesWith(spki: Buffer, data: Buffer, signature: Buffer): boolean {
  return verify("sha256", data, { key: createPublicKey({ key: spki, format: "der", type: "spki" }), dsaEncoding: "der" }, signature);
}

/** The typed error `promise` fails with, within FAILS_WITHIN_MS. */
async function failure(promise: Promise<unknown>): Promise<NodeCallError> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`no answer within ${FAILS_WITHIN_MS} ms`), FAILS_WITHIN_MS);
  });
  const settled = promise.then(
    () => "a result",
    (error: unknown) => error,
  );
  const outcome = await Promise.race([settled, bound]).finally(() => clearTimeout(timer));
  expect(outcome, "the call must fail, in bounded time, with the node's typed error").toBeInstanceOf(NodeCallError);
  return outcome as NodeCallError;
}

describe.skipIf(missing !== undefined)(`two nodes sharing a token through p11-kit server${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let hsm: SoftHsm;
  let server: P11KitServer;
  let first: KeyStoreNode;
  let second: KeyStoreNode;
  let publicKey: Buffer;

  beforeAll(async () => {
    hsm = await createSoftHsm([{ label: TOKEN, pin: PIN }]);
    server = await startP11KitServer(hsm, TOKEN);
    // What a production node is given: the client module as its PKCS#11 module, and where the HSM is.
    const nodeEnvironment = {
      ANCHORAGE_PKCS11_MODULE: server.clientModulePath,
      P11_KIT_SERVER_ADDRESS: server.address,
      ANCHORAGE_HSM_TOKEN_LABEL: TOKEN,
      ANCHORAGE_HSM_PIN: PIN,
    };
    // Both stores are open before any key exists: the second must find a key made after it connected.
    [first, second] = await Promise.all([startKeyStoreNode(nodeEnvironment), startKeyStoreNode(nodeEnvironment)]);
  });

  afterAll(async () => {
    await Promise.all([first?.close(), second?.close()]);
    await server?.stop();
    await hsm?.cleanup();
  });

  it("opens the token through the client module on both nodes", async () => {
    expect(await first.isHealthy()).toBe(true);
    expect(await second.isHealthy()).toBe(true);
  });

  it("leaves the exported token alone when token initialisation runs through the client module", () => {
    const previous = process.env.P11_KIT_SERVER_ADDRESS;
    // The client module reads the address when it is loaded, from the environment of the process.
    process.env.P11_KIT_SERVER_ADDRESS = server.address;
    try {
      const initialised = initialiseToken({ modulePath: server.clientModulePath, label: TOKEN, userPin: "other-pin-0000", soPin: "other-so-0000" });
      expect(initialised, "the token is found by label and not initialised again").toBe(false);
    } finally {
      if (previous === undefined) delete process.env.P11_KIT_SERVER_ADDRESS;
      else process.env.P11_KIT_SERVER_ADDRESS = previous;
    }
  });

  it("signs on one node with a key generated on the other, after both connected", async () => {
    publicKey = await first.generateKey(KEY, { type: "ec", curve: "P-256" });
    expect(await second.openKey(KEY)).toEqual(publicKey);

    const [data] = messages("second", 1) as [Buffer];
    const [signature] = (await second.sign(KEY, [data])) as [Buffer];
    expect(verifiesWith(publicKey, data, signature)).toBe(true);
    expect(await second.isHealthy()).toBe(true);
  });

  it("refuses, on the other node, a second key under a label the first node took", async () => {
    const error = await failure(second.generateKey(KEY, { type: "ec", curve: "P-256" }));
    expect(error.code).toBe("BAD_USER_INPUT");
    expect(await second.openKey(KEY)).toEqual(publicKey);
  });

  it("ends simultaneous generations of one label on two nodes in a working key or a clear refusal", async () => {
    // PKCS#11 has no "create unless the label exists", so both nodes may pass the label check. Both used to keep
    // their keys, and every open of the label failed from then on (two keys, INTERNAL). Now a generation that
    // finds another key under its label destroys its own pair and refuses with BAD_USER_INPUT, and one that
    // keeps its key signs with it. That at most one pair survives also needs a token whose object list every
    // connection sees at once: SoftHSM, the stand-in here, lets a connection's own writes hide another
    // connection's new objects until the token changes again, so the surviving pairs are not counted here.
    const nodes = [first, second];
    for (let round = 0; round < 6; round++) {
      const label = `raced-${round}`;
      const outcomes = await Promise.allSettled(nodes.map((node) => node.generateKey(label, { type: "ec", curve: "P-256" })));
      for (const [index, outcome] of outcomes.entries()) {
        if (outcome.status === "rejected") {
          expect((outcome.reason as NodeCallError).code, `round ${round}: ${String(outcome.reason)}`).toBe("BAD_USER_INPUT");
          continue;
        }
        const [data] = messages(label, 1) as [Buffer];
        const [signature] = (await (nodes[index] as KeyStoreNode).sign(label, [data])) as [Buffer];
        expect(verifiesWith(outcome.value, data, signature), `round ${round}: the key a generation returned signs`).toBe(true);
      }
    }
  });

  it("signs concurrently on both nodes, every signature verifying with the shared key", async () => {
    const fromFirst = messages("first", 24);
    const fromSecond = messages("second", 24);
    const [firstSignatures, secondSignatures] = await Promise.all([first.sign(KEY, fromFirst), second.sign(KEY, fromSecond)]);
    expect(firstSignatures).toHaveLength(fromFirst.length);
    expect(secondSignatures).toHaveLength(fromSecond.length);
    fromFirst.forEach((data, i) => expect(verifiesWith(publicKey, data, firstSignatures[i] as Buffer), `first #${i}`).toBe(true));
    fromSecond.forEach((data, i) => expect(verifiesWith(publicKey, data, secondSignatures[i] as Buffer), `second #${i}`).toBe(true));
  });

  it("fails closed with HSM_UNAVAILABLE on both nodes while the server is down", async () => {
    await server.kill();

    // Each call fails fast with the typed error: never a signature, never a wait for the server to come back.
    for (const node of [first, second]) {
      const error = await failure(node.sign(KEY, messages("outage", 2)));
      expect(error.name).toBe("HsmUnavailableError");
      expect(error.code).toBe("HSM_UNAVAILABLE");
      expect(error.message).not.toContain(PIN);
      expect(await node.isHealthy()).toBe(false);
    }
    // Still down: the next attempts fail the same way rather than hang or succeed.
    const again = await failure(second.sign(KEY, messages("outage again", 1)));
    expect(again.code).toBe("HSM_UNAVAILABLE");
    expect(await first.isHealthy()).toBe(false);
  });

  it("recovers on both nodes, without re-creating the key stores, once the server is back on the same socket", async () => {
    await server.restart();

    for (const [name, node] of [
      ["first", first],
      ["second", second],
    ] as const) {
      const restartedAt = Date.now();
      let signatures: Buffer[] | undefined;
      let lastError: unknown;
      const data = messages(`${name} after recovery`, 4);
      while (signatures === undefined && Date.now() - restartedAt < RECOVERY_WITHIN_MS) {
        try {
          signatures = await node.sign(KEY, data);
        } catch (error) {
          lastError = error;
          expect((error as NodeCallError).code, String(error)).toBe("HSM_UNAVAILABLE");
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      expect(signatures, `${name} node still cannot sign ${RECOVERY_WITHIN_MS} ms after the server came back: ${String(lastError)}`).toBeDefined();
      data.forEach((message, i) => expect(verifiesWith(publicKey, message, (signatures as Buffer[])[i] as Buffer)).toBe(true));
      expect(await node.isHealthy()).toBe(true);
    }

    // The key made before the outage is still the one both nodes sign with.
    expect(await second.openKey(KEY)).toEqual(publicKey);
  }, 2 * RECOVERY_WITHIN_MS + 15_000);
});
