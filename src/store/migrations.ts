/**
 * Numbered schema migrations, applied in order at start-up. Never edit a released one: add the next.
 * Times are stored as integer milliseconds since the epoch (sortable, compact, index-friendly).
 */
export const MIGRATIONS: readonly { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE authorities (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('root', 'intermediate')),
        status TEXT NOT NULL CHECK (status IN ('active', 'published', 'retired')),
        subject TEXT NOT NULL,
        certificate_der BLOB NOT NULL,
        key_label TEXT,
        parent_id TEXT REFERENCES authorities(id),
        not_before INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        created_at INTEGER NOT NULL
      );
      -- Exactly one intermediate issues at a time.
      CREATE UNIQUE INDEX authorities_one_active_intermediate
        ON authorities(kind) WHERE kind = 'intermediate' AND status = 'active';

      CREATE TABLE certificates (
        serial TEXT PRIMARY KEY,
        authority_id TEXT NOT NULL REFERENCES authorities(id),
        state TEXT NOT NULL CHECK (state IN ('prepared', 'issued', 'failed')),
        spiffe_id TEXT NOT NULL,
        dns_names TEXT NOT NULL,
        not_before INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        key_type TEXT NOT NULL,
        requester TEXT NOT NULL,
        tbs_der BLOB NOT NULL,
        der BLOB,
        fingerprint_sha256 TEXT,
        prepared_at INTEGER NOT NULL,
        issued_at INTEGER,
        revoked_at INTEGER,
        revocation_reason TEXT
      );
      CREATE INDEX certificates_spiffe_id ON certificates(spiffe_id);
      CREATE INDEX certificates_authority ON certificates(authority_id);
      CREATE INDEX certificates_not_after ON certificates(not_after);

      CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('ADMIN', 'AUDITOR')),
        key_hash BLOB NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
      );

      CREATE TABLE enrollment_tokens (
        id TEXT PRIMARY KEY,
        token_hash BLOB NOT NULL UNIQUE,
        spiffe_id TEXT NOT NULL,
        dns_names TEXT NOT NULL,
        max_ttl_seconds INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        uses_left INTEGER NOT NULL CHECK (uses_left >= 0),
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL
      );

      CREATE TABLE audit_events (
        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
        occurred_at INTEGER NOT NULL,
        type TEXT NOT NULL,
        actor TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
        subject TEXT,
        code TEXT,
        remote_address TEXT,
        details TEXT
      );
      CREATE INDEX audit_events_type ON audit_events(type, sequence);

      -- Audit events are append-only, enforced by the database as well as by the code.
      CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
      CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;

      CREATE TABLE crls (
        authority_id TEXT PRIMARY KEY REFERENCES authorities(id),
        crl_number INTEGER NOT NULL,
        der BLOB NOT NULL,
        this_update INTEGER NOT NULL,
        next_update INTEGER NOT NULL
      );
    `,
  },
  {
    version: 2,
    sql: `
      -- Revoked certificates of one authority, for CRL building without a full scan.
      CREATE INDEX certificates_revoked ON certificates(authority_id, revoked_at) WHERE revoked_at IS NOT NULL;

      -- CRL numbers are reserved here before signing, so they only ever go up, across restarts and processes.
      CREATE TABLE crl_counters (
        authority_id TEXT PRIMARY KEY REFERENCES authorities(id),
        last_number INTEGER NOT NULL
      );
    `,
  },
  {
    version: 3,
    sql: `
      -- Delegated OCSP responder certificates, one key per certificate, keys in the online token.
      CREATE TABLE ocsp_signers (
        key_label TEXT PRIMARY KEY,
        authority_id TEXT NOT NULL REFERENCES authorities(id),
        certificate_der BLOB NOT NULL,
        not_before INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        created_at INTEGER NOT NULL
      );
      CREATE INDEX ocsp_signers_authority ON ocsp_signers(authority_id, not_after);

      -- Pre-signed OCSP responses (no nonce), served without touching the HSM. One per CertID hash algorithm,
      -- since a response must echo the request's CertID.
      CREATE TABLE ocsp_responses (
        authority_id TEXT NOT NULL,
        serial TEXT NOT NULL,
        hash_algorithm TEXT NOT NULL CHECK (hash_algorithm IN ('sha1', 'sha256')),
        der BLOB NOT NULL,
        this_update INTEGER NOT NULL,
        next_update INTEGER NOT NULL,
        PRIMARY KEY (authority_id, serial, hash_algorithm)
      ) WITHOUT ROWID;
      CREATE INDEX ocsp_responses_next_update ON ocsp_responses(next_update);
    `,
  },
  {
    version: 4,
    sql: `
      -- Commit order of issued certificates: assigned in the transaction that stores the signed certificate,
      -- and SQLite has one writer, so a reader that has seen sequence n has seen every sequence below n.
      -- Pagination by it neither skips nor repeats rows while issuance goes on (rowid, assigned when the
      -- serial is reserved, would skip a row reserved early and signed late).
      ALTER TABLE certificates ADD COLUMN issued_seq INTEGER;
      UPDATE certificates SET issued_seq = ranked.seq
        FROM (SELECT rowid AS id, row_number() OVER (ORDER BY rowid) AS seq FROM certificates WHERE state = 'issued') AS ranked
        WHERE certificates.rowid = ranked.id;
      CREATE UNIQUE INDEX certificates_issued_seq ON certificates(issued_seq) WHERE issued_seq IS NOT NULL;
      -- issued_at never goes down along issued_seq (the store takes the later of now and the previous row's),
      -- so a time range is a range of issued_seq and pages of a time window are index range scans.
      UPDATE certificates SET issued_at = running.at
        FROM (SELECT rowid AS id, max(issued_at) OVER (ORDER BY issued_seq) AS at FROM certificates WHERE issued_seq IS NOT NULL) AS running
        WHERE certificates.rowid = running.id;

      -- History filters page in issued_seq order; each filter gets an index that yields rows in that order.
      DROP INDEX certificates_spiffe_id;
      CREATE INDEX certificates_spiffe_seq ON certificates(spiffe_id, issued_seq);
      CREATE INDEX certificates_authority_seq ON certificates(authority_id, issued_seq);
      CREATE INDEX certificates_requester_seq ON certificates(requester, issued_seq);
      CREATE INDEX certificates_issued_at ON certificates(issued_at, issued_seq);
      -- Revoked certificates in commit order (with the SPIFFE ID, so a namespace filter needs no table reads).
      CREATE INDEX certificates_revoked_seq ON certificates(issued_seq, spiffe_id) WHERE revoked_at IS NOT NULL;
      -- Covers the status filters' counts (expired = not revoked and past notAfter) without table reads.
      DROP INDEX certificates_not_after;
      CREATE INDEX certificates_not_after ON certificates(not_after, revoked_at, issued_seq);

      -- One row per DNS SAN, so a DNS filter is an index lookup rather than a JSON scan of every row.
      CREATE TABLE certificate_dns_names (
        name TEXT NOT NULL,
        issued_seq INTEGER NOT NULL,
        PRIMARY KEY (name, issued_seq)
      ) WITHOUT ROWID;
      INSERT INTO certificate_dns_names (name, issued_seq)
        SELECT json_each.value, certificates.issued_seq FROM certificates, json_each(certificates.dns_names)
        WHERE certificates.issued_seq IS NOT NULL;

      CREATE INDEX audit_events_actor ON audit_events(actor, sequence);
      CREATE INDEX audit_events_subject ON audit_events(subject, sequence);
      CREATE INDEX audit_events_occurred_at ON audit_events(occurred_at);

      -- Transparency log (RFC 9162 Merkle tree). Every issued certificate and every audit event becomes a
      -- leaf, in sequencing order. The leaf data is rebuilt from the rows it names, so an edit to a row no
      -- longer matches the signed tree head.
      CREATE TABLE log_leaves (
        leaf_index INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('certificate', 'audit')),
        ref INTEGER NOT NULL,
        leaf_hash BLOB NOT NULL,
        UNIQUE (kind, ref)
      );
      -- Hashes of the complete (power-of-two) subtrees above the leaves: any root or proof is O(log n) reads.
      CREATE TABLE log_nodes (
        level INTEGER NOT NULL CHECK (level > 0),
        node_index INTEGER NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (level, node_index)
      ) WITHOUT ROWID;
      CREATE TABLE log_checkpoints (
        tree_size INTEGER PRIMARY KEY,
        root_hash BLOB NOT NULL,
        note TEXT NOT NULL,
        created_at INTEGER NOT NULL
      );
      CREATE TRIGGER log_leaves_no_update BEFORE UPDATE ON log_leaves
        BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;
      CREATE TRIGGER log_leaves_no_delete BEFORE DELETE ON log_leaves
        BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;
    `,
  },
  {
    version: 5,
    sql: `
      -- Lineage: a renewal records the certificate it replaces. At most one live successor per certificate, so
      -- a stolen older certificate cannot fork a lineage (a failed attempt does not count).
      ALTER TABLE certificates ADD COLUMN predecessor_serial TEXT;
      CREATE UNIQUE INDEX certificates_successor ON certificates(predecessor_serial)
        WHERE predecessor_serial IS NOT NULL AND state <> 'failed';
    `,
  },
  {
    version: 6,
    sql: `
      -- Versions of the trust bundle: a new row whenever the set of published authorities changes, written
      -- by triggers so that every writer (service, admin CLI) bumps it in its own transaction.
      CREATE TABLE trust_bundle_versions (
        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
        authority_ids TEXT NOT NULL,
        created_at INTEGER NOT NULL
      );
      INSERT INTO trust_bundle_versions (authority_ids, created_at)
        SELECT json_group_array(id), CAST(unixepoch('subsec') * 1000 AS INTEGER)
        FROM (SELECT id FROM authorities WHERE status <> 'retired' ORDER BY id)
        HAVING count(*) > 0;
      CREATE TRIGGER authorities_bundle_on_insert AFTER INSERT ON authorities BEGIN
        INSERT INTO trust_bundle_versions (authority_ids, created_at)
          SELECT ids, CAST(unixepoch('subsec') * 1000 AS INTEGER)
          FROM (SELECT (SELECT json_group_array(id) FROM (SELECT id FROM authorities WHERE status <> 'retired' ORDER BY id)) AS ids)
          WHERE ids IS NOT (SELECT authority_ids FROM trust_bundle_versions ORDER BY sequence DESC LIMIT 1);
      END;
      CREATE TRIGGER authorities_bundle_on_status AFTER UPDATE OF status ON authorities BEGIN
        INSERT INTO trust_bundle_versions (authority_ids, created_at)
          SELECT ids, CAST(unixepoch('subsec') * 1000 AS INTEGER)
          FROM (SELECT (SELECT json_group_array(id) FROM (SELECT id FROM authorities WHERE status <> 'retired' ORDER BY id)) AS ids)
          WHERE ids IS NOT (SELECT authority_ids FROM trust_bundle_versions ORDER BY sequence DESC LIMIT 1);
      END;

      -- Mesh control planes that acknowledged a bundle version; the sequence only moves forward.
      CREATE TABLE trust_bundle_consumers (
        consumer_id TEXT PRIMARY KEY,
        acknowledged_sequence INTEGER NOT NULL,
        acknowledged_at INTEGER NOT NULL,
        first_seen_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 7,
    sql: `
      -- Registrations: which identity a JWT subject, or the holder of a token made from it, may obtain.
      CREATE TABLE registrations (
        id TEXT PRIMARY KEY,
        spiffe_id TEXT NOT NULL,
        dns_names TEXT NOT NULL,
        max_ttl_seconds INTEGER NOT NULL,
        jwt_issuer TEXT,
        jwt_subject TEXT,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        CHECK ((jwt_issuer IS NULL) = (jwt_subject IS NULL))
      );
      CREATE UNIQUE INDEX registrations_jwt ON registrations(jwt_issuer, jwt_subject) WHERE jwt_issuer IS NOT NULL;
      CREATE INDEX registrations_spiffe_id ON registrations(spiffe_id);
      -- A token made from a registration follows it: narrowed by updates, void once it is deleted.
      ALTER TABLE enrollment_tokens ADD COLUMN registration_id TEXT;
    `,
  },
  {
    version: 8,
    sql: `
      -- Which process is creating an issuer's OCSP responder certificate, so that two do not make one each.
      CREATE TABLE ocsp_signer_claims (
        authority_id TEXT PRIMARY KEY,
        claimed_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 9,
    sql: `
      -- The credential a lineage started with and its lifetime cap (JSON, CertificateOrigin), copied onto every
      -- renewal. NULL for certificates issued before it was recorded.
      ALTER TABLE certificates ADD COLUMN origin TEXT;
      -- Set when an admin voids a token (uses_left = 0 alone cannot tell that from used up): refunds skip it
      -- and the lineages it started stop renewing.
      ALTER TABLE enrollment_tokens ADD COLUMN revoked_at INTEGER;
      -- IDs (jti) of single-use JWTs that obtained a certificate, kept until the token can no longer verify.
      CREATE TABLE jwt_uses (
        issuer TEXT NOT NULL,
        jti TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (issuer, jti)
      ) WITHOUT ROWID;
      CREATE INDEX jwt_uses_expires_at ON jwt_uses(expires_at);
    `,
  },
  {
    version: 10,
    sql: `
      -- Space the readiness probe takes and gives back after a write failed because the disk refused it.
      CREATE TABLE storage_probe (payload BLOB NOT NULL);

      -- When the entry first appeared on a scheduled CRL issued after the certificate expired (RFC 5280 §3.3):
      -- until then it stays on every CRL, afterwards it may drop off.
      ALTER TABLE certificates ADD COLUMN crl_listed_after_expiry_at INTEGER;
      CREATE INDEX certificates_crl_entries ON certificates(authority_id, revoked_at, serial)
        WHERE revoked_at IS NOT NULL AND crl_listed_after_expiry_at IS NULL;
    `,
  },
  {
    version: 11,
    sql: `
      -- Consumers are registered by an admin with the SPIFFE ID allowed to acknowledge for them; an
      -- acknowledgement no longer creates one. Rows from before keep holding retirements back but have no
      -- registration (registered_at NULL) until an admin registers or removes them. Rebuilt because a registered
      -- consumer has acknowledged nothing yet (sequence 0, no time).
      CREATE TABLE trust_bundle_consumers_registered (
        consumer_id TEXT PRIMARY KEY,
        spiffe_id TEXT,
        acknowledged_sequence INTEGER NOT NULL DEFAULT 0,
        acknowledged_at INTEGER,
        first_seen_at INTEGER NOT NULL,
        registered_by TEXT,
        registered_at INTEGER
      );
      INSERT INTO trust_bundle_consumers_registered (consumer_id, acknowledged_sequence, acknowledged_at, first_seen_at)
        SELECT consumer_id, acknowledged_sequence, acknowledged_at, first_seen_at FROM trust_bundle_consumers;
      DROP TABLE trust_bundle_consumers;
      ALTER TABLE trust_bundle_consumers_registered RENAME TO trust_bundle_consumers;
    `,
  },
  {
    version: 12,
    sql: `
      -- An API key may expire; NULL: it lasts until revoked (the keys made before, the bootstrap admin key).
      ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;
    `,
  },
  {
    version: 13,
    sql: `
      -- What a certificate is for: workload certificates, or the delegated OCSP responder certificates the
      -- intermediates sign (in the ledger too, but not leaves whose validity keeps an intermediate published).
      ALTER TABLE certificates ADD COLUMN profile TEXT NOT NULL DEFAULT 'workload' CHECK (profile IN ('workload', 'ocsp-responder'));
    `,
  },
];
