import { createHash } from "node:crypto";

import { describe, expect, it } from "vitest";

import {
  EMPTY_ROOT,
  InMemorySubtreeHashes,
  type SubtreeHashes,
  consistencyProof,
  inclusionProof,
  leafHash,
  nodeHash,
  perfectSubtreesCompletedBy,
  rootFromLeafHashes,
  subtreeRoot,
  treeRoot,
  verifyConsistency,
  verifyInclusion,
} from "../../src/audit/merkle.js";

// ---------------------------------------------------------------------------------------------------------------
// Reference implementation, written straight from the recursive definitions of RFC 9162 §2.1 and sharing no code
// with the module: MTH (§2.1.1), PATH (§2.1.3.1), PROOF / SUBPROOF (§2.1.4.1). Slow and obviously right.
// ---------------------------------------------------------------------------------------------------------------

function sha256(...parts: Uint8Array[]): Buffer {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part);
  return hash.digest();
}

/** The largest power of two smaller than n (n > 1). */
function k(n: number): number {
  let power = 1;
  while (power * 2 < n) power *= 2;
  return power;
}

function MTH(D: readonly Uint8Array[]): Buffer {
  const n = D.length;
  if (n === 0) return sha256();
  if (n === 1) return sha256(Uint8Array.of(0x00), D[0] as Uint8Array);
  return sha256(Uint8Array.of(0x01), MTH(D.slice(0, k(n))), MTH(D.slice(k(n))));
}

function PATH(m: number, D: readonly Uint8Array[]): Buffer[] {
  const n = D.length;
  if (n === 1) return [];
  return m < k(n)
    ? [...PATH(m, D.slice(0, k(n))), MTH(D.slice(k(n)))]
    : [...PATH(m - k(n), D.slice(k(n))), MTH(D.slice(0, k(n)))];
}

function SUBPROOF(m: number, D: readonly Uint8Array[], b: boolean): Buffer[] {
  const n = D.length;
  if (m === n) return b ? [] : [MTH(D)];
  return m <= k(n)
    ? [...SUBPROOF(m, D.slice(0, k(n)), b), MTH(D.slice(k(n)))]
    : [...SUBPROOF(m - k(n), D.slice(k(n)), false), MTH(D.slice(0, k(n)))];
}

function PROOF(m: number, D: readonly Uint8Array[]): Buffer[] {
  return SUBPROOF(m, D, true);
}

/**
 * The shape of PATH(m, D[n]): for each proof node, whether it is a left sibling. RFC 9162 verification only
 * replays this shape, so two sizes with the same shape accept the same proof (see the "wrong size" tests).
 */
function inclusionShape(m: number, n: number): string {
  if (n === 1) return "";
  return m < k(n) ? `${inclusionShape(m, k(n))}R` : `${inclusionShape(m - k(n), n - k(n))}L`;
}

/** The shape of SUBPROOF(m, D[n], b): "T" for the terminal subtree hash, then one L or R per sibling. */
function consistencyShape(m: number, n: number, b = true): string {
  if (m === n) return b ? "" : "T";
  return m <= k(n) ? `${consistencyShape(m, k(n), b)}R` : `${consistencyShape(m - k(n), n - k(n), false)}L`;
}

// ---------------------------------------------------------------------------------------------------------------

const MAX_SIZE = 70;
const ENTRIES = Array.from({ length: MAX_SIZE }, (_, i) => Buffer.from(`audit entry #${i}`));
const LEAF_HASHES = ENTRIES.map((entry) => leafHash(entry));
const REFERENCE_ROOTS = Array.from({ length: MAX_SIZE + 1 }, (_, n) => MTH(ENTRIES.slice(0, n)));

function storeOf(leafHashes: readonly Buffer[]): InMemorySubtreeHashes {
  const store = new InMemorySubtreeHashes();
  for (const hash of leafHashes) store.append(hash);
  return store;
}

/** The full store, but failing the test if it is asked for a node that is not complete inside `size`. */
function limitedTo(store: SubtreeHashes, size: number): SubtreeHashes {
  return {
    get(level, index) {
      const width = 2 ** level;
      if (!Number.isInteger(index) || index < 0 || (index + 1) * width > size) {
        throw new Error(`asked for (${level}, ${index}), outside a tree of size ${size}`);
      }
      return store.get(level, index);
    },
  };
}

const STORE = storeOf(LEAF_HASHES);
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");
const hexes = (list: readonly Uint8Array[]): string[] => list.map(hex);

/** A copy of `bytes` with bit `bit` (counted over the whole value) flipped. */
function flipBit(bytes: Uint8Array, bit: number): Buffer {
  const copy = Buffer.from(bytes);
  const byte = Math.floor(bit / 8) % copy.length;
  copy[byte] = (copy[byte] as number) ^ (1 << bit % 8);
  return copy;
}

/** Every (index, size) pair with 1 ≤ size ≤ MAX_SIZE. */
const INCLUSION_CASES = Array.from({ length: MAX_SIZE }, (_, s) => s + 1).flatMap((size) =>
  Array.from({ length: size }, (_, index) => ({ index, size })),
);
/** Every (oldSize, newSize) pair with 1 ≤ oldSize ≤ newSize ≤ MAX_SIZE. */
const CONSISTENCY_CASES = Array.from({ length: MAX_SIZE }, (_, s) => s + 1).flatMap((newSize) =>
  Array.from({ length: newSize }, (_, o) => ({ oldSize: o + 1, newSize })),
);

/** Every other index of small trees; for larger ones the neighbours, the ends and one bit flipped at a time. */
function otherIndices(index: number, size: number): number[] {
  const all = size <= 32 ? Array.from({ length: size + 2 }, (_, i) => i - 1) : [];
  const near = [-1, 0, index - 1, index + 1, size - 1, size, ...[1, 2, 4, 8, 16, 32].map((bit) => index ^ bit)];
  return [...new Set([...all, ...near])].filter((other) => other !== index);
}

/** Sizes around `size`, and its double: the ones most likely to share a proof's shape. */
function otherSizes(size: number): number[] {
  const near = Array.from({ length: 9 }, (_, d) => size + d - 4);
  return [...new Set([...near, 2 * size, 2 * size + 1])].filter((other) => other >= 0 && other !== size);
}

describe("hashing", () => {
  it("uses SHA-256 of the empty string as the empty root", () => {
    expect(hex(EMPTY_ROOT)).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(hex(treeRoot(STORE, 0))).toBe(hex(EMPTY_ROOT));
    expect(hex(rootFromLeafHashes([]))).toBe(hex(EMPTY_ROOT));
  });

  it("prefixes leaves with 0x00 and interior nodes with 0x01", () => {
    const a = Buffer.from("left");
    const b = Buffer.from("right");
    expect(hex(leafHash(a))).toBe(hex(sha256(Uint8Array.of(0), a)));
    expect(hex(nodeHash(a, b))).toBe(hex(sha256(Uint8Array.of(1), a, b)));
  });

  it("returns a fresh empty root, so mutating one result cannot corrupt another", () => {
    const root = treeRoot(STORE, 0);
    root.fill(0);
    expect(hex(treeRoot(STORE, 0))).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  });
});

describe("RFC 6962 / 9162 test vectors (certificate-transparency-go, trillian, transparency-dev/merkle)", () => {
  const DATA = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
  ].map((h) => Buffer.from(h, "hex"));
  // Root hash for tree sizes 1..8.
  const ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
  ];
  const store = storeOf(DATA.map((entry) => leafHash(entry)));

  it("gives the published roots for the 1- and 8-leaf trees and every size between", () => {
    expect(hex(treeRoot(store, 1))).toBe("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    expect(hex(treeRoot(store, 8))).toBe("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328");
    for (let size = 1; size <= 8; size++) {
      expect(hex(treeRoot(store, size)), `size ${size}`).toBe(ROOTS[size - 1]);
      expect(hex(MTH(DATA.slice(0, size))), `reference, size ${size}`).toBe(ROOTS[size - 1]);
    }
  });

  it("gives the published inclusion proofs", () => {
    const vectors = [
      {
        index: 0,
        size: 8,
        proof: [
          "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
      },
      {
        index: 5,
        size: 8,
        proof: [
          "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
          "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
          "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
      },
    ];
    for (const { index, size, proof } of vectors) {
      expect(hexes(inclusionProof(store, index, size))).toEqual(proof);
      const nodes = proof.map((h) => Buffer.from(h, "hex"));
      expect(verifyInclusion(leafHash(DATA[index] as Buffer), index, size, nodes, treeRoot(store, size))).toBe(true);
    }
  });

  it("gives the published consistency proofs", () => {
    const vectors = [
      {
        oldSize: 2,
        newSize: 8,
        proof: [
          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
      },
      {
        oldSize: 6,
        newSize: 8,
        proof: [
          "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
          "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
          "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
      },
      {
        oldSize: 2,
        newSize: 5,
        proof: [
          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
      },
    ];
    for (const { oldSize, newSize, proof } of vectors) {
      expect(hexes(consistencyProof(store, oldSize, newSize))).toEqual(proof);
      const nodes = proof.map((h) => Buffer.from(h, "hex"));
      const oldRoot = treeRoot(store, oldSize);
      expect(verifyConsistency(oldSize, newSize, oldRoot, treeRoot(store, newSize), nodes)).toBe(true);
    }
  });
});

describe("roots against the reference, every size 0..70", () => {
  it("rootFromLeafHashes equals MTH", () => {
    for (let n = 0; n <= MAX_SIZE; n++) {
      expect(hex(rootFromLeafHashes(LEAF_HASHES.slice(0, n))), `size ${n}`).toBe(hex(REFERENCE_ROOTS[n] as Buffer));
    }
  });

  it("treeRoot equals MTH and reads only nodes inside the tree", () => {
    for (let n = 0; n <= MAX_SIZE; n++) {
      expect(hex(treeRoot(limitedTo(STORE, n), n)), `size ${n}`).toBe(hex(REFERENCE_ROOTS[n] as Buffer));
    }
  });

  it("subtreeRoot refuses ranges that are not RFC 9162 subtrees, and empty ones", () => {
    expect(() => subtreeRoot(STORE, 1, 3)).toThrow(RangeError);
    expect(() => subtreeRoot(STORE, 2, 7)).toThrow(RangeError);
    expect(() => subtreeRoot(STORE, 4, 4)).toThrow(RangeError);
    expect(hex(subtreeRoot(STORE, 4, 7))).toBe(hex(MTH(ENTRIES.slice(4, 7))));
    expect(hex(subtreeRoot(STORE, 32, 70))).toBe(hex(MTH(ENTRIES.slice(32, 70))));
  });
});

describe("inclusion proofs", () => {
  it("equal PATH(m, D[n]) for every size 1..70 and every index, reading only nodes inside the tree", () => {
    for (const { index, size } of INCLUSION_CASES) {
      const expected = hexes(PATH(index, ENTRIES.slice(0, size)));
      expect(hexes(inclusionProof(limitedTo(STORE, size), index, size)), `PATH(${index}, D[${size}])`).toEqual(expected);
    }
  });

  it("are refused for an index outside the tree", () => {
    expect(() => inclusionProof(STORE, 5, 5)).toThrow(RangeError);
    expect(() => inclusionProof(STORE, 0, 0)).toThrow(RangeError);
    expect(() => inclusionProof(STORE, -1, 5)).toThrow(RangeError);
    expect(() => inclusionProof(STORE, 0.5, 5)).toThrow(RangeError);
  });

  it("verify, every one of them", () => {
    for (const { index, size } of INCLUSION_CASES) {
      const proof = inclusionProof(STORE, index, size);
      const root = REFERENCE_ROOTS[size] as Buffer;
      expect(verifyInclusion(LEAF_HASHES[index] as Buffer, index, size, proof, root), `(${index}, ${size})`).toBe(true);
    }
  });

  it("do not verify with any bit of any proof node flipped", () => {
    for (const { index, size } of INCLUSION_CASES) {
      const proof = inclusionProof(STORE, index, size);
      const root = REFERENCE_ROOTS[size] as Buffer;
      proof.forEach((node, position) => {
        const bit = (index * 31 + size * 7 + position * 13) % 256;
        const tampered = proof.map((p, i) => (i === position ? flipBit(p, bit) : p));
        expect(verifyInclusion(LEAF_HASHES[index] as Buffer, index, size, tampered, root)).toBe(false);
      });
      // And every single bit of the first node, for the small trees.
      if (size <= 8 && proof.length > 0) {
        for (let bit = 0; bit < 256; bit++) {
          const tampered = [flipBit(proof[0] as Buffer, bit), ...proof.slice(1)];
          expect(verifyInclusion(LEAF_HASHES[index] as Buffer, index, size, tampered, root)).toBe(false);
        }
      }
    }
  });

  it("do not verify for a wrong leaf, a wrong root, or a truncated or extended proof", () => {
    for (const { index, size } of INCLUSION_CASES) {
      const proof = inclusionProof(STORE, index, size);
      const root = REFERENCE_ROOTS[size] as Buffer;
      const leaf = LEAF_HASHES[index] as Buffer;
      const otherLeaf = LEAF_HASHES[(index + 1) % MAX_SIZE] as Buffer;
      expect(verifyInclusion(otherLeaf, index, size, proof, root)).toBe(false);
      expect(verifyInclusion(leaf, index, size, proof, flipBit(root, index))).toBe(false);
      expect(verifyInclusion(leaf, index, size, proof, REFERENCE_ROOTS[size - 1] as Buffer)).toBe(false);
      if (proof.length > 0) {
        expect(verifyInclusion(leaf, index, size, proof.slice(0, -1), root)).toBe(false);
        expect(verifyInclusion(leaf, index, size, proof.slice(1), root)).toBe(false);
      }
      expect(verifyInclusion(leaf, index, size, [...proof, root], root)).toBe(false);
      expect(verifyInclusion(leaf, index, size, [...proof, leaf], root)).toBe(false);
      expect(verifyInclusion(leaf, index, size, [leaf, ...proof], root)).toBe(false);
    }
  });

  it("do not verify at any other index of the same tree", () => {
    for (const { index, size } of INCLUSION_CASES) {
      const proof = inclusionProof(STORE, index, size);
      const root = REFERENCE_ROOTS[size] as Buffer;
      const leaf = LEAF_HASHES[index] as Buffer;
      for (const other of otherIndices(index, size)) {
        expect(verifyInclusion(leaf, other, size, proof, root), `(${index}→${other}, ${size})`).toBe(false);
      }
    }
  });

  it("do not verify at a wrong size, except one whose PATH has the very same shape", () => {
    // RFC 9162 verification replays the left/right pattern the size implies and checks the hash chain; it cannot
    // tell sizes with the same pattern apart (PATH(0, D[5]) is a valid-looking PATH(0, D[6]) of the same root).
    // That is why size and root must come together from one signed checkpoint.
    let rejected = 0;
    let sameShape = 0;
    for (const { index, size } of INCLUSION_CASES) {
      const proof = inclusionProof(STORE, index, size);
      const root = REFERENCE_ROOTS[size] as Buffer;
      for (const other of otherSizes(size)) {
        const expected = other > index && inclusionShape(index, other) === inclusionShape(index, size);
        const accepted = verifyInclusion(LEAF_HASHES[index] as Buffer, index, other, proof, root);
        expect(accepted, `(${index}, ${size}→${other})`).toBe(expected);
        if (accepted) sameShape += 1;
        else rejected += 1;
      }
    }
    // Both happen: the rule above is what decides, not chance.
    expect(rejected).toBeGreaterThan(0);
    expect(sameShape).toBeGreaterThan(0);
    expect(verifyInclusion(LEAF_HASHES[0] as Buffer, 0, 6, inclusionProof(STORE, 0, 5), REFERENCE_ROOTS[5] as Buffer)).toBe(
      true,
    );
  });

  it("never throw on malformed input", () => {
    const leaf = LEAF_HASHES[3] as Buffer;
    const proof = inclusionProof(STORE, 3, 10);
    const root = REFERENCE_ROOTS[10] as Buffer;
    const cases: Array<[unknown, unknown, unknown, unknown, unknown]> = [
      [leaf, 3, 10, [...proof.slice(0, -1), Buffer.alloc(31)], root],
      [leaf, 3, 10, [...proof, "not a hash"], root],
      [leaf, 3, 10, null, root],
      [leaf, 3, 10, proof, Buffer.alloc(33)],
      [leaf.subarray(0, 16), 3, 10, proof, root],
      [leaf, 10, 10, proof, root],
      [leaf, 11, 10, proof, root],
      [leaf, -1, 10, proof, root],
      [leaf, 3.5, 10, proof, root],
      [leaf, 3, Number.NaN, proof, root],
      [leaf, 3, 2 ** 60, proof, root],
      [leaf, 0, 0, [], root],
      [undefined, undefined, undefined, undefined, undefined],
    ];
    for (const args of cases) {
      const call = () => (verifyInclusion as (...a: unknown[]) => boolean)(...args);
      expect(call).not.toThrow();
      expect(call()).toBe(false);
    }
  });
});

describe("consistency proofs", () => {
  it("equal PROOF(m, D[n]) for every size 1..70 and every old size, reading only nodes inside the new tree", () => {
    for (const { oldSize, newSize } of CONSISTENCY_CASES) {
      const expected = hexes(PROOF(oldSize, ENTRIES.slice(0, newSize)));
      const actual = hexes(consistencyProof(limitedTo(STORE, newSize), oldSize, newSize));
      expect(actual, `PROOF(${oldSize}, D[${newSize}])`).toEqual(expected);
    }
  });

  it("are empty for equal sizes and refused for size 0 or a shrinking tree", () => {
    expect(consistencyProof(STORE, 7, 7)).toEqual([]);
    expect(() => consistencyProof(STORE, 0, 7)).toThrow(/empty tree/);
    expect(() => consistencyProof(STORE, 0, 0)).toThrow(RangeError);
    expect(() => consistencyProof(STORE, 8, 7)).toThrow(RangeError);
    expect(() => consistencyProof(STORE, -1, 7)).toThrow(RangeError);
  });

  it("verify, every one of them", () => {
    for (const { oldSize, newSize } of CONSISTENCY_CASES) {
      const proof = consistencyProof(STORE, oldSize, newSize);
      const oldRoot = REFERENCE_ROOTS[oldSize] as Buffer;
      const newRoot = REFERENCE_ROOTS[newSize] as Buffer;
      expect(verifyConsistency(oldSize, newSize, oldRoot, newRoot, proof), `(${oldSize}, ${newSize})`).toBe(true);
    }
  });

  it("do not verify with any bit of any proof node flipped", () => {
    for (const { oldSize, newSize } of CONSISTENCY_CASES) {
      const proof = consistencyProof(STORE, oldSize, newSize);
      const oldRoot = REFERENCE_ROOTS[oldSize] as Buffer;
      const newRoot = REFERENCE_ROOTS[newSize] as Buffer;
      proof.forEach((node, position) => {
        const bit = (oldSize * 31 + newSize * 7 + position * 13) % 256;
        const tampered = proof.map((p, i) => (i === position ? flipBit(p, bit) : p));
        expect(verifyConsistency(oldSize, newSize, oldRoot, newRoot, tampered), `(${oldSize}, ${newSize})`).toBe(false);
      });
    }
  });

  it("do not verify for wrong roots or a truncated or extended proof", () => {
    for (const { oldSize, newSize } of CONSISTENCY_CASES) {
      const proof = consistencyProof(STORE, oldSize, newSize);
      const oldRoot = REFERENCE_ROOTS[oldSize] as Buffer;
      const newRoot = REFERENCE_ROOTS[newSize] as Buffer;
      expect(verifyConsistency(oldSize, newSize, flipBit(oldRoot, newSize), newRoot, proof)).toBe(false);
      expect(verifyConsistency(oldSize, newSize, oldRoot, flipBit(newRoot, oldSize), proof)).toBe(false);
      expect(verifyConsistency(oldSize, newSize, newRoot, oldRoot, proof)).toBe(oldSize === newSize);
      if (proof.length > 0) {
        expect(verifyConsistency(oldSize, newSize, oldRoot, newRoot, proof.slice(0, -1))).toBe(false);
        expect(verifyConsistency(oldSize, newSize, oldRoot, newRoot, proof.slice(1))).toBe(false);
      }
      expect(verifyConsistency(oldSize, newSize, oldRoot, newRoot, [...proof, newRoot])).toBe(false);
      // The classic mistake: sending the old root although the client already has it.
      expect(verifyConsistency(oldSize, newSize, oldRoot, newRoot, [oldRoot, ...proof])).toBe(false);
    }
  });

  it("do not verify at wrong sizes, except ones whose PROOF has the very same shape", () => {
    let rejected = 0;
    let sameShape = 0;
    for (const { oldSize, newSize } of CONSISTENCY_CASES) {
      const proof = consistencyProof(STORE, oldSize, newSize);
      const oldRoot = REFERENCE_ROOTS[oldSize] as Buffer;
      const newRoot = REFERENCE_ROOTS[newSize] as Buffer;
      const shape = consistencyShape(oldSize, newSize);
      const claims = [
        ...Array.from({ length: 7 }, (_, d) => ({ m: oldSize + d - 3, n: newSize })),
        ...Array.from({ length: 7 }, (_, d) => ({ m: oldSize, n: newSize + d - 3 })),
      ].filter(({ m, n }) => m !== oldSize || n !== newSize);
      for (const { m, n } of claims) {
        const valid = m >= 1 && m <= n && (m === n ? false : consistencyShape(m, n) === shape);
        const accepted = verifyConsistency(m, n, oldRoot, newRoot, proof);
        expect(accepted, `(${oldSize}, ${newSize}) claimed as (${m}, ${n})`).toBe(valid);
        if (accepted) sameShape += 1;
        else rejected += 1;
      }
    }
    expect(rejected).toBeGreaterThan(0);
    expect(sameShape).toBeGreaterThan(0);
  });

  it("accept equal sizes only with equal roots and an empty proof; never size 0", () => {
    const root = REFERENCE_ROOTS[9] as Buffer;
    expect(verifyConsistency(9, 9, root, root, [])).toBe(true);
    expect(verifyConsistency(9, 9, root, REFERENCE_ROOTS[8] as Buffer, [])).toBe(false);
    expect(verifyConsistency(9, 9, root, root, [root])).toBe(false);
    expect(verifyConsistency(0, 9, EMPTY_ROOT, root, [])).toBe(false);
    expect(verifyConsistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])).toBe(false);
    expect(verifyConsistency(10, 9, root, root, [])).toBe(false);
  });

  it("never throw on malformed input", () => {
    const proof = consistencyProof(STORE, 3, 10);
    const oldRoot = REFERENCE_ROOTS[3] as Buffer;
    const newRoot = REFERENCE_ROOTS[10] as Buffer;
    const cases: Array<[unknown, unknown, unknown, unknown, unknown]> = [
      [3, 10, oldRoot, newRoot, [...proof.slice(0, -1), Buffer.alloc(31)]],
      [3, 10, oldRoot, newRoot, [...proof, 42]],
      [3, 10, oldRoot, newRoot, "proof"],
      [3, 10, oldRoot.subarray(1), newRoot, proof],
      [3, 10, oldRoot, Buffer.alloc(0), proof],
      [3, 10, oldRoot, newRoot, []],
      [-3, 10, oldRoot, newRoot, proof],
      [3, 1e300, oldRoot, newRoot, proof],
      [3, 2 ** 60, oldRoot, newRoot, proof],
      [Number.NaN, 10, oldRoot, newRoot, proof],
      [undefined, undefined, undefined, undefined, undefined],
    ];
    for (const args of cases) {
      const call = () => (verifyConsistency as (...a: unknown[]) => boolean)(...args);
      expect(call).not.toThrow();
      expect(call()).toBe(false);
    }
  });
});

describe("incremental storage", () => {
  it("perfectSubtreesCompletedBy yields exactly the nodes InMemorySubtreeHashes holds, each equal to its MTH", () => {
    const recorded = new Map<string, Buffer>();
    const recordingStore: SubtreeHashes = {
      get(level, index) {
        const hash = recorded.get(`${level}/${index}`);
        if (hash === undefined) throw new Error(`(${level}, ${index}) was never completed`);
        return hash;
      },
    };
    for (let i = 0; i < MAX_SIZE; i++) {
      const completed = perfectSubtreesCompletedBy(i, LEAF_HASHES[i] as Buffer, recordingStore);
      // The leaf, then one parent per trailing 1 bit of its index.
      const trailingOnes = i.toString(2).length - i.toString(2).replace(/1+$/, "").length;
      expect(completed.map(({ level }) => level)).toEqual(Array.from({ length: trailingOnes + 1 }, (_, l) => l));
      for (const { level, index, hash } of completed) {
        expect(recorded.has(`${level}/${index}`)).toBe(false);
        recorded.set(`${level}/${index}`, hash);
      }
    }
    let count = 0;
    for (let level = 0; 2 ** level <= MAX_SIZE; level++) {
      for (let index = 0; (index + 1) * 2 ** level <= MAX_SIZE; index++) {
        const width = 2 ** level;
        const expected = hex(MTH(ENTRIES.slice(index * width, (index + 1) * width)));
        expect(hex(recorded.get(`${level}/${index}`) as Buffer), `(${level}, ${index})`).toBe(expected);
        expect(hex(STORE.get(level, index))).toBe(expected);
        count += 1;
      }
    }
    expect(recorded.size).toBe(count);
    expect(STORE.size).toBe(MAX_SIZE);
  });

  it("InMemorySubtreeHashes.append returns what it stored and refuses bad hashes and unknown nodes", () => {
    const store = new InMemorySubtreeHashes();
    for (let i = 0; i < 7; i++) store.append(LEAF_HASHES[i] as Buffer);
    const completed = store.append(LEAF_HASHES[7] as Buffer);
    expect(completed.map(({ level, index }) => [level, index])).toEqual([
      [0, 7],
      [1, 3],
      [2, 1],
      [3, 0],
    ]);
    expect(hex(store.get(3, 0))).toBe(hex(REFERENCE_ROOTS[8] as Buffer));
    expect(() => store.get(1, 4)).toThrow(RangeError);
    expect(() => store.append(Buffer.alloc(31))).toThrow(RangeError);
    expect(store.size).toBe(8);
  });
});

describe("large trees", () => {
  // Stand-in logs of 2^40 + 12345 leaves, answered in O(1) per node, to show every index stays exact past 2^32.
  const SIZE = 2 ** 40 + 12_345;
  function inside(level: number, index: number, size: number): void {
    if (!Number.isSafeInteger(index) || index < 0 || (index + 1) * 2 ** level > size) {
      throw new Error(`asked for (${level}, ${index}), outside the tree`);
    }
  }
  /** Each perfect subtree's "hash" is derived from its address: not a real tree, but every node is distinct. */
  const addressed: SubtreeHashes = {
    get(level, index) {
      inside(level, index, SIZE);
      return sha256(Buffer.from(`${level}/${index}`));
    },
  };
  /** A real tree whose leaves are all equal, so a perfect subtree's hash depends on its level only. */
  const uniformLevels = [leafHash(Buffer.from("same entry"))];
  for (let level = 1; level <= 41; level++) {
    const below = uniformLevels[level - 1] as Buffer;
    uniformLevels.push(nodeHash(below, below));
  }
  const uniform: SubtreeHashes = {
    get(level, index) {
      inside(level, index, SIZE);
      return uniformLevels[level] as Buffer;
    },
  };
  /** MTH over a range of `store`, by the RFC recursion, stopping at perfect subtrees. */
  function referenceRange(store: SubtreeHashes, start: number, end: number): Buffer {
    const n = end - start;
    const level = Math.round(Math.log2(n));
    if (2 ** level === n && start % n === 0) return store.get(level, start / n);
    return sha256(Uint8Array.of(1), referenceRange(store, start, start + k(n)), referenceRange(store, start + k(n), end));
  }
  function referencePath(m: number, start: number, end: number): Buffer[] {
    if (end - start === 1) return [];
    const middle = start + k(end - start);
    return m < middle
      ? [...referencePath(m, start, middle), referenceRange(addressed, middle, end)]
      : [...referencePath(m, middle, end), referenceRange(addressed, start, middle)];
  }
  function referenceProof(m: number, start: number, end: number, b: boolean): Buffer[] {
    if (m === end) return b ? [] : [referenceRange(addressed, start, end)];
    const middle = start + k(end - start);
    return m <= middle
      ? [...referenceProof(m, start, middle, b), referenceRange(addressed, middle, end)]
      : [...referenceProof(m, middle, end, false), referenceRange(addressed, start, middle)];
  }
  const INDICES = [0, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 33 + 7, 2 ** 40 - 1, 2 ** 40, SIZE - 1];
  const SIZE_PAIRS = [
    [2 ** 32 + 1, SIZE],
    [2 ** 40, SIZE],
    [3, SIZE],
    [2 ** 33 - 5, 2 ** 34 + 3],
    [2 ** 31 + 1, 2 ** 32 + 1],
  ] as const;

  it("build the same roots and proofs as the RFC recursion", () => {
    expect(hex(treeRoot(addressed, SIZE))).toBe(hex(referenceRange(addressed, 0, SIZE)));
    for (const index of INDICES) {
      expect(hexes(inclusionProof(addressed, index, SIZE)), `index ${index}`).toEqual(hexes(referencePath(index, 0, SIZE)));
    }
    for (const [oldSize, newSize] of SIZE_PAIRS) {
      expect(hexes(consistencyProof(addressed, oldSize, newSize)), `(${oldSize}, ${newSize})`).toEqual(
        hexes(referenceProof(oldSize, 0, newSize, true)),
      );
    }
  });

  it("verify inclusion of leaves past 2^32", () => {
    const root = treeRoot(uniform, SIZE);
    for (const index of INDICES) {
      const proof = inclusionProof(uniform, index, SIZE);
      expect(verifyInclusion(uniformLevels[0] as Buffer, index, SIZE, proof, root), `index ${index}`).toBe(true);
      expect(verifyInclusion(uniformLevels[0] as Buffer, index, SIZE, proof.slice(1), root)).toBe(false);
    }
  });

  it("verify consistency between sizes past 2^32", () => {
    for (const [oldSize, newSize] of SIZE_PAIRS) {
      const proof = consistencyProof(uniform, oldSize, newSize);
      const oldRoot = treeRoot(uniform, oldSize);
      const newRoot = treeRoot(uniform, newSize);
      expect(verifyConsistency(oldSize, newSize, oldRoot, newRoot, proof), `(${oldSize}, ${newSize})`).toBe(true);
      expect(verifyConsistency(oldSize, newSize, oldRoot, newRoot, proof.slice(1))).toBe(false);
    }
  });
});
