import { auditLogEntry, certificateLogEntry } from "../../audit/log-entry.js";
import { leafHash, perfectSubtreesCompletedBy, type PerfectSubtree, type SubtreeAddress, type SubtreeHashes } from "../../audit/merkle.js";
import type { StoredCheckpoint, TransparencyLogRepository } from "../../audit/transparency-log.js";
import type { CertificateRecord } from "../../ca/model.js";
import { certificateFromRow, type CertificateRow } from "../certificate-store.js";
import { ADVISORY_LOCKS } from "./advisory-locks.js";
import { auditEventFromPostgresRow, type PostgresAuditEventRow } from "./audit-event-repository.js";
import type { PostgresDatabase, PostgresTransaction } from "./database.js";

/** Hashes kept in memory between calls at most; never stale (stored hashes never change), so dropping them is only a cost. */
const HASH_CACHE_LIMIT = 100_000;
const ENTRIES_CHUNK_SIZE = 1000;

/** A certificate row as pg returns it: BIGINT columns as strings, the DNS names as parsed JSONB. */
interface PostgresCertificateRow extends Omit<CertificateRow, "issued_seq" | "dns_names" | "not_before" | "not_after" | "issued_at" | "revoked_at"> {
  issued_seq: string;
  dns_names: string[];
  not_before: string;
  not_after: string;
  issued_at: string;
  revoked_at: string | null;
}

/** The record the SQLite store makes of the same row, so that both engines build byte-identical leaves. */
function certificateFromPostgresRow(row: PostgresCertificateRow): CertificateRecord {
  return certificateFromRow({
    ...row,
    issued_seq: Number(row.issued_seq),
    dns_names: JSON.stringify(row.dns_names),
    not_before: Number(row.not_before),
    not_after: Number(row.not_after),
    issued_at: Number(row.issued_at),
    revoked_at: row.revoked_at === null ? null : Number(row.revoked_at),
  });
}

interface CheckpointRow {
  tree_size: string;
  root_hash: Buffer;
  note: string;
  created_at: string;
}

const checkpointFromRow = (row: CheckpointRow): StoredCheckpoint => ({
  treeSize: Number(row.tree_size),
  rootHash: row.root_hash,
  note: row.note,
  createdAt: new Date(Number(row.created_at)),
});

interface LeafRow {
  leaf_index: string;
  kind: "certificate" | "audit";
  ref: string;
}

type Coordinate = readonly [level: number, index: number];

const coordinateKey = (level: number, index: number): string => `${level}:${index}`;

const hashesFrom = (hashes: ReadonlyMap<string, Buffer>): SubtreeHashes => ({
  get: (level, index) => {
    const hash = hashes.get(coordinateKey(level, index));
    if (!hash) throw new Error(`the log's hash at level ${level}, index ${index} is not loaded`);
    return hash;
  },
});

/**
 * The perfect subtrees a tree of `size` leaves ends with, one per bit set in `size`: the left siblings that
 * the next leaves will be combined with, so the only stored hashes appending needs.
 */
function frontierOf(size: number): Coordinate[] {
  const frontier: Coordinate[] = [];
  for (let level = 0, width = 1; width <= size; level++, width *= 2) {
    const complete = Math.floor(size / width);
    if (complete % 2 === 1) frontier.push([level, complete - 1]);
  }
  return frontier;
}

export class PostgresTransparencyLogRepository implements TransparencyLogRepository {
  private readonly cachedHashes = new Map<string, Buffer>();

  constructor(private readonly db: PostgresDatabase) {}

  /** Answered in one query, less what this process already holds (stored hashes never change). */
  async subtreeHashes(addresses: readonly SubtreeAddress[]): Promise<SubtreeHashes> {
    return hashesFrom(await this.fetchHashes(addresses.map(({ level, index }): Coordinate => [level, index]), this.db));
  }

  /** The stored hashes at `coordinates`, from memory or else from the database; throws if one is not stored. */
  private async fetchHashes(coordinates: readonly Coordinate[], queryable: PostgresTransaction): Promise<Map<string, Buffer>> {
    const found = new Map<string, Buffer>();
    const missing: Coordinate[] = [];
    for (const [level, index] of coordinates) {
      const key = coordinateKey(level, index);
      const cached = this.cachedHashes.get(key);
      if (cached) found.set(key, cached);
      else missing.push([level, index]);
    }
    if (missing.length === 0) return found;
    const { rows } = await queryable.query<{ level: number; node_index: string; hash: Buffer }>(
      `SELECT 0 AS level, leaf_index AS node_index, leaf_hash AS hash
         FROM log_leaves WHERE leaf_index = ANY($1::bigint[])
       UNION ALL
       SELECT n.level, n.node_index, n.hash
         FROM log_nodes n JOIN unnest($2::int[], $3::bigint[]) AS wanted(level, node_index)
           ON n.level = wanted.level AND n.node_index = wanted.node_index`,
      [
        missing.filter(([level]) => level === 0).map(([, index]) => index),
        missing.filter(([level]) => level > 0).map(([level]) => level),
        missing.filter(([level]) => level > 0).map(([, index]) => index),
      ],
    );
    const loaded = rows.map((row) => ({ level: row.level, index: Number(row.node_index), hash: row.hash }));
    for (const { level, index, hash } of loaded) found.set(coordinateKey(level, index), hash);
    const absent = missing.find(([level, index]) => !found.has(coordinateKey(level, index)));
    if (absent) throw new Error(`the log has no stored hash at level ${absent[0]}, index ${absent[1]}`);
    this.remember(loaded);
    return found;
  }

  /**
   * Appends, in one transaction, up to `limit` certificates and audit events not yet in the log, with the
   * subtree hashes they complete. Only one node is meant to sequence, but a failover can overlap two: the
   * transaction-scoped advisory lock makes them take turns, and the one that waited reads the tree size and
   * last references afresh after the other's commit (READ COMMITTED takes a snapshot per statement), so
   * every row becomes exactly one leaf. The order is the commit order of certificates (issued_seq) and of
   * audit events (sequence), both assigned in commit order, so nothing committed later sorts before what
   * was sequenced.
   */
  async sequence(limit: number): Promise<{ appended: number; treeSize: number }> {
    const { appended, treeSize, completed } = await this.db.transaction(async (transaction) => {
      await transaction.query("SELECT pg_advisory_xact_lock($1)", [ADVISORY_LOCKS.logSequencing.toString()]);
      const { rows: state } = await transaction.query<{ tree_size: string; last_certificate: string; last_audit: string }>(
        `SELECT (SELECT coalesce(max(leaf_index) + 1, 0) FROM log_leaves) AS tree_size,
                (SELECT coalesce(max(ref), 0) FROM log_leaves WHERE kind = 'certificate') AS last_certificate,
                (SELECT coalesce(max(ref), 0) FROM log_leaves WHERE kind = 'audit') AS last_audit`,
      );
      const start = Number(state[0]?.tree_size ?? 0);
      // Appending combines new leaves with the frontier only: no other stored hash is read.
      const frontier = await this.fetchHashes(frontierOf(start), transaction);
      const working = hashesFrom(frontier);

      const leaves: { index: number; kind: "certificate" | "audit"; ref: number; hash: Buffer }[] = [];
      const nodes: PerfectSubtree[] = [];
      const append = (kind: "certificate" | "audit", ref: number, entry: Buffer): void => {
        const index = start + leaves.length;
        const completedByLeaf = perfectSubtreesCompletedBy(index, leafHash(entry), working);
        for (const node of completedByLeaf) frontier.set(coordinateKey(node.level, node.index), node.hash);
        leaves.push({ index, kind, ref, hash: completedByLeaf[0]?.hash as Buffer });
        nodes.push(...completedByLeaf.slice(1));
      };

      const certificates = await transaction.query<PostgresCertificateRow>("SELECT * FROM certificates WHERE issued_seq > $1 ORDER BY issued_seq LIMIT $2", [
        state[0]?.last_certificate ?? 0,
        limit,
      ]);
      for (const row of certificates.rows) {
        const issuedSeq = Number(row.issued_seq);
        append("certificate", issuedSeq, certificateLogEntry(certificateFromPostgresRow(row), issuedSeq));
      }
      const events = await transaction.query<PostgresAuditEventRow>("SELECT * FROM audit_events WHERE sequence > $1 ORDER BY sequence LIMIT $2", [
        state[0]?.last_audit ?? 0,
        limit - certificates.rows.length,
      ]);
      for (const row of events.rows) append("audit", Number(row.sequence), auditLogEntry(auditEventFromPostgresRow(row)));

      if (leaves.length > 0) {
        await transaction.query("INSERT INTO log_leaves (leaf_index, kind, ref, leaf_hash) SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bytea[])", [
          leaves.map((leaf) => leaf.index),
          leaves.map((leaf) => leaf.kind),
          leaves.map((leaf) => leaf.ref),
          leaves.map((leaf) => leaf.hash),
        ]);
      }
      if (nodes.length > 0) {
        await transaction.query("INSERT INTO log_nodes (level, node_index, hash) SELECT * FROM unnest($1::int[], $2::bigint[], $3::bytea[])", [
          nodes.map((node) => node.level),
          nodes.map((node) => node.index),
          nodes.map((node) => node.hash),
        ]);
      }
      const written: PerfectSubtree[] = [...leaves.map((leaf) => ({ level: 0, index: leaf.index, hash: leaf.hash })), ...nodes];
      return { appended: leaves.length, treeSize: start + leaves.length, completed: written };
    });
    // Only once committed: a rolled-back round's hashes were never stored.
    this.remember(completed);
    return { appended, treeSize };
  }

  async treeSize(): Promise<number> {
    const { rows } = await this.db.query<{ tree_size: string }>("SELECT coalesce(max(leaf_index) + 1, 0) AS tree_size FROM log_leaves");
    return Number(rows[0]?.tree_size ?? 0);
  }

  async leafIndexOfCertificate(serial: string): Promise<number | undefined> {
    const { rows } = await this.db.query<{ leaf_index: string }>(
      "SELECT leaf_index FROM log_leaves WHERE kind = 'certificate' AND ref = (SELECT issued_seq FROM certificates WHERE serial = $1)",
      [serial],
    );
    return rows[0] && Number(rows[0].leaf_index);
  }

  async entry(leafIndex: number): Promise<Buffer | undefined> {
    const { rows } = await this.db.query<LeafRow>("SELECT leaf_index, kind, ref FROM log_leaves WHERE leaf_index = $1", [leafIndex]);
    return rows[0] && this.entryOf(rows[0]);
  }

  /** Leaf data of [start, end), rebuilt from the rows, `chunkSize` leaves per query. Missing rows yield undefined. */
  async *entries(start: number, end: number, chunkSize = ENTRIES_CHUNK_SIZE): AsyncGenerator<{ leafIndex: number; entry: Buffer | undefined }> {
    for (let from = start; from < end; from += chunkSize) {
      const to = Math.min(end, from + chunkSize);
      const { rows: leaves } = await this.db.query<LeafRow>("SELECT leaf_index, kind, ref FROM log_leaves WHERE leaf_index >= $1 AND leaf_index < $2 ORDER BY leaf_index", [
        from,
        to,
      ]);
      const certificateRefs = leaves.filter((leaf) => leaf.kind === "certificate").map((leaf) => leaf.ref);
      const auditRefs = leaves.filter((leaf) => leaf.kind === "audit").map((leaf) => leaf.ref);
      const [certificates, events] = await Promise.all([
        this.db.query<PostgresCertificateRow>("SELECT * FROM certificates WHERE issued_seq = ANY($1::bigint[])", [certificateRefs]),
        this.db.query<PostgresAuditEventRow>("SELECT * FROM audit_events WHERE sequence = ANY($1::bigint[])", [auditRefs]),
      ]);
      const certificateBySeq = new Map(certificates.rows.map((row) => [row.issued_seq, row]));
      const eventBySequence = new Map(events.rows.map((row) => [row.sequence, row]));
      for (const leaf of leaves) {
        const certificate = leaf.kind === "certificate" ? certificateBySeq.get(leaf.ref) : undefined;
        const event = leaf.kind === "audit" ? eventBySequence.get(leaf.ref) : undefined;
        yield {
          leafIndex: Number(leaf.leaf_index),
          entry: certificate
            ? certificateLogEntry(certificateFromPostgresRow(certificate), Number(leaf.ref))
            : event && auditLogEntry(auditEventFromPostgresRow(event)),
        };
      }
    }
  }

  async saveCheckpoint(checkpoint: StoredCheckpoint): Promise<void> {
    // Two nodes may sign the same size; either signature is valid, and the first one stored stands.
    await this.db.query("INSERT INTO log_checkpoints (tree_size, root_hash, note, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (tree_size) DO NOTHING", [
      checkpoint.treeSize,
      checkpoint.rootHash,
      checkpoint.note,
      checkpoint.createdAt.getTime(),
    ]);
  }

  async latestCheckpoint(): Promise<StoredCheckpoint | undefined> {
    const { rows } = await this.db.query<CheckpointRow>("SELECT * FROM log_checkpoints ORDER BY tree_size DESC LIMIT 1");
    return rows[0] && checkpointFromRow(rows[0]);
  }

  async checkpointAt(treeSize: number): Promise<StoredCheckpoint | undefined> {
    const { rows } = await this.db.query<CheckpointRow>("SELECT * FROM log_checkpoints WHERE tree_size = $1", [treeSize]);
    return rows[0] && checkpointFromRow(rows[0]);
  }

  private async entryOf(leaf: LeafRow): Promise<Buffer | undefined> {
    if (leaf.kind === "certificate") {
      const { rows } = await this.db.query<PostgresCertificateRow>("SELECT * FROM certificates WHERE issued_seq = $1", [leaf.ref]);
      return rows[0] && certificateLogEntry(certificateFromPostgresRow(rows[0]), Number(leaf.ref));
    }
    const { rows } = await this.db.query<PostgresAuditEventRow>("SELECT * FROM audit_events WHERE sequence = $1", [leaf.ref]);
    return rows[0] && auditLogEntry(auditEventFromPostgresRow(rows[0]));
  }

  private remember(hashes: readonly PerfectSubtree[]): void {
    if (this.cachedHashes.size + hashes.length > HASH_CACHE_LIMIT) this.cachedHashes.clear();
    for (const { level, index, hash } of hashes) this.cachedHashes.set(coordinateKey(level, index), hash);
  }
}
