/**
 * Keys of the transaction-scoped advisory locks (`pg_advisory_xact_lock`) with which the PostgreSQL store
 * makes writers on different nodes take turns where a constraint alone cannot order them. Arbitrary but
 * fixed: "anchor" in ASCII followed by a number, distinct from the migration lock ("anchorag").
 */
export const ADVISORY_LOCKS = {
  /** Activating an intermediate: demote the active one, promote the new one. */
  activation: 0x616e63686f720001n,
  /** Numbering audit events, so that their sequence follows commit order (see migration 3). */
  auditSequence: 0x616e63686f720002n,
  /** Numbering issued certificates (issued_seq) in commit order: the history pages by it, the log appends by it. */
  issuedSequence: 0x616e63686f720004n,
  /** Running the sweeps: held for a whole session by the one node that runs them (see sweeper-lease.ts). */
  sweeper: 0x616e63686f720005n,
  /** Sequencing the transparency log: appending leaves and the subtree hashes they complete. */
  logSequencing: 0x616e63686f720003n,
} as const;
