import { auditEventFromRow, type AuditEventRow } from "./audit-event-repository.js";
import { auditLogEntry, certificateLogEntry } from "../audit/log-entry.js";
import { leafHash, nodeHash, type SubtreeAddress, type SubtreeHashes } from "../audit/merkle.js";
import type { StoredCheckpoint, TransparencyLogRepository } from "../audit/transparency-log.js";
import { certificateFromRow, type CertificateRow } from "./certificate-store.js";
import { inTransactionWaitingAtMost, type SqliteDatabase } from "./database.js";

/** How long a sequencing round waits for a write lock held elsewhere (blocking this process meanwhile). */
const SEQUENCING_LOCK_WAIT_MS = 100;

interface CheckpointRow {
  tree_size: number;
  root_hash: Buffer;
  note: string;
  created_at: number;
}

const checkpointFromRow = (row: CheckpointRow): StoredCheckpoint => ({
  treeSize: row.tree_size,
  rootHash: row.root_hash,
  note: row.note,
  createdAt: new Date(row.created_at),
});

interface LeafRow {
  leaf_index: number;
  kind: "certificate" | "audit";
  ref: number;
}

export class SqliteTransparencyLogRepository implements TransparencyLogRepository {
  /** Read straight from the file: SQLite answers one hash faster than a caller could batch them. */
  private readonly hashes: SubtreeHashes;
  private readonly statements;

  constructor(private readonly db: SqliteDatabase) {
    this.statements = {
      treeSize: db.prepare("SELECT coalesce(max(leaf_index) + 1, 0) FROM log_leaves").pluck(),
      lastRef: db.prepare("SELECT coalesce(max(ref), 0) FROM log_leaves WHERE kind = ?").pluck(),
      newCertificates: db.prepare("SELECT * FROM certificates WHERE issued_seq > ? ORDER BY issued_seq LIMIT ?"),
      newAuditEvents: db.prepare("SELECT * FROM audit_events WHERE sequence > ? ORDER BY sequence LIMIT ?"),
      insertLeaf: db.prepare("INSERT INTO log_leaves (leaf_index, kind, ref, leaf_hash) VALUES (?, ?, ?, ?)"),
      insertNode: db.prepare("INSERT INTO log_nodes (level, node_index, hash) VALUES (?, ?, ?)"),
      leafHash: db.prepare("SELECT leaf_hash FROM log_leaves WHERE leaf_index = ?").pluck(),
      nodeHash: db.prepare("SELECT hash FROM log_nodes WHERE level = ? AND node_index = ?").pluck(),
      leaf: db.prepare("SELECT leaf_index, kind, ref FROM log_leaves WHERE leaf_index = ?"),
      leaves: db.prepare("SELECT leaf_index, kind, ref FROM log_leaves WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index"),
      certificateBySeq: db.prepare("SELECT * FROM certificates WHERE issued_seq = ?"),
      auditEvent: db.prepare("SELECT * FROM audit_events WHERE sequence = ?"),
      leafOfSerial: db
        .prepare("SELECT leaf_index FROM log_leaves WHERE kind = 'certificate' AND ref = (SELECT issued_seq FROM certificates WHERE serial = ?)")
        .pluck(),
      saveCheckpoint: db.prepare("INSERT OR IGNORE INTO log_checkpoints (tree_size, root_hash, note, created_at) VALUES (?, ?, ?, ?)"),
      latestCheckpoint: db.prepare("SELECT * FROM log_checkpoints ORDER BY tree_size DESC LIMIT 1"),
      checkpointAt: db.prepare("SELECT * FROM log_checkpoints WHERE tree_size = ?"),
    };
    this.hashes = {
      get: (level, index) => {
        const hash = (level === 0 ? this.statements.leafHash.get(index) : this.statements.nodeHash.get(level, index)) as Buffer | undefined;
        if (!hash) throw new Error(`the log has no stored hash at level ${level}, index ${index}`);
        return hash;
      },
    };
  }

  async subtreeHashes(_addresses: readonly SubtreeAddress[]): Promise<SubtreeHashes> {
    return this.hashes;
  }

  async sequence(limit: number): Promise<{ appended: number; treeSize: number }> {
    // A round that cannot have the lock soon fails and the next one (an interval later) catches up.
    return inTransactionWaitingAtMost(this.db, SEQUENCING_LOCK_WAIT_MS, () => {
      let size = Number(this.statements.treeSize.get());
      const start = size;
      const append = (kind: "certificate" | "audit", ref: number, entry: Buffer): void => {
        let hash = leafHash(entry);
        this.statements.insertLeaf.run(size, kind, ref, hash);
        // Store every subtree this leaf completes: the node at (level, index) is complete when index is odd.
        for (let level = 0, index = size; index % 2 === 1; level++, index = Math.floor(index / 2)) {
          hash = nodeHash(this.hashes.get(level, index - 1), hash);
          this.statements.insertNode.run(level + 1, Math.floor(index / 2), hash);
        }
        size++;
      };
      const certificates = this.statements.newCertificates.all(
        this.statements.lastRef.get("certificate"),
        limit,
      ) as CertificateRow[];
      for (const row of certificates) append("certificate", row.issued_seq, certificateLogEntry(certificateFromRow(row), row.issued_seq));
      const events = this.statements.newAuditEvents.all(
        this.statements.lastRef.get("audit"),
        limit - certificates.length,
      ) as AuditEventRow[];
      for (const row of events) append("audit", row.sequence, auditLogEntry(auditEventFromRow(row)));
      return { appended: size - start, treeSize: size };
    });
  }

  async treeSize(): Promise<number> {
    return Number(this.statements.treeSize.get());
  }

  async leafIndexOfCertificate(serial: string): Promise<number | undefined> {
    const index = this.statements.leafOfSerial.get(serial) as number | undefined;
    return index ?? undefined;
  }

  async entry(leafIndex: number): Promise<Buffer | undefined> {
    const leaf = this.statements.leaf.get(leafIndex) as LeafRow | undefined;
    return leaf && this.entryOf(leaf);
  }

  /** Leaf data of [start, end), rebuilt from the rows, `chunkSize` leaves per query. Missing rows yield undefined. */
  async *entries(start: number, end: number, chunkSize = 1000): AsyncGenerator<{ leafIndex: number; entry: Buffer | undefined }> {
    for (let from = start; from < end; from += chunkSize) {
      const leaves = this.statements.leaves.all(from, Math.min(end, from + chunkSize)) as LeafRow[];
      for (const leaf of leaves) yield { leafIndex: leaf.leaf_index, entry: this.entryOf(leaf) };
    }
  }

  async saveCheckpoint(checkpoint: StoredCheckpoint): Promise<void> {
    this.statements.saveCheckpoint.run(checkpoint.treeSize, checkpoint.rootHash, checkpoint.note, checkpoint.createdAt.getTime());
  }

  async latestCheckpoint(): Promise<StoredCheckpoint | undefined> {
    const row = this.statements.latestCheckpoint.get() as CheckpointRow | undefined;
    return row && checkpointFromRow(row);
  }

  async checkpointAt(treeSize: number): Promise<StoredCheckpoint | undefined> {
    const row = this.statements.checkpointAt.get(treeSize) as CheckpointRow | undefined;
    return row && checkpointFromRow(row);
  }

  private entryOf(leaf: LeafRow): Buffer | undefined {
    if (leaf.kind === "certificate") {
      const row = this.statements.certificateBySeq.get(leaf.ref) as CertificateRow | undefined;
      return row && certificateLogEntry(certificateFromRow(row), leaf.ref);
    }
    const row = this.statements.auditEvent.get(leaf.ref) as AuditEventRow | undefined;
    return row && auditLogEntry(auditEventFromRow(row));
  }
}
