import { createHash, createPublicKey, verify, type KeyObject } from "node:crypto";

/**
 * Checkpoints of the audit log's Merkle tree (c2sp.org/tlog-checkpoint) carried as C2SP signed notes
 * (c2sp.org/signed-note) with signature type 0x02, ECDSA as github.com/transparency-dev/witness implements it.
 * Using the common formats rather than our own means witnesses, monitors and the transparency-dev tooling can
 * check Anchorage's log head without knowing anything about Anchorage.
 *
 * Parsing is strict: a verifier that accepts a second spelling of the same checkpoint invites two parties to
 * disagree about what was signed. Everything here is pure except that signing awaits the caller's signer.
 */

/** The text is not a well-formed checkpoint, signed note or verifier key, or cannot be turned into one. */
export class CheckpointFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CheckpointFormatError";
  }
}

/** A well-formed signed note that is not signed as required, or a signer whose signature does not verify. */
export class CheckpointSignatureError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CheckpointSignatureError";
  }
}

/** The fields of a checkpoint; `extensions` are the optional extra lines, without their newlines. */
export interface Checkpoint {
  readonly origin: string;
  readonly size: number;
  readonly rootHash: Buffer;
  readonly extensions: readonly string[];
}

export interface CheckpointInput {
  readonly origin: string;
  readonly size: number;
  readonly rootHash: Uint8Array;
  readonly extensions?: readonly string[];
}

/** A verifier key (vkey) of signature type 0x02, decoded and checked against its own key ID. */
export interface ParsedVerifierKey {
  readonly name: string;
  readonly keyId: number;
  /** DER SubjectPublicKeyInfo of the P-256 key. */
  readonly spki: Buffer;
}

/** Signs `data` with ECDSA P-256 / SHA-256 (the signer hashes) and returns the DER Ecdsa-Sig-Value. */
export type NoteSignFunction = (data: Uint8Array) => Promise<Buffer>;

/** signed-note "Signature types": 0x02 is ECDSA as implemented by transparency-dev/witness. */
const SIGNATURE_TYPE_ECDSA = 0x02;
const KEY_ID_BYTES = 4;
const ROOT_HASH_BYTES = 32;
/** signed-note requires accepting at least 16 signatures; refusing more bounds the work a hostile note can cause. */
const MAX_SIGNATURES = 16;
/** Em dash (U+2014) and a space open every signature line. */
const SIGNATURE_LINE_PREFIX = "\u2014 ";
/** Type 0x02 allows P-384 and P-521 too, but always with SHA-256; our signing port hashes P-384 with SHA-384. */
const REQUIRED_CURVE = "prime256v1";

/** Only this many characters of a refused value are echoed back: the value may be hostile or huge. */
const MAX_ECHO_CHARS = 100;

/** Quotes a refused value for an error message; JSON escaping keeps control characters out of log lines. */
function quote(value: string): string {
  const shown = value.length > MAX_ECHO_CHARS ? `${value.slice(0, MAX_ECHO_CHARS)}…` : value;
  return JSON.stringify(shown);
}

function hex8(keyId: number): string {
  return keyId.toString(16).padStart(8, "0");
}

/** signed-note: "ASCII control characters (those below U+0020) other than newline" are forbidden. */
const CONTROL_CHARACTER = /[\u0000-\u0009\u000B-\u001F]/;
/** A lone UTF-16 surrogate has no UTF-8 encoding: Node would sign U+FFFD instead and the note would lie. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const UNICODE_SPACE = /\p{White_Space}/u;
const TREE_SIZE = /^(?:0|[1-9][0-9]*)$/;
const STD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const KEY_ID_HEX = /^[0-9a-fA-F]{8}$/;

/** Throws unless `value` can be part of a signed note: valid UTF-8, no control characters but newline. */
function requireNoteCharacters(value: string, what: string): void {
  if (LONE_SURROGATE.test(value)) throw new CheckpointFormatError(`${what} is not valid UTF-8 (lone surrogate)`);
  const control = CONTROL_CHARACTER.exec(value);
  if (control !== null) {
    const code = control[0].charCodeAt(0).toString(16).padStart(4, "0");
    throw new CheckpointFormatError(`${what} contains the control character U+${code.toUpperCase()}`);
  }
}

/** Throws unless `text` is a note text: non-empty, well-formed, ending in a newline. */
function requireNoteText(text: string): void {
  if (typeof text !== "string" || text === "") throw new CheckpointFormatError("the note text is empty");
  requireNoteCharacters(text, "the note text");
  if (!text.endsWith("\n")) throw new CheckpointFormatError("the note text does not end in a newline");
}

/**
 * Key names and origins share one rule: non-empty, no Unicode spaces, no plus. A space would split a signature
 * line and a plus a verifier key in the wrong place; the spec forbids both in key names for that reason.
 */
function requireName(value: string, what: string): void {
  if (typeof value !== "string" || value === "") throw new CheckpointFormatError(`the ${what} is empty`);
  requireNoteCharacters(value, `the ${what}`);
  if (value.includes("\n")) throw new CheckpointFormatError(`the ${what} ${quote(value)} contains a newline`);
  if (UNICODE_SPACE.test(value)) throw new CheckpointFormatError(`the ${what} ${quote(value)} contains a space`);
  if (value.includes("+")) throw new CheckpointFormatError(`the ${what} ${quote(value)} contains a plus sign`);
}

/**
 * Standard base64 with padding, and nothing Node's lenient decoder would also take (URL-safe alphabet, missing
 * padding, stray characters, non-zero spare bits): re-encoding must give back the input exactly.
 */
function decodeBase64Strict(value: string): Buffer | undefined {
  if (!STD_BASE64.test(value)) return undefined;
  const bytes = Buffer.from(value, "base64");
  return bytes.toString("base64") === value ? bytes : undefined;
}

/** Parses a DER SubjectPublicKeyInfo and checks it is a P-256 key, the only curve we sign type 0x02 with. */
function requireP256Spki(spkiDer: Uint8Array, what: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(spkiDer), format: "der", type: "spki" });
  } catch {
    throw new CheckpointFormatError(`${what} is not a DER SubjectPublicKeyInfo`);
  }
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== REQUIRED_CURVE) {
    throw new CheckpointFormatError(`${what} is not an ECDSA P-256 public key`);
  }
  return key;
}

/**
 * The note text of a checkpoint (tlog-checkpoint "Note text"), refusing anything `parseCheckpointText` would
 * refuse, and also an origin with spaces or plus signs: the spec's SHOULD is a MUST for what we emit.
 */
export function checkpointText(checkpoint: CheckpointInput): string {
  const { origin, size, rootHash, extensions = [] } = checkpoint;
  requireName(origin, "origin");
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new CheckpointFormatError(`the tree size must be a non-negative safe integer, got ${String(size)}`);
  }
  if (!(rootHash instanceof Uint8Array) || rootHash.length !== ROOT_HASH_BYTES) {
    throw new CheckpointFormatError(`the root hash must be ${ROOT_HASH_BYTES} bytes`);
  }
  for (const extension of extensions) requireExtensionLine(extension);
  const lines = [origin, String(size), Buffer.from(rootHash).toString("base64"), ...extensions];
  return lines.map((line) => `${line}\n`).join("");
}

function requireExtensionLine(line: string): void {
  if (typeof line !== "string" || line === "") throw new CheckpointFormatError("an extension line is empty");
  if (line.includes("\n")) throw new CheckpointFormatError(`the extension line ${quote(line)} contains a newline`);
  requireNoteCharacters(line, `the extension line ${quote(line)}`);
}

/**
 * Parses checkpoint note text (not a signed note: open it with `openSignedNote` first). Refuses every deviation:
 * fewer than three lines, an empty line, a size with a sign or leading zeros or beyond 2^53, a root that is not
 * canonical standard base64 of exactly 32 bytes, a missing final newline, control characters, lone surrogates.
 */
export function parseCheckpointText(text: string): Checkpoint {
  requireNoteText(text);
  const lines = text.slice(0, -1).split("\n");
  const [origin, sizeLine, rootLine, ...extensions] = lines;
  if (origin === undefined || sizeLine === undefined || rootLine === undefined) {
    throw new CheckpointFormatError(`a checkpoint has at least 3 lines, this one has ${lines.length}`);
  }
  // Only non-empty: tlog-checkpoint says clients "MUST NOT assume" the space- and plus-free form we emit, and
  // deployed logs differ (Rekor's origin is "rekor.sigstore.dev - <tree ID>"). Callers compare it with the
  // origin they expect anyway.
  if (origin === "") throw new CheckpointFormatError("the origin is empty");
  return {
    origin,
    size: parseTreeSize(sizeLine),
    rootHash: parseRootHash(rootLine),
    extensions: extensions.map((line) => {
      requireExtensionLine(line);
      return line;
    }),
  };
}

function parseTreeSize(line: string): number {
  if (!TREE_SIZE.test(line)) {
    throw new CheckpointFormatError(`the tree size ${quote(line)} is not a decimal number without sign or leading zeros`);
  }
  const size = Number(line);
  if (!Number.isSafeInteger(size)) throw new CheckpointFormatError(`the tree size ${line} is too large`);
  return size;
}

function parseRootHash(line: string): Buffer {
  const rootHash = decodeBase64Strict(line);
  if (rootHash === undefined) throw new CheckpointFormatError(`the root hash ${quote(line)} is not standard base64`);
  if (rootHash.length !== ROOT_HASH_BYTES) {
    throw new CheckpointFormatError(`the root hash is ${rootHash.length} bytes, not ${ROOT_HASH_BYTES}`);
  }
  return rootHash;
}

/**
 * The key ID of a type 0x02 key. Unlike Ed25519 keys it does not cover the key name: signed-note says "the key
 * ID for these signatures is the truncated SHA-256 hash of the DER encoded public key in SPKI format".
 */
export function ecdsaKeyId(spkiDer: Uint8Array): number {
  return createHash("sha256").update(spkiDer).digest().readUInt32BE(0);
}

/** The verifier key string, `<name>+<8 hex digit key ID>+<base64(0x02 || DER SPKI)>`, to hand to verifiers. */
export function verifierKey(name: string, spkiDer: Uint8Array): string {
  requireName(name, "key name");
  requireP256Spki(spkiDer, "the public key");
  const keyBytes = Buffer.concat([Buffer.from([SIGNATURE_TYPE_ECDSA]), spkiDer]);
  return `${name}+${hex8(ecdsaKeyId(spkiDer))}+${keyBytes.toString("base64")}`;
}

/**
 * Parses a verifier key. The key ID is recomputed rather than trusted, so a vkey whose ID was edited (or copied
 * from another key) is refused here instead of silently matching no signature later.
 */
export function parseVerifierKey(vkey: string): ParsedVerifierKey {
  if (typeof vkey !== "string") throw new CheckpointFormatError("a verifier key must be a string");
  // The base64 part may itself contain '+', so only the first two separate fields.
  const first = vkey.indexOf("+");
  const second = first < 0 ? -1 : vkey.indexOf("+", first + 1);
  if (second < 0) throw new CheckpointFormatError("a verifier key has the form <name>+<key ID>+<key>");
  const name = vkey.slice(0, first);
  const idHex = vkey.slice(first + 1, second);
  requireName(name, "key name");
  if (!KEY_ID_HEX.test(idHex)) {
    throw new CheckpointFormatError(`the verifier key ID ${quote(idHex)} is not 8 hexadecimal digits`);
  }
  const keyBytes = decodeBase64Strict(vkey.slice(second + 1));
  if (keyBytes === undefined || keyBytes.length < 2) {
    throw new CheckpointFormatError("the verifier key's public key is not standard base64");
  }
  if (keyBytes[0] !== SIGNATURE_TYPE_ECDSA) {
    const type = (keyBytes[0] ?? 0).toString(16).padStart(2, "0");
    throw new CheckpointFormatError(`the verifier key has signature type 0x${type}, only 0x02 (ECDSA) is supported`);
  }
  const spki = keyBytes.subarray(1);
  requireP256Spki(spki, "the verifier key's public key");
  const keyId = Number.parseInt(idHex, 16);
  const expected = ecdsaKeyId(spki);
  if (keyId !== expected) {
    throw new CheckpointFormatError(`the verifier key ID ${idHex} does not match its public key (${hex8(expected)})`);
  }
  return { name, keyId, spki: Buffer.from(spki) };
}

/** One verification of a type 0x02 signature; a malformed signature or key is a failed verification. */
function verifyEcdsa(spki: Buffer, data: Buffer, signature: Uint8Array): boolean {
  try {
    return verify("sha256", data, { key: spki, format: "der", type: "spki", dsaEncoding: "der" }, signature);
  } catch {
    return false;
  }
}

/**
 * Signs note text as a one-signature note. The signature is checked against `spkiDer` before it is returned: a
 * signer holding another key, or one that hashes with something other than SHA-256, would otherwise publish a
 * checkpoint nobody can verify, and we would only learn it from the witnesses.
 */
export async function signNote(
  text: string,
  keyName: string,
  spkiDer: Uint8Array,
  sign: NoteSignFunction,
): Promise<string> {
  requireNoteText(text);
  requireName(keyName, "key name");
  requireP256Spki(spkiDer, "the signing public key");
  const data = Buffer.from(text, "utf8");
  const signature = await sign(data);
  const spki = Buffer.from(spkiDer);
  if (!(signature instanceof Uint8Array) || !verifyEcdsa(spki, data, signature)) {
    throw new CheckpointSignatureError(
      `the signature made for key ${quote(keyName)} does not verify with its public key (wrong key, or not SHA-256)`,
    );
  }
  const keyId = Buffer.alloc(KEY_ID_BYTES);
  keyId.writeUInt32BE(ecdsaKeyId(spki));
  const line = `${SIGNATURE_LINE_PREFIX}${keyName} ${Buffer.concat([keyId, signature]).toString("base64")}\n`;
  return `${text}\n${line}`;
}

interface SignatureLine {
  readonly name: string;
  readonly keyId: number;
  readonly signature: Buffer;
}

function parseSignatureLine(line: string, number: number): SignatureLine {
  if (!line.startsWith(SIGNATURE_LINE_PREFIX)) {
    throw new CheckpointFormatError(`signature line ${number} does not start with an em dash and a space`);
  }
  const rest = line.slice(SIGNATURE_LINE_PREFIX.length);
  const space = rest.indexOf(" ");
  if (space < 0) throw new CheckpointFormatError(`signature line ${number} has no space between key name and signature`);
  const name = rest.slice(0, space);
  requireName(name, `key name on signature line ${number}`);
  const bytes = decodeBase64Strict(rest.slice(space + 1));
  if (bytes === undefined || bytes.length <= KEY_ID_BYTES) {
    throw new CheckpointFormatError(`signature line ${number} does not hold base64 of a key ID and a signature`);
  }
  return { name, keyId: bytes.readUInt32BE(0), signature: bytes.subarray(KEY_ID_BYTES) };
}

/** Splits a signed note at its last blank line (signed-note "Format") and parses every signature line. */
function splitSignedNote(note: string): { text: string; signatures: SignatureLine[] } {
  if (typeof note !== "string") throw new CheckpointFormatError("a signed note must be a string");
  requireNoteCharacters(note, "the signed note");
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw new CheckpointFormatError("the note has no blank line between its text and its signatures");
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (block === "") throw new CheckpointFormatError("the note has no signature lines");
  if (!block.endsWith("\n")) throw new CheckpointFormatError("the last signature line does not end in a newline");
  const lines = block.slice(0, -1).split("\n");
  if (lines.length > MAX_SIGNATURES) {
    throw new CheckpointFormatError(`the note has ${lines.length} signature lines, at most ${MAX_SIGNATURES} are accepted`);
  }
  return { text, signatures: lines.map((line, i) => parseSignatureLine(line, i + 1)) };
}

/** The one known key a signature line names, by key name and key ID together; undefined when it is unknown. */
function knownKeyFor(signature: SignatureLine, verifierKeys: readonly ParsedVerifierKey[]): ParsedVerifierKey | undefined {
  const matches = verifierKeys.filter((key) => key.name === signature.name && key.keyId === signature.keyId);
  const [first, ...others] = matches;
  if (first !== undefined && others.some((other) => !other.spki.equals(first.spki))) {
    throw new CheckpointSignatureError(
      `two different verifier keys share the name ${quote(signature.name)} and key ID ${hex8(signature.keyId)}`,
    );
  }
  return first;
}

/**
 * Verifies a signed note against the keys we trust and returns its text, following signed-note "Signatures":
 * signatures by unknown keys (name and ID not both matching) are ignored, so witnesses can cosign and keys can
 * rotate; any signature by a known key that fails rejects the whole note; and at least one known key must have
 * signed. Verification is ECDSA P-256 over SHA-256 of the text, exactly as transparency-dev/witness does it.
 *
 * @throws CheckpointFormatError when the note is malformed, CheckpointSignatureError when it is not validly signed.
 */
export function openSignedNote(note: string, verifierKeys: readonly ParsedVerifierKey[]): { text: string } {
  const { text, signatures } = splitSignedNote(note);
  const data = Buffer.from(text, "utf8");
  let verified = 0;
  for (const signature of signatures) {
    const key = knownKeyFor(signature, verifierKeys);
    if (key === undefined) continue;
    if (!verifyEcdsa(key.spki, data, signature.signature)) {
      throw new CheckpointSignatureError(
        `the signature by ${quote(signature.name)} (key ID ${hex8(signature.keyId)}) does not verify`,
      );
    }
    verified += 1;
  }
  if (verified === 0) throw new CheckpointSignatureError("the note carries no signature by a known key");
  return { text };
}
