import type { ClientBase } from "pg";
import { ADVISORY_LOCKS } from "./advisory-locks.js";

/**
 * Numbered schema migrations of the PostgreSQL store, the counterpart of the SQLite ones in `../migrations.ts`.
 * Never edit a released one: add the next. Version 1 is the SQLite schema as of its migration 13, in one step
 * (a PostgreSQL store starts empty, so none of SQLite's data-moving steps are needed).
 *
 * Column names are the SQLite ones, so rows map the same way. Times are BIGINT milliseconds since the epoch,
 * blobs BYTEA; JSONB only where SQL looks inside the JSON (the DNS names a certificate is indexed under, the
 * authority IDs of a trust bundle version), TEXT where the JSON is only stored and read back whole.
 */
export const POSTGRES_MIGRATIONS: readonly { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE authorities (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('root', 'intermediate')),
        status TEXT NOT NULL CHECK (status IN ('active', 'published', 'retired')),
        subject TEXT NOT NULL,
        certificate_der BYTEA NOT NULL,
        key_label TEXT,
        parent_id TEXT REFERENCES authorities(id),
        not_before BIGINT NOT NULL,
        not_after BIGINT NOT NULL,
        created_at BIGINT NOT NULL
      );
      -- Exactly one intermediate issues at a time.
      CREATE UNIQUE INDEX authorities_one_active_intermediate
        ON authorities(kind) WHERE kind = 'intermediate' AND status = 'active';

      CREATE TABLE certificates (
        serial TEXT PRIMARY KEY,
        authority_id TEXT NOT NULL REFERENCES authorities(id),
        state TEXT NOT NULL CHECK (state IN ('prepared', 'issued', 'failed')),
        spiffe_id TEXT NOT NULL,
        dns_names JSONB NOT NULL,
        not_before BIGINT NOT NULL,
        not_after BIGINT NOT NULL,
        key_type TEXT NOT NULL,
        requester TEXT NOT NULL,
        tbs_der BYTEA NOT NULL,
        der BYTEA,
        fingerprint_sha256 TEXT,
        prepared_at BIGINT NOT NULL,
        issued_at BIGINT,
        revoked_at BIGINT,
        revocation_reason TEXT,
        -- Commit order of issued certificates (history pages by it); unique, so two writers cannot share one.
        issued_seq BIGINT,
        -- Lineage: the certificate a renewal replaces.
        predecessor_serial TEXT,
        -- The credential a lineage started with and its lifetime cap (JSON, CertificateOrigin).
        origin TEXT,
        -- When the entry first appeared on a scheduled CRL issued after the certificate expired (RFC 5280 §3.3).
        crl_listed_after_expiry_at BIGINT,
        profile TEXT NOT NULL DEFAULT 'workload' CHECK (profile IN ('workload', 'ocsp-responder'))
      );
      CREATE INDEX certificates_authority ON certificates(authority_id);
      -- Revoked certificates of one authority, for CRL building without a full scan.
      CREATE INDEX certificates_revoked ON certificates(authority_id, revoked_at) WHERE revoked_at IS NOT NULL;
      CREATE UNIQUE INDEX certificates_issued_seq ON certificates(issued_seq) WHERE issued_seq IS NOT NULL;
      -- History filters page in issued_seq order; each filter gets an index that yields rows in that order.
      CREATE INDEX certificates_spiffe_seq ON certificates(spiffe_id, issued_seq);
      CREATE INDEX certificates_authority_seq ON certificates(authority_id, issued_seq);
      CREATE INDEX certificates_requester_seq ON certificates(requester, issued_seq);
      CREATE INDEX certificates_issued_at ON certificates(issued_at, issued_seq);
      CREATE INDEX certificates_revoked_seq ON certificates(issued_seq, spiffe_id) WHERE revoked_at IS NOT NULL;
      CREATE INDEX certificates_not_after ON certificates(not_after, revoked_at, issued_seq);
      -- At most one live successor per certificate, so a stolen older certificate cannot fork a lineage.
      CREATE UNIQUE INDEX certificates_successor ON certificates(predecessor_serial)
        WHERE predecessor_serial IS NOT NULL AND state <> 'failed';
      CREATE INDEX certificates_crl_entries ON certificates(authority_id, revoked_at, serial)
        WHERE revoked_at IS NOT NULL AND crl_listed_after_expiry_at IS NULL;

      -- One row per DNS SAN, so a DNS filter is an index lookup rather than a JSON scan of every row.
      CREATE TABLE certificate_dns_names (
        name TEXT NOT NULL,
        issued_seq BIGINT NOT NULL,
        PRIMARY KEY (name, issued_seq)
      );

      CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('ADMIN', 'AUDITOR')),
        key_hash BYTEA NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT,
        -- NULL: the key lasts until revoked.
        expires_at BIGINT
      );

      CREATE TABLE enrollment_tokens (
        id TEXT PRIMARY KEY,
        token_hash BYTEA NOT NULL UNIQUE,
        spiffe_id TEXT NOT NULL,
        dns_names TEXT NOT NULL,
        max_ttl_seconds INTEGER NOT NULL,
        expires_at BIGINT NOT NULL,
        uses_left INTEGER NOT NULL CHECK (uses_left >= 0),
        created_by TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        registration_id TEXT,
        -- Set when an admin voids a token (uses_left = 0 alone cannot tell that from used up).
        revoked_at BIGINT
      );

      CREATE TABLE audit_events (
        sequence BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        occurred_at BIGINT NOT NULL,
        type TEXT NOT NULL,
        actor TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
        subject TEXT,
        code TEXT,
        remote_address TEXT,
        details TEXT
      );
      CREATE INDEX audit_events_type ON audit_events(type, sequence);
      CREATE INDEX audit_events_actor ON audit_events(actor, sequence);
      CREATE INDEX audit_events_subject ON audit_events(subject, sequence);
      CREATE INDEX audit_events_occurred_at ON audit_events(occurred_at);

      -- Append-only tables, enforced by the database as well as by the code. TRUNCATE fires no row trigger,
      -- so it gets a statement trigger of its own.
      CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
      END;
      $$;
      CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION refuse_change('audit events are append-only');
      CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION refuse_change('audit events are append-only');
      CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
        FOR EACH STATEMENT EXECUTE FUNCTION refuse_change('audit events are append-only');

      CREATE TABLE crls (
        authority_id TEXT PRIMARY KEY REFERENCES authorities(id),
        crl_number BIGINT NOT NULL,
        der BYTEA NOT NULL,
        this_update BIGINT NOT NULL,
        next_update BIGINT NOT NULL
      );
      -- CRL numbers are reserved here before signing, so they only ever go up, across restarts and processes.
      CREATE TABLE crl_counters (
        authority_id TEXT PRIMARY KEY REFERENCES authorities(id),
        last_number BIGINT NOT NULL
      );

      -- Delegated OCSP responder certificates, one key per certificate, keys in the online token.
      CREATE TABLE ocsp_signers (
        key_label TEXT PRIMARY KEY,
        authority_id TEXT NOT NULL REFERENCES authorities(id),
        certificate_der BYTEA NOT NULL,
        not_before BIGINT NOT NULL,
        not_after BIGINT NOT NULL,
        created_at BIGINT NOT NULL
      );
      CREATE INDEX ocsp_signers_authority ON ocsp_signers(authority_id, not_after);
      -- Which process is creating an issuer's OCSP responder certificate, so that two do not make one each.
      CREATE TABLE ocsp_signer_claims (
        authority_id TEXT PRIMARY KEY,
        claimed_at BIGINT NOT NULL
      );

      -- Pre-signed OCSP responses (no nonce), one per CertID hash algorithm.
      CREATE TABLE ocsp_responses (
        authority_id TEXT NOT NULL,
        serial TEXT NOT NULL,
        hash_algorithm TEXT NOT NULL CHECK (hash_algorithm IN ('sha1', 'sha256')),
        der BYTEA NOT NULL,
        this_update BIGINT NOT NULL,
        next_update BIGINT NOT NULL,
        PRIMARY KEY (authority_id, serial, hash_algorithm)
      );
      CREATE INDEX ocsp_responses_next_update ON ocsp_responses(next_update);

      -- Transparency log (RFC 9162 Merkle tree): every issued certificate and every audit event is a leaf.
      CREATE TABLE log_leaves (
        leaf_index BIGINT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('certificate', 'audit')),
        ref BIGINT NOT NULL,
        leaf_hash BYTEA NOT NULL,
        UNIQUE (kind, ref)
      );
      CREATE TABLE log_nodes (
        level INTEGER NOT NULL CHECK (level > 0),
        node_index BIGINT NOT NULL,
        hash BYTEA NOT NULL,
        PRIMARY KEY (level, node_index)
      );
      CREATE TABLE log_checkpoints (
        tree_size BIGINT PRIMARY KEY,
        root_hash BYTEA NOT NULL,
        note TEXT NOT NULL,
        created_at BIGINT NOT NULL
      );
      CREATE TRIGGER log_leaves_no_update BEFORE UPDATE ON log_leaves
        FOR EACH ROW EXECUTE FUNCTION refuse_change('the transparency log is append-only');
      CREATE TRIGGER log_leaves_no_delete BEFORE DELETE ON log_leaves
        FOR EACH ROW EXECUTE FUNCTION refuse_change('the transparency log is append-only');
      CREATE TRIGGER log_leaves_no_truncate BEFORE TRUNCATE ON log_leaves
        FOR EACH STATEMENT EXECUTE FUNCTION refuse_change('the transparency log is append-only');

      -- Versions of the trust bundle: a new row whenever the set of published authorities changes, written
      -- by triggers so that every writer (service, admin CLI) bumps it in its own transaction.
      CREATE TABLE trust_bundle_versions (
        sequence BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        authority_ids JSONB NOT NULL,
        created_at BIGINT NOT NULL
      );
      CREATE FUNCTION record_trust_bundle_version() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE
        current_ids JSONB;
      BEGIN
        -- SQLite has one writer; here concurrent writers take turns, so that each compares the set it sees
        -- with the version the previous one recorded, and sequences follow commit order.
        LOCK TABLE trust_bundle_versions IN SHARE ROW EXCLUSIVE MODE;
        SELECT coalesce(jsonb_agg(id ORDER BY id), '[]'::jsonb) INTO current_ids
          FROM authorities WHERE status <> 'retired';
        IF current_ids IS DISTINCT FROM (SELECT authority_ids FROM trust_bundle_versions ORDER BY sequence DESC LIMIT 1) THEN
          INSERT INTO trust_bundle_versions (authority_ids, created_at)
            VALUES (current_ids, floor(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT);
        END IF;
        RETURN NULL;
      END;
      $$;
      CREATE TRIGGER authorities_bundle_on_insert AFTER INSERT ON authorities
        FOR EACH ROW EXECUTE FUNCTION record_trust_bundle_version();
      CREATE TRIGGER authorities_bundle_on_status AFTER UPDATE OF status ON authorities
        FOR EACH ROW EXECUTE FUNCTION record_trust_bundle_version();

      -- Mesh control planes, registered by an admin with the SPIFFE ID allowed to acknowledge for them; the
      -- acknowledged sequence only moves forward.
      CREATE TABLE trust_bundle_consumers (
        consumer_id TEXT PRIMARY KEY,
        spiffe_id TEXT,
        acknowledged_sequence BIGINT NOT NULL DEFAULT 0,
        acknowledged_at BIGINT,
        first_seen_at BIGINT NOT NULL,
        registered_by TEXT,
        registered_at BIGINT
      );

      -- Registrations: which identity a JWT subject, or the holder of a token made from it, may obtain.
      CREATE TABLE registrations (
        id TEXT PRIMARY KEY,
        spiffe_id TEXT NOT NULL,
        dns_names TEXT NOT NULL,
        max_ttl_seconds INTEGER NOT NULL,
        jwt_issuer TEXT,
        jwt_subject TEXT,
        created_by TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        CHECK ((jwt_issuer IS NULL) = (jwt_subject IS NULL))
      );
      CREATE UNIQUE INDEX registrations_jwt ON registrations(jwt_issuer, jwt_subject) WHERE jwt_issuer IS NOT NULL;
      CREATE INDEX registrations_spiffe_id ON registrations(spiffe_id);

      -- IDs (jti) of single-use JWTs that obtained a certificate, kept until the token can no longer verify.
      CREATE TABLE jwt_uses (
        issuer TEXT NOT NULL,
        jti TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (issuer, jti)
      );
      CREATE INDEX jwt_uses_expires_at ON jwt_uses(expires_at);

      -- Space the readiness probe takes and gives back after a write failed because the disk refused it.
      CREATE TABLE storage_probe (payload BYTEA NOT NULL);
    `,
  },
  {
    // What SQLite's data_version tells a process (another connection committed), told per topic: every node
    // LISTENs on one channel (see change-feed.ts) and drops what it cached about the topic named. Statement
    // triggers, so a batch notifies once, and PostgreSQL folds identical notifications of one transaction
    // into one, delivered at commit (never for a rollback). Certificate inserts and completions notify
    // nothing: only a revocation (an UPDATE that sets revoked_at, even one that matched no row) changes an answer.
    version: 2,
    sql: `
      CREATE FUNCTION notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify('anchorage_changes', TG_ARGV[0]);
        RETURN NULL;
      END;
      $$;
      CREATE TRIGGER certificates_notify_revocation AFTER UPDATE OF revoked_at ON certificates
        FOR EACH STATEMENT EXECUTE FUNCTION notify_change('revocation');
      CREATE TRIGGER ocsp_responses_notify AFTER INSERT OR UPDATE OR DELETE ON ocsp_responses
        FOR EACH STATEMENT EXECUTE FUNCTION notify_change('ocsp');
      CREATE TRIGGER ocsp_signers_notify AFTER INSERT OR UPDATE OR DELETE ON ocsp_signers
        FOR EACH STATEMENT EXECUTE FUNCTION notify_change('ocsp');
      CREATE TRIGGER crls_notify AFTER INSERT OR UPDATE OR DELETE ON crls
        FOR EACH STATEMENT EXECUTE FUNCTION notify_change('crl');
      CREATE TRIGGER authorities_notify AFTER INSERT OR UPDATE OR DELETE ON authorities
        FOR EACH STATEMENT EXECUTE FUNCTION notify_change('authorities');
      CREATE TRIGGER trust_bundle_versions_notify AFTER INSERT ON trust_bundle_versions
        FOR EACH STATEMENT EXECUTE FUNCTION notify_change('trust_bundle');
    `,
  },
  {
    version: 3,
    sql: `
      -- Audit events are numbered in commit order, as SQLite's single writer numbers them: readers page by
      -- sequence and the transparency log appends events after the last sequence it holds, so an event that
      -- committed after a larger number was seen would be skipped by both. Identity values are handed out at
      -- insert time, not commit time; instead every insert takes a transaction-scoped advisory lock and only
      -- then draws its number, so a transaction holding a number commits (releasing the lock) before the next
      -- one can draw. Being a trigger, it orders every writer, whichever repository or tool inserts the row.
      -- The lock is held until commit: a transaction should append its audit events as its last writes.
      -- The identity default would draw a number of its own before the trigger runs (a gap per event), so
      -- the column gets a plain sequence that only the trigger draws from.
      ALTER TABLE audit_events ALTER COLUMN sequence DROP IDENTITY;
      CREATE SEQUENCE audit_events_sequence AS BIGINT OWNED BY audit_events.sequence;
      SELECT setval('audit_events_sequence', coalesce(max(sequence), 0) + 1, false) FROM audit_events;
      CREATE FUNCTION number_audit_event() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_advisory_xact_lock(${ADVISORY_LOCKS.auditSequence.toString()});
        NEW.sequence := nextval('audit_events_sequence');
        RETURN NEW;
      END;
      $$;
      CREATE TRIGGER audit_events_number BEFORE INSERT ON audit_events
        FOR EACH ROW EXECUTE FUNCTION number_audit_event();
    `,
  },
  {
    // A SPIFFE ID prefix filter's first page, in issued_seq order with the prefix checked inside the index:
    // the counterpart of certificates_revoked_seq for all certificates. PostgreSQL counts the prefix twice
    // when estimating (the range and starts_with each look selective), expects a few hundred matches where a
    // namespace has tens of thousands, and without this index fetches and sorts every match: at 1,000,000
    // certificates a namespace's first page took 184 ms at p50 (scripts/bench-history.ts, BENCHMARKS.md).
    // Walking this index in issued_seq order reads only the heap rows of the page.
    version: 4,
    sql: `
      CREATE INDEX certificates_seq_spiffe ON certificates(issued_seq, spiffe_id) WHERE issued_seq IS NOT NULL;
    `,
  },
];

/**
 * Key of the advisory lock that serialises migrations across every process sharing the database (several
 * service nodes starting at once migrate once). Arbitrary but fixed: "anchorag" in ASCII.
 */
export const MIGRATION_LOCK_KEY = 0x616e63686f726167n;

/**
 * Applies the migrations the database does not have yet, each in its own transaction, and returns the
 * versions this call applied. Each transaction first takes the migration advisory lock and then checks
 * `schema_migrations` again, so of several runners started together exactly one applies a given version and
 * the others wait for it and skip it.
 */
export async function migratePostgres(
  client: ClientBase,
  migrations: readonly { version: number; sql: string }[] = POSTGRES_MIGRATIONS,
): Promise<number[]> {
  await inLockedTransaction(client, () =>
    client.query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"),
  );
  const applied: number[] = [];
  for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
    await inLockedTransaction(client, async () => {
      const existing = await client.query("SELECT 1 FROM schema_migrations WHERE version = $1", [migration.version]);
      if (existing.rowCount !== 0) return;
      await client.query(migration.sql);
      await client.query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())", [migration.version]);
      applied.push(migration.version);
    });
  }
  return applied;
}

async function inLockedTransaction(client: ClientBase, work: () => Promise<unknown>): Promise<void> {
  await client.query("BEGIN");
  try {
    // Released by COMMIT or ROLLBACK, so a failed migration never leaves the lock held on a pooled connection.
    await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK_KEY.toString()]);
    await work();
    await client.query("COMMIT");
  } catch (error) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw error;
  }
}
