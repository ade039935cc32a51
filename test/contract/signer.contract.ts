/**
 * The contract every `KeyStore` implementation meets. Each implementation's test file calls
 * `signerContract` with a factory; the suite generates each key once (RSA generation is slow in SoftHSM)
 * and checks it with node:crypto, which we did not write.
 */
import { createPublicKey, randomBytes, verify, type KeyObject } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BadUserInputError } from "../../src/common/errors.js";
import { KeyNotFoundError, signatureAlgorithmFor, type KeySpec, type KeyStore, type Signer } from "../../src/signer/signer.js";

export interface KeyStoreUnderTest {
  store: KeyStore;
  cleanup: () => Promise<void>;
}

interface Case {
  name: string;
  spec: KeySpec;
  keyType: "ec" | "rsa";
  namedCurve?: string;
  modulusLength?: number;
  hash: "sha256" | "sha384";
  otherHash: "sha256" | "sha384";
}

const CASES: Case[] = [
  { name: "EC P-256", spec: { type: "ec", curve: "P-256" }, keyType: "ec", namedCurve: "prime256v1", hash: "sha256", otherHash: "sha384" },
  { name: "EC P-384", spec: { type: "ec", curve: "P-384" }, keyType: "ec", namedCurve: "secp384r1", hash: "sha384", otherHash: "sha256" },
  { name: "RSA 2048", spec: { type: "rsa", modulusBits: 2048 }, keyType: "rsa", modulusLength: 2048, hash: "sha256", otherHash: "sha384" },
];

const CONCURRENT_SIGNATURES = 200;

export function signerContract(name: string, makeStore: () => Promise<KeyStoreUnderTest>): void {
  describe(`KeyStore contract: ${name}`, () => {
    let underTest: KeyStoreUnderTest | undefined;
    const store = (): KeyStore => {
      if (underTest === undefined) throw new Error("key store not created");
      return underTest.store;
    };
    // Unique per run, so the suite also works against a token that keeps objects between runs.
    const run = randomBytes(4).toString("hex");

    beforeAll(async () => {
      underTest = await makeStore();
    });
    afterAll(async () => {
      await underTest?.cleanup();
    });

    for (const c of CASES) {
      describe(c.name, () => {
        const label = `contract-${c.spec.type}-${c.name.replace(/\W+/g, "")}-${run}`;
        let signer: Signer;
        let publicKey: KeyObject;

        beforeAll(async () => {
          signer = await store().generateKey(label, c.spec);
          publicKey = createPublicKey({ key: signer.publicKeySpki, format: "der", type: "spki" });
        });

        it("generates a key whose SPKI has the requested type and size", () => {
          expect(signer.keyLabel).toBe(label);
          expect(signer.keySpec).toEqual(c.spec);
          expect(publicKey.asymmetricKeyType).toBe(c.keyType);
          if (c.namedCurve !== undefined) expect(publicKey.asymmetricKeyDetails?.namedCurve).toBe(c.namedCurve);
          if (c.modulusLength !== undefined) {
            expect(publicKey.asymmetricKeyDetails?.modulusLength).toBe(c.modulusLength);
            expect(publicKey.asymmetricKeyDetails?.publicExponent).toBe(65537n);
          }
          // The SPKI is canonical DER: re-encoding it gives the same bytes.
          expect(publicKey.export({ type: "spki", format: "der" }).equals(signer.publicKeySpki)).toBe(true);
        });

        it("names the signature algorithm of its key spec", () => {
          expect(signer.signatureAlgorithm).toBe(signatureAlgorithmFor(c.spec));
        });

        it(`signs with ${c.hash}, verifiable by node:crypto`, async () => {
          const data = Buffer.from(`to be signed by ${label}`);
          const signature = await signer.sign(data);
          expect(verify(c.hash, data, { key: publicKey, dsaEncoding: "der" }, signature)).toBe(true);
          expect(verify(c.otherHash, data, { key: publicKey, dsaEncoding: "der" }, signature)).toBe(false);
          expect(verify(c.hash, Buffer.from("something else"), { key: publicKey, dsaEncoding: "der" }, signature)).toBe(false);
          if (c.keyType === "ec") expectStrictEcdsaDer(signature);
          else expect(signature.length).toBe(c.modulusLength! / 8);
        });

        it("signs a Uint8Array view into a larger buffer", async () => {
          const backing = Buffer.from("xxxxpayloadxxxx");
          const view = new Uint8Array(backing.buffer, backing.byteOffset + 4, 7);
          const signature = await signer.sign(view);
          expect(verify(c.hash, Buffer.from("payload"), { key: publicKey, dsaEncoding: "der" }, signature)).toBe(true);
        });

        it(`makes ${CONCURRENT_SIGNATURES} concurrent signatures that all verify`, async () => {
          const messages = Array.from({ length: CONCURRENT_SIGNATURES }, (_, i) => Buffer.from(`message ${i} ${run}`));
          const signatures = await Promise.all(messages.map((message) => signer.sign(message)));
          signatures.forEach((signature, i) => {
            expect(verify(c.hash, messages[i]!, { key: publicKey, dsaEncoding: "der" }, signature)).toBe(true);
            if (c.keyType === "ec") expectStrictEcdsaDer(signature);
          });
        });

        it("opens the same key again by label", async () => {
          const reopened = await store().openKey(label);
          expect(reopened.keyLabel).toBe(label);
          expect(reopened.keySpec).toEqual(c.spec);
          expect(reopened.signatureAlgorithm).toBe(signatureAlgorithmFor(c.spec));
          expect(reopened.publicKeySpki.equals(signer.publicKeySpki)).toBe(true);
          const data = Buffer.from("signed through the reopened signer");
          expect(verify(c.hash, data, { key: publicKey, dsaEncoding: "der" }, await reopened.sign(data))).toBe(true);
        });

        it("refuses to generate a second key with the same label, and keeps the first", async () => {
          await expect(store().generateKey(label, c.spec)).rejects.toBeInstanceOf(BadUserInputError);
          await expect(store().generateKey(label, { type: "ec", curve: "P-256" })).rejects.toBeInstanceOf(BadUserInputError);
          const reopened = await store().openKey(label);
          expect(reopened.publicKeySpki.equals(signer.publicKeySpki)).toBe(true);
        });
      });
    }

    it("refuses two concurrent generations of one label", async () => {
      const label = `contract-race-${run}`;
      const results = await Promise.allSettled([
        store().generateKey(label, { type: "ec", curve: "P-256" }),
        store().generateKey(label, { type: "ec", curve: "P-256" }),
      ]);
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      const rejected = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      expect(rejected?.reason).toBeInstanceOf(BadUserInputError);
    });

    it("throws KeyNotFoundError for an unknown label", async () => {
      const error = await store().openKey(`no-such-key-${run}`).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(KeyNotFoundError);
      expect((error as KeyNotFoundError).label).toBe(`no-such-key-${run}`);
    });

    it("reports itself healthy", async () => {
      expect(await store().isHealthy()).toBe(true);
    });
  });
}

/**
 * Checks DER Ecdsa-Sig-Value strictly (RFC 3279, X.690): one SEQUENCE of two INTEGERs, short-form lengths
 * (all our curves fit), each INTEGER minimal and positive.
 */
function expectStrictEcdsaDer(signature: Buffer): void {
  expect(signature[0]).toBe(0x30);
  expect(signature[1]).toBe(signature.length - 2);
  let offset = 2;
  for (let i = 0; i < 2; i++) {
    expect(signature[offset]).toBe(0x02);
    const length = signature[offset + 1]!;
    expect(length).toBeGreaterThan(0);
    expect(length).toBeLessThan(0x80);
    const value = signature.subarray(offset + 2, offset + 2 + length);
    expect(value.length).toBe(length);
    expect(value[0]! & 0x80).toBe(0); // positive
    if (value.length > 1) expect(value[0] === 0 && (value[1]! & 0x80) === 0).toBe(false); // minimal
    offset += 2 + length;
  }
  expect(offset).toBe(signature.length);
}
