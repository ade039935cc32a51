import { createHash, generateKeyPairSync, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from "node:crypto";

import { describe, expect, it } from "vitest";

import {
  CheckpointFormatError,
  CheckpointSignatureError,
  type ParsedVerifierKey,
  checkpointText,
  ecdsaKeyId,
  openSignedNote,
  parseCheckpointText,
  parseVerifierKey,
  signNote,
  verifierKey,
} from "../../src/audit/checkpoint.js";

interface TestKey {
  readonly name: string;
  readonly spki: Buffer;
  readonly privateKey: KeyObject;
  readonly sign: (data: Uint8Array) => Promise<Buffer>;
  readonly verifier: ParsedVerifierKey;
}

function newKey(name: string): TestKey {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const spki = publicKey.export({ format: "der", type: "spki" });
  const sign = async (data: Uint8Array) => cryptoSign("sha256", data, { key: privateKey, dsaEncoding: "der" });
  return { name, spki, privateKey, sign, verifier: parseVerifierKey(verifierKey(name, spki)) };
}

const LOG = newKey("anchorage.example/audit");
const WITNESS = newKey("witness.example/w1");
const STRANGER = newKey("stranger.example/log");

const ROOT = createHash("sha256").update("a root").digest();
const TEXT = checkpointText({ origin: "anchorage.example/audit", size: 1234, rootHash: ROOT });

/** SHA-256(DER SPKI)[:4] as a big-endian uint32, computed here rather than by the module. */
function independentKeyId(spki: Buffer): number {
  return createHash("sha256").update(spki).digest().readUInt32BE(0);
}

/** A signature line for `text` by `key`, made without the module, optionally under another name or key ID. */
function signatureLine(text: string, key: TestKey, options: { name?: string; keyId?: number } = {}): string {
  const id = Buffer.alloc(4);
  id.writeUInt32BE(options.keyId ?? independentKeyId(key.spki));
  const signature = cryptoSign("sha256", Buffer.from(text), { key: key.privateKey, dsaEncoding: "der" });
  return `\u2014 ${options.name ?? key.name} ${Buffer.concat([id, signature]).toString("base64")}\n`;
}

/** Asserts that `fn` throws an error of class `type` whose message contains `fragment`. */
function expectThrow(fn: () => unknown, type: new (message: string) => Error, fragment: string | RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(type);
  if (typeof fragment === "string") expect((thrown as Error).message).toContain(fragment);
  else expect((thrown as Error).message).toMatch(fragment);
}

describe("checkpointText / parseCheckpointText", () => {
  it("writes the three lines of tlog-checkpoint, then the extensions", () => {
    expect(TEXT).toBe(`anchorage.example/audit\n1234\n${ROOT.toString("base64")}\n`);
    const withExtensions = checkpointText({
      origin: "anchorage.example/audit",
      size: 0,
      rootHash: ROOT,
      extensions: ["Timestamp: 1700000000", "x"],
    });
    expect(withExtensions).toBe(`anchorage.example/audit\n0\n${ROOT.toString("base64")}\nTimestamp: 1700000000\nx\n`);
  });

  it("round-trips", () => {
    for (const checkpoint of [
      { origin: "anchorage.example/audit", size: 0, rootHash: ROOT, extensions: [] },
      { origin: "例え.jp/log", size: Number.MAX_SAFE_INTEGER, rootHash: Buffer.alloc(32, 0xff), extensions: ["é ü"] },
      { origin: "o", size: 1, rootHash: Buffer.alloc(32), extensions: ["a", "b c", "—"] },
    ]) {
      expect(parseCheckpointText(checkpointText(checkpoint))).toEqual(checkpoint);
    }
  });

  it("accepts an origin with spaces when parsing, as the spec requires of clients (Rekor's origin has them)", () => {
    const text = "rekor.sigstore.dev - 1193050959916656506\n94345560\nmIq7oIDCYIfjP2wGrF+r+CTAAjyppyooQjGZtdh6XQc=\n";
    expect(parseCheckpointText(text).origin).toBe("rekor.sigstore.dev - 1193050959916656506");
  });

  const b64 = ROOT.toString("base64");
  /** The same 32 bytes to a lenient decoder, but with one of the two unused low bits of the last digit set. */
  function withSpareBitSet(encoded: string): string {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const last = alphabet.indexOf(encoded[42] as string);
    const changed = `${encoded.slice(0, 42)}${alphabet[last | 1]}=`;
    expect(Buffer.from(changed, "base64").equals(ROOT)).toBe(true);
    return changed;
  }
  it.each([
    ["an empty text", "", "empty"],
    ["a missing final newline", `o\n12\n${b64}`, "does not end in a newline"],
    ["fewer than three lines", `o\n12\n`, "at least 3 lines"],
    ["an empty origin", `\n12\n${b64}\n`, "origin is empty"],
    ["a size with a leading zero", `o\n012\n${b64}\n`, "leading zeros"],
    ["a size of 00", `o\n00\n${b64}\n`, "leading zeros"],
    ["a size with a plus sign", `o\n+12\n${b64}\n`, "without sign"],
    ["a negative size", `o\n-1\n${b64}\n`, "without sign"],
    ["a size with a space", `o\n 12\n${b64}\n`, "is not a decimal number"],
    ["a size in exponent form", `o\n1e3\n${b64}\n`, "is not a decimal number"],
    ["a hexadecimal size", `o\n0x10\n${b64}\n`, "is not a decimal number"],
    ["an empty size", `o\n\n${b64}\n`, "is not a decimal number"],
    ["a size beyond 2^53", `o\n9007199254740992\n${b64}\n`, "too large"],
    ["a non-base64 root", `o\n12\nnot*base64!\n`, "not standard base64"],
    ["a URL-safe base64 root", `o\n12\n${ROOT.toString("base64url")}\n`, "not standard base64"],
    ["a root without padding", `o\n12\n${b64.replace(/=+$/, "")}\n`, "not standard base64"],
    ["a root with non-zero spare bits", `o\n12\n${withSpareBitSet(b64)}\n`, "not standard base64"],
    ["a 31-byte root", `o\n12\n${ROOT.subarray(0, 31).toString("base64")}\n`, "31 bytes, not 32"],
    ["a 33-byte root", `o\n12\n${Buffer.concat([ROOT, Buffer.of(0)]).toString("base64")}\n`, "33 bytes, not 32"],
    ["an empty extension line", `o\n12\n${b64}\n\n`, "extension line is empty"],
    ["an empty line between extensions", `o\n12\n${b64}\na\n\nb\n`, "extension line is empty"],
    ["a carriage return", `o\r\n12\n${b64}\n`, "control character U+000D"],
    ["a tab", `o\n12\n${b64}\next\tension\n`, "control character U+0009"],
    ["a NUL", `o\u0000\n12\n${b64}\n`, "control character U+0000"],
    ["an escape", `o\n12\n${b64}\n\u001b[31m\n`, "control character U+001B"],
    ["a lone surrogate", `o\ud800\n12\n${b64}\n`, "not valid UTF-8"],
  ])("refuses %s", (_what, text, fragment) => {
    expectThrow(() => parseCheckpointText(text), CheckpointFormatError, fragment);
  });

  it.each([
    ["an empty origin", { origin: "", size: 1, rootHash: ROOT }, "origin is empty"],
    ["an origin with a space", { origin: "a b", size: 1, rootHash: ROOT }, "contains a space"],
    ["an origin with a no-break space", { origin: "a\u00a0b", size: 1, rootHash: ROOT }, "contains a space"],
    ["an origin with an em space", { origin: "a\u2003b", size: 1, rootHash: ROOT }, "contains a space"],
    ["an origin with a plus", { origin: "a+b", size: 1, rootHash: ROOT }, "plus"],
    ["an origin with a newline", { origin: "a\nb", size: 1, rootHash: ROOT }, "newline"],
    ["a negative size", { origin: "o", size: -1, rootHash: ROOT }, "non-negative safe integer"],
    ["a fractional size", { origin: "o", size: 1.5, rootHash: ROOT }, "non-negative safe integer"],
    ["an unsafe size", { origin: "o", size: 2 ** 53, rootHash: ROOT }, "non-negative safe integer"],
    ["a 31-byte root", { origin: "o", size: 1, rootHash: ROOT.subarray(1) }, "32 bytes"],
    ["an empty extension", { origin: "o", size: 1, rootHash: ROOT, extensions: [""] }, "extension line is empty"],
    ["a two-line extension", { origin: "o", size: 1, rootHash: ROOT, extensions: ["a\nb"] }, "contains a newline"],
    ["a control character", { origin: "o", size: 1, rootHash: ROOT, extensions: ["a\u0007"] }, "U+0007"],
  ])("will not write %s", (_what, checkpoint, fragment) => {
    expectThrow(() => checkpointText(checkpoint), CheckpointFormatError, fragment);
  });
});

describe("verifier keys", () => {
  it("compute the key ID as SHA-256(DER SPKI)[:4], big-endian", () => {
    for (const key of [LOG, WITNESS, STRANGER]) {
      expect(ecdsaKeyId(key.spki)).toBe(independentKeyId(key.spki));
    }
  });

  it("are <name>+<8 hex digit key ID>+<base64(0x02 || DER SPKI)>", () => {
    const id = independentKeyId(LOG.spki).toString(16).padStart(8, "0");
    expect(id).toMatch(/^[0-9a-f]{8}$/);
    expect(verifierKey(LOG.name, LOG.spki)).toBe(
      `${LOG.name}+${id}+${Buffer.concat([Buffer.of(0x02), LOG.spki]).toString("base64")}`,
    );
  });

  it("round-trip", () => {
    const parsed = parseVerifierKey(verifierKey(LOG.name, LOG.spki));
    expect(parsed).toEqual({ name: LOG.name, keyId: independentKeyId(LOG.spki), spki: LOG.spki });
  });

  it("match transparency-dev's vector for the Rekor key (an independent check of the key ID formula)", () => {
    const vkey =
      "rekor.sigstore.dev+c0d23d6a+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNhtmPtrWm3U1eQXBogSMdGvXwBcK5AW5i0hrZLOC96l+smGNM7nwZ4QvFK/4sueRoVj//QP22Ni4Qt9DPfkWLc=";
    const parsed = parseVerifierKey(vkey);
    expect(parsed.keyId).toBe(0xc0d23d6a);
    expect(verifierKey(parsed.name, parsed.spki)).toBe(vkey);
  });

  const good = verifierKey(LOG.name, LOG.spki);
  const [goodName, goodId] = good.split("+") as [string, string];
  const goodKey = good.slice(goodName.length + goodId.length + 2);
  const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({ format: "der", type: "spki" });
  const ed25519 = generateKeyPairSync("ed25519").publicKey.export({ format: "der", type: "spki" });
  const otherId = ((Number.parseInt(goodId, 16) + 1) >>> 0).toString(16).padStart(8, "0");
  it.each([
    ["a key with two parts", `${goodName}+${goodId}`, "<name>+<key ID>+<key>"],
    ["an empty name", `+${goodId}+${goodKey}`, "key name is empty"],
    ["a name with a space", `a b+${goodId}+${goodKey}`, "contains a space"],
    ["a 7-digit key ID", `${goodName}+${goodId.slice(1)}+${goodKey}`, "not 8 hexadecimal digits"],
    ["a key ID that does not match", `${goodName}+${otherId}+${goodKey}`, "does not match its public key"],
    ["bad base64", `${goodName}+${goodId}+${goodKey.slice(1)}`, "not standard base64"],
    [
      "signature type 0x01",
      `${goodName}+${goodId}+${Buffer.concat([Buffer.of(0x01), LOG.spki]).toString("base64")}`,
      "signature type 0x01",
    ],
    [
      "a P-384 key",
      `${goodName}+${independentKeyId(p384).toString(16).padStart(8, "0")}+${Buffer.concat([Buffer.of(2), p384]).toString("base64")}`,
      "not an ECDSA P-256 public key",
    ],
    [
      "an Ed25519 key",
      `${goodName}+${independentKeyId(ed25519).toString(16).padStart(8, "0")}+${Buffer.concat([Buffer.of(2), ed25519]).toString("base64")}`,
      "not an ECDSA P-256 public key",
    ],
    [
      "bytes that are no SPKI",
      `${goodName}+${goodId}+${Buffer.of(2, 1, 2, 3).toString("base64")}`,
      "not a DER SubjectPublicKeyInfo",
    ],
  ])("refuse %s", (_what, vkey, fragment) => {
    expectThrow(() => parseVerifierKey(vkey), CheckpointFormatError, fragment);
  });

  it("are not made for names with spaces or plus signs, or for keys other than P-256", () => {
    expectThrow(() => verifierKey("a+b", LOG.spki), CheckpointFormatError, "plus");
    expectThrow(() => verifierKey("a b", LOG.spki), CheckpointFormatError, "space");
    expectThrow(() => verifierKey("", LOG.spki), CheckpointFormatError, "empty");
    expectThrow(() => verifierKey("k", p384), CheckpointFormatError, "P-256");
  });
});

describe("signNote / openSignedNote", () => {
  it("round-trip: text, blank line, one signature line of key ID and DER ECDSA signature", async () => {
    const note = await signNote(TEXT, LOG.name, LOG.spki, LOG.sign);
    expect(note.startsWith(`${TEXT}\n\u2014 ${LOG.name} `)).toBe(true);
    expect(note.endsWith("\n")).toBe(true);
    const signature = Buffer.from(note.slice(TEXT.length + 1).split(" ")[2] as string, "base64");
    expect(signature.readUInt32BE(0)).toBe(independentKeyId(LOG.spki));
    const verified = cryptoVerify(
      "sha256",
      Buffer.from(TEXT),
      { key: LOG.spki, format: "der", type: "spki", dsaEncoding: "der" },
      signature.subarray(4),
    );
    expect(verified).toBe(true);
    expect(openSignedNote(note, [LOG.verifier])).toEqual({ text: TEXT });
    expect(parseCheckpointText(openSignedNote(note, [LOG.verifier]).text)).toEqual({
      origin: "anchorage.example/audit",
      size: 1234,
      rootHash: ROOT,
      extensions: [],
    });
  });

  it("open transparency-dev's Rekor vector and a real Rekor checkpoint", () => {
    const rekor = parseVerifierKey(
      "rekor.sigstore.dev+c0d23d6a+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNhtmPtrWm3U1eQXBogSMdGvXwBcK5AW5i0hrZLOC96l+smGNM7nwZ4QvFK/4sueRoVj//QP22Ni4Qt9DPfkWLc=",
    );
    const vector =
      "Rekor\n798034\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\n\n\u2014 rekor.sigstore.dev wNI9ajBEAiARInWIWyCdyG27CO6LPnPekyw20qO0YJfoaPaowGp/XgIgc+qEHS3+GKVClgqq20uDLet7MCoTURUCRdxwWBHHufk=\n";
    expect(parseCheckpointText(openSignedNote(vector, [rekor]).text).size).toBe(798034);
    const real =
      "rekor.sigstore.dev - 1193050959916656506\n94345560\nmIq7oIDCYIfjP2wGrF+r+CTAAjyppyooQjGZtdh6XQc=\n\n\u2014 rekor.sigstore.dev wNI9ajBEAiBLqZTpbx5Ckvlvz/YXZ1aLk3q7TMBRtOa4wyYIPq/vRwIgTSo8mkOPZKfokHMePRNQ0XMAZG6Oc0KP0gKfqvzOLtA=\n";
    expect(parseCheckpointText(openSignedNote(real, [rekor]).text).size).toBe(94345560);
    expectThrow(() => openSignedNote(real.replace("94345560", "94345561"), [rekor]), CheckpointSignatureError, "does not verify");
  });

  it("sign and open a text with extensions, non-ASCII and inner blank lines (split at the last blank line)", async () => {
    const withExtensions = checkpointText({ origin: "例え.jp/log", size: 7, rootHash: ROOT, extensions: ["ext: ü"] });
    const note = await signNote(withExtensions, LOG.name, LOG.spki, LOG.sign);
    expect(openSignedNote(note, [LOG.verifier]).text).toBe(withExtensions);
    const freeText = "Ognuno sta solo\n\ned è subito sera.\n";
    expect(openSignedNote(await signNote(freeText, LOG.name, LOG.spki, LOG.sign), [LOG.verifier]).text).toBe(freeText);
  });

  describe("tampering", () => {
    const checkpoint = { origin: "anchorage.example/audit", size: 1234, rootHash: ROOT, extensions: ["Timestamp: 1"] };
    const text = checkpointText(checkpoint);
    const otherRoot = Buffer.from(ROOT);
    otherRoot[31] = (otherRoot[31] as number) ^ 1;
    it.each([
      ["the origin", (t: string) => t.replace("anchorage.example/audit", "anchorage.example/audiT")],
      ["the size", (t: string) => t.replace("\n1234\n", "\n1235\n")],
      ["the size, to the same value spelt differently", (t: string) => t.replace("\n1234\n", "\n01234\n")],
      ["the root", (t: string) => t.replace(ROOT.toString("base64"), otherRoot.toString("base64"))],
      ["the extension", (t: string) => t.replace("Timestamp: 1\n", "Timestamp: 2\n")],
      ["by dropping the extension", (t: string) => t.replace("Timestamp: 1\n", "")],
      ["by adding an extension", (t: string) => `${t}more\n`],
    ])("of %s is detected", async (_what, tamper) => {
      const note = await signNote(text, LOG.name, LOG.spki, LOG.sign);
      const tampered = tamper(text) + note.slice(text.length);
      expect(tampered).not.toBe(note);
      expectThrow(() => openSignedNote(tampered, [LOG.verifier]), CheckpointSignatureError, "does not verify");
    });

    it("of any byte of the signature is detected", async () => {
      const note = await signNote(text, LOG.name, LOG.spki, LOG.sign);
      const prefix = `${text}\n\u2014 ${LOG.name} `;
      const signature = Buffer.from(note.slice(prefix.length, -1), "base64");
      for (let i = 0; i < signature.length; i++) {
        const flipped = Buffer.from(signature);
        flipped[i] = (flipped[i] as number) ^ (1 << i % 8);
        const tampered = `${prefix}${flipped.toString("base64")}\n`;
        // A changed key ID makes the signature an unknown key's; a changed signature fails to verify.
        expectThrow(
          () => openSignedNote(tampered, [LOG.verifier]),
          CheckpointSignatureError,
          i < 4 ? "no signature by a known key" : "does not verify",
        );
      }
    });
  });

  it("rejects a note signed only by unknown keys, including a known name with another key ID and vice versa", async () => {
    const byStranger = await signNote(TEXT, STRANGER.name, STRANGER.spki, STRANGER.sign);
    expectThrow(() => openSignedNote(byStranger, [LOG.verifier]), CheckpointSignatureError, "no signature by a known key");
    const impostors =
      `${TEXT}\n` +
      signatureLine(TEXT, STRANGER, { name: LOG.name }) +
      signatureLine(TEXT, STRANGER, { keyId: LOG.verifier.keyId });
    expectThrow(() => openSignedNote(impostors, [LOG.verifier]), CheckpointSignatureError, "no signature by a known key");
    expectThrow(() => openSignedNote(byStranger, []), CheckpointSignatureError, "no signature by a known key");
  });

  it("accepts a known key's signature next to unknown ones, in any order", async () => {
    const note = await signNote(TEXT, LOG.name, LOG.spki, LOG.sign);
    const cosigned = note + signatureLine(TEXT, WITNESS);
    expect(openSignedNote(cosigned, [LOG.verifier]).text).toBe(TEXT);
    const witnessFirst = `${TEXT}\n${signatureLine(TEXT, WITNESS)}${signatureLine(TEXT, LOG)}`;
    expect(openSignedNote(witnessFirst, [LOG.verifier]).text).toBe(TEXT);
    // An unknown key's line is not even checked: garbage under an unknown key ID is ignored.
    const garbage = `${note}\u2014 ${STRANGER.name} ${Buffer.alloc(70, 7).toString("base64")}\n`;
    expect(openSignedNote(garbage, [LOG.verifier]).text).toBe(TEXT);
    expect(openSignedNote(cosigned, [LOG.verifier, WITNESS.verifier]).text).toBe(TEXT);
  });

  it("rejects the note when any known key's signature fails, even if another known key's verifies", async () => {
    const note = await signNote(TEXT, LOG.name, LOG.spki, LOG.sign);
    const badWitness = note + signatureLine("some other text\n", WITNESS);
    expect(openSignedNote(badWitness, [LOG.verifier]).text).toBe(TEXT);
    expectThrow(
      () => openSignedNote(badWitness, [LOG.verifier, WITNESS.verifier]),
      CheckpointSignatureError,
      `"${WITNESS.name}"`,
    );
  });

  it("accepts 16 signature lines and refuses 17", async () => {
    const note = await signNote(TEXT, LOG.name, LOG.spki, LOG.sign);
    const extra = (count: number) =>
      Array.from({ length: count }, (_, i) => signatureLine(TEXT, WITNESS, { name: `witness.example/w${i}` })).join("");
    expect(openSignedNote(note + extra(15), [LOG.verifier]).text).toBe(TEXT);
    expectThrow(() => openSignedNote(note + extra(16), [LOG.verifier]), CheckpointFormatError, "17 signature lines");
  });

  it("takes only the lines after the last blank line as signatures", () => {
    // The first signature line becomes part of the text, so the signature no longer covers the text.
    const note = `${TEXT}\n${signatureLine(TEXT, LOG)}\n${signatureLine(TEXT, LOG)}`;
    expectThrow(() => openSignedNote(note, [LOG.verifier]), CheckpointSignatureError, "does not verify");
  });

  it("refuses a note whose text fails signed-note's character rules, even when correctly signed", () => {
    const text = "bell\u0007\n";
    const note = `${text}\n${signatureLine(text, LOG)}`;
    expectThrow(() => openSignedNote(note, [LOG.verifier]), CheckpointFormatError, "control character U+0007");
  });

  const line = signatureLine(TEXT, LOG);
  const lineBody = line.slice(2 + LOG.name.length + 1, -1);
  it.each([
    ["no blank line before the signatures", `${TEXT}${line}`, "no blank line"],
    ["no signature lines", `${TEXT}\n`, "no signature lines"],
    ["an empty signature block", `${TEXT}\n\n`, "no signature lines"],
    ["a last signature line without newline", `${TEXT}\n${line.slice(0, -1)}`, "does not end in a newline"],
    ["a hyphen instead of the em dash", `${TEXT}\n${line.replace("\u2014", "-")}`, "em dash"],
    ["two hyphens instead of the em dash", `${TEXT}\n${line.replace("\u2014", "--")}`, "em dash"],
    ["an en dash instead of the em dash", `${TEXT}\n${line.replace("\u2014", "\u2013")}`, "em dash"],
    ["no space before the signature", `${TEXT}\n\u2014 ${LOG.name}${lineBody}\n`, "no space"],
    ["an empty key name", `${TEXT}\n\u2014  ${lineBody}\n`, "key name on signature line 1 is empty"],
    ["a key name with a plus", `${TEXT}\n\u2014 a+b ${lineBody}\n`, "plus"],
    ["a signature that is not base64", `${TEXT}\n\u2014 ${LOG.name} ${lineBody.slice(1)}\n`, "does not hold base64"],
    ["a signature with a trailing space", `${TEXT}\n\u2014 ${LOG.name} ${lineBody} \n`, "does not hold base64"],
    ["a signature of only a key ID", `${TEXT}\n\u2014 ${LOG.name} ${Buffer.alloc(4).toString("base64")}\n`, "key ID"],
    ["a carriage return", `${TEXT}\n${line.slice(0, -1)}\r\n`, "control character U+000D"],
    ["a lone surrogate", `${TEXT}\n${line}`.replace("1234", "12\udc0034"), "not valid UTF-8"],
  ])("refuses %s", (_what, note, fragment) => {
    expectThrow(() => openSignedNote(note, [LOG.verifier]), CheckpointFormatError, fragment);
  });

  it("refuses to sign malformed text or names, and a signer that does not match the key", async () => {
    await expect(signNote("no newline", LOG.name, LOG.spki, LOG.sign)).rejects.toThrow(CheckpointFormatError);
    await expect(signNote("", LOG.name, LOG.spki, LOG.sign)).rejects.toThrow(CheckpointFormatError);
    await expect(signNote("a\u0000\n", LOG.name, LOG.spki, LOG.sign)).rejects.toThrow(/U\+0000/);
    await expect(signNote(TEXT, "a b", LOG.spki, LOG.sign)).rejects.toThrow(/space/);
    await expect(signNote(TEXT, "a+b", LOG.spki, LOG.sign)).rejects.toThrow(/plus/);
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({ format: "der", type: "spki" });
    await expect(signNote(TEXT, LOG.name, p384, LOG.sign)).rejects.toThrow(/P-256/);
    // The HSM holds another key than the one we announce.
    await expect(signNote(TEXT, LOG.name, LOG.spki, WITNESS.sign)).rejects.toThrow(CheckpointSignatureError);
    // A signer that hashes with SHA-384 (as our P-384 X.509 signer would) produces no type 0x02 signature.
    const sha384 = async (data: Uint8Array) => cryptoSign("sha384", data, { key: LOG.privateKey, dsaEncoding: "der" });
    await expect(signNote(TEXT, LOG.name, LOG.spki, sha384)).rejects.toThrow(/does not verify/);
    // A raw (IEEE P1363) signature instead of DER.
    const p1363 = async (data: Uint8Array) =>
      cryptoSign("sha256", data, { key: LOG.privateKey, dsaEncoding: "ieee-p1363" });
    await expect(signNote(TEXT, LOG.name, LOG.spki, p1363)).rejects.toThrow(CheckpointSignatureError);
  });
});
