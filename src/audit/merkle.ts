import { createHash } from "node:crypto";

/**
 * The Merkle tree of the audit log, exactly as RFC 9162 (Certificate Transparency 2.0) §2.1 defines it, so that
 * any CT / transparency-dev tool can check our roots and proofs and we can check theirs. Everything here is pure
 * and synchronous; persistence is behind the `SubtreeHashes` port.
 *
 * Tree sizes and indices are plain numbers (safe integers): the log will never hold 2^53 entries, and numbers keep
 * the store and the JSON API simple. The verifiers do their bit arithmetic on bigints, because JavaScript's bitwise
 * operators truncate to 32 bits and a log may well pass 2^31 entries.
 */

const HASH_BYTES = 32;
/** RFC 9162 §2.1.1 domain separation: leaf and interior hashes can never be confused for one another. */
const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

/** SHA-256 over the concatenation of `parts`. */
function sha256(...parts: readonly Uint8Array[]): Buffer {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part);
  return hash.digest();
}

/** MTH({}) of RFC 9162 §2.1.1. A fresh buffer per call, so no caller can corrupt the one another holds. */
function emptyRoot(): Buffer {
  return sha256();
}

/** The root hash of the empty tree, SHA-256 of the empty string. Do not mutate it; `treeRoot` returns its own copy. */
export const EMPTY_ROOT: Buffer = emptyRoot();

/** The hash of one log entry as a leaf: SHA-256(0x00 || entry). */
export function leafHash(entry: Uint8Array): Buffer {
  return sha256(LEAF_PREFIX, entry);
}

/** The hash of an interior node: SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return sha256(NODE_PREFIX, left, right);
}

/** Throws unless `value` is a tree size or index we can compute with exactly. */
function requireCount(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${what} must be a non-negative safe integer, got ${String(value)}`);
  }
}

/**
 * The k of RFC 9162 §2.1.1: the largest power of two strictly smaller than `n` (n ≥ 2). This split, not the
 * midpoint, is what makes our roots interoperable; a midpoint split builds a different, equally plausible tree.
 * Multiplication rather than `<<` because shifts wrap at 2^31.
 */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function isPowerOfTwo(n: number): boolean {
  return n >= 1 && splitPoint(n + 1) === n;
}

/** log2 of a power of two, counted rather than computed, so that no floating-point rounding can creep in. */
function levelOf(width: number): number {
  let level = 0;
  for (let w = width; w > 1; w /= 2) level += 1;
  return level;
}

/**
 * MTH(D[n]) over leaf hashes already in memory (RFC 9162 §2.1.1), for small trees and for recomputing a whole log
 * from an export. Folding level by level gives the same tree as the recursive split: at every level the pairs are
 * the aligned perfect subtrees, and a leftover last node is carried up unchanged until it meets its left sibling.
 */
export function rootFromLeafHashes(leafHashes: readonly Buffer[]): Buffer {
  if (leafHashes.length === 0) return emptyRoot();
  let level: Buffer[] = [...leafHashes];
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(nodeHash(level[i] as Buffer, level[i + 1] as Buffer));
    if (level.length % 2 === 1) next.push(level[level.length - 1] as Buffer);
    level = next;
  }
  return Buffer.from(level[0] as Buffer);
}

/**
 * Hashes of the perfect subtrees of a log, the only nodes that never change once written: a store can persist
 * each of them exactly once, as its last leaf arrives, and answer every root and proof from them.
 */
export interface SubtreeHashes {
  /**
   * The hash of the perfect subtree at (`level`, `index`), covering leaves [index·2^level, (index+1)·2^level);
   * level 0 holds the leaf hashes. Only asked for subtrees that lie entirely inside the tree size in use.
   */
  get(level: number, index: number): Buffer;
}

/** A perfect subtree, addressed as in `SubtreeHashes.get`. */
export interface SubtreeAddress {
  readonly level: number;
  readonly index: number;
}

/** One perfect subtree hash, addressed as in `SubtreeHashes.get`. */
export interface PerfectSubtree {
  readonly level: number;
  readonly index: number;
  readonly hash: Buffer;
}

/**
 * Splits [start, end) into the aligned perfect subtrees MTH recursion would visit, left to right: each step takes
 * the k of RFC 9162 (or the whole rest, when it is a power of two). Every range that RFC 9162 proofs ask for
 * starts on a multiple of such a k; any other range has no MTH made of stored nodes, so it is refused.
 */
function perfectSubtreesOf(start: number, end: number): Array<{ level: number; index: number }> {
  const parts: Array<{ level: number; index: number }> = [];
  let from = start;
  while (from < end) {
    const remaining = end - from;
    const width = isPowerOfTwo(remaining) ? remaining : splitPoint(remaining);
    if (from % width !== 0) {
      throw new RangeError(`leaves [${start}, ${end}) do not form an RFC 9162 subtree: ${from} is not aligned to ${width}`);
    }
    parts.push({ level: levelOf(width), index: from / width });
    from += width;
  }
  return parts;
}

/**
 * MTH(D[start:end]) from stored perfect subtrees. MTH nests to the right (MTH(left, MTH(rest))), so the parts are
 * combined right to left; combining left to right would give a different root for every non-power-of-two size.
 */
export function subtreeRoot(store: SubtreeHashes, start: number, end: number): Buffer {
  requireCount(start, "start");
  requireCount(end, "end");
  if (start >= end) throw new RangeError(`empty leaf range [${start}, ${end}) has no subtree root`);
  const parts = perfectSubtreesOf(start, end);
  let root: Buffer | undefined;
  for (let i = parts.length - 1; i >= 0; i--) {
    const { level, index } = parts[i] as { level: number; index: number };
    const hash = store.get(level, index);
    root = root === undefined ? Buffer.from(hash) : nodeHash(hash, root);
  }
  return root as Buffer;
}

/** MTH of the first `size` leaves; the empty-tree hash for 0. */
export function treeRoot(store: SubtreeHashes, size: number): Buffer {
  requireCount(size, "tree size");
  return size === 0 ? emptyRoot() : subtreeRoot(store, 0, size);
}

/**
 * PATH(m, D[n]) of RFC 9162 §2.1.3.1. The recursion is unrolled top-down, which meets the siblings from the root
 * downwards, so the list is reversed at the end: the proof starts next to the leaf.
 */
export function inclusionProof(store: SubtreeHashes, index: number, size: number): Buffer[] {
  requireCount(index, "leaf index");
  requireCount(size, "tree size");
  if (index >= size) throw new RangeError(`leaf index ${index} is outside a tree of size ${size}`);
  const topDown: Buffer[] = [];
  let start = 0;
  let end = size;
  while (end - start > 1) {
    const middle = start + splitPoint(end - start);
    if (index < middle) {
      topDown.push(subtreeRoot(store, middle, end));
      end = middle;
    } else {
      topDown.push(subtreeRoot(store, start, middle));
      start = middle;
    }
  }
  return topDown.reverse();
}

/**
 * PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 9162 §2.1.4.1, unrolled like `inclusionProof`. The recursion
 * ends at the subtree equal to D[0:m] or a right-hand piece of it; that subtree's own hash is sent only when the
 * client cannot already know it (b = false: we have stepped right at least once).
 */
export function consistencyProof(store: SubtreeHashes, oldSize: number, newSize: number): Buffer[] {
  requireCount(oldSize, "old tree size");
  requireCount(newSize, "new tree size");
  if (oldSize <= 0) {
    throw new RangeError("there is no consistency proof from an empty tree: every tree is consistent with it");
  }
  if (oldSize > newSize) throw new RangeError(`old tree size ${oldSize} is larger than new tree size ${newSize}`);
  const topDown: Buffer[] = [];
  let start = 0;
  let end = newSize;
  let startsAtOrigin = true;
  while (end !== oldSize) {
    const middle = start + splitPoint(end - start);
    if (oldSize <= middle) {
      topDown.push(subtreeRoot(store, middle, end));
      end = middle;
    } else {
      topDown.push(subtreeRoot(store, start, middle));
      start = middle;
      startsAtOrigin = false;
    }
  }
  const proof = topDown.reverse();
  if (!startsAtOrigin) proof.unshift(subtreeRoot(store, start, end));
  return proof;
}

/**
 * The perfect subtrees that become complete when leaf `leafIndex` is appended: the leaf itself, then its parent
 * while it is a right child, and so on up. These are exactly the nodes a store must add, so persistence is
 * append-only and O(log n) per entry. `store` must already hold every subtree completed by earlier leaves.
 */
export function perfectSubtreesCompletedBy(leafIndex: number, hash: Uint8Array, store: SubtreeHashes): PerfectSubtree[] {
  requireCount(leafIndex, "leaf index");
  if (!isHash(hash)) throw new RangeError(`a leaf hash is ${HASH_BYTES} bytes`);
  let node: PerfectSubtree = { level: 0, index: leafIndex, hash: Buffer.from(hash) };
  const completed: PerfectSubtree[] = [node];
  while (node.index % 2 === 1) {
    const left = store.get(node.level, node.index - 1);
    node = { level: node.level + 1, index: (node.index - 1) / 2, hash: nodeHash(left, node.hash) };
    completed.push(node);
  }
  return completed;
}

/** A whole tree's perfect subtrees in memory: for tests and for a verifier that replays an exported log. */
export class InMemorySubtreeHashes implements SubtreeHashes {
  private readonly levels: Buffer[][] = [];
  private leafCount = 0;

  /** Number of leaves appended so far. */
  get size(): number {
    return this.leafCount;
  }

  /** Appends the next leaf hash and returns the subtrees it completed. */
  append(leafHash: Uint8Array): PerfectSubtree[] {
    const completed = perfectSubtreesCompletedBy(this.leafCount, leafHash, this);
    for (const { level, index, hash } of completed) {
      const row = this.levels[level] ?? [];
      row[index] = hash;
      this.levels[level] = row;
    }
    this.leafCount += 1;
    return completed;
  }

  get(level: number, index: number): Buffer {
    const hash = this.levels[level]?.[index];
    if (hash === undefined) throw new RangeError(`no complete subtree at level ${level}, index ${index}`);
    return hash;
  }
}

function isHash(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array && value.length === HASH_BYTES;
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function isProof(value: unknown): value is readonly Uint8Array[] {
  return Array.isArray(value) && value.every(isHash);
}

function sameHash(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

/**
 * RFC 9162 §2.1.3.2, step by step. The proof's length is not checked up front because the algorithm already
 * refuses a wrong one: a long proof runs `sn` to zero early, a short one leaves it non-zero.
 *
 * The tree size only fixes the shape of the hash chain. Two sizes that give the same shape for this index accept
 * the same proof, so callers must take size and root together from one signed checkpoint.
 *
 * Never throws: anything malformed is simply not a proof.
 */
export function verifyInclusion(
  leafHash: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!isHash(leafHash) || !isHash(root) || !isCount(index) || !isCount(size) || !isProof(proof)) return false;
  if (index >= size) return false;
  let fn = BigInt(index);
  let sn = BigInt(size - 1);
  let r: Buffer = Buffer.from(leafHash);
  for (const p of proof) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      r = nodeHash(p, r);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && sameHash(r, root);
}

/**
 * RFC 9162 §2.1.4.2, step by step, for 0 < oldSize < newSize. Equal sizes are consistent exactly when the roots
 * are equal and the proof is empty (what `consistencyProof` returns); size 0 has no proof at all, since any tree
 * extends the empty one and there is nothing to check.
 *
 * Like inclusion, the sizes only fix the chain's shape; take them from signed checkpoints. Never throws.
 */
export function verifyConsistency(
  oldSize: number,
  newSize: number,
  oldRoot: Uint8Array,
  newRoot: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!isCount(oldSize) || !isCount(newSize) || !isHash(oldRoot) || !isHash(newRoot) || !isProof(proof)) return false;
  if (oldSize === 0 || oldSize > newSize) return false;
  if (oldSize === newSize) return proof.length === 0 && sameHash(oldRoot, newRoot);
  if (proof.length === 0) return false;

  const path = isPowerOfTwo(oldSize) ? [oldRoot, ...proof] : [...proof];
  let fn = BigInt(oldSize - 1);
  let sn = BigInt(newSize - 1);
  while ((fn & 1n) === 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr: Buffer = Buffer.from(path[0] as Uint8Array);
  let sr: Buffer = Buffer.from(path[0] as Uint8Array);
  for (const c of path.slice(1)) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && sameHash(fr, oldRoot) && sameHash(sr, newRoot);
}
