/**
 * The repositories of the store contract suite, built for one storage engine (see store-engines.ts), with the
 * ports both engines implement. On PostgreSQL there are two "nodes",
 * each its own connection pool on the same database, as two service processes have; on SQLite both nodes
 * are one set of repositories (one writer; the file serialises the rest).
 */
import { randomBytes } from "node:crypto";
import { expect } from "vitest";
import type { AuthorityRecord } from "../../src/ca/model.js";
import type { CertificateQuery, IssuanceLedger, PreparedIssuance } from "../../src/ca/ports.js";
import type { CrlRepository, OcspRepository, RevocationRepository } from "../../src/revocation/ports.js";
import { SqliteAuditEventRepository } from "../../src/store/audit-event-repository.js";
import { SqliteAuthorityRepository } from "../../src/store/authority-repository.js";
import { SqliteCertificateStore } from "../../src/store/certificate-store.js";
import { SqliteCrlRepository } from "../../src/store/crl-repository.js";
import { SqliteOcspRepository } from "../../src/store/ocsp-repository.js";
import { PostgresAuthorityRepository } from "../../src/store/postgres/authority-repository.js";
import { PostgresCertificateStore } from "../../src/store/postgres/certificate-store.js";
import { PostgresChangeFeed } from "../../src/store/postgres/change-feed.js";
import { PostgresCrlRepository } from "../../src/store/postgres/crl-repository.js";
import { PostgresDatabase } from "../../src/store/postgres/database.js";
import { PostgresOcspRepository } from "../../src/store/postgres/ocsp-repository.js";
import { PostgresRevocationRepository } from "../../src/store/postgres/revocation-repository.js";
import { SqliteRevocationRepository } from "../../src/store/revocation-repository.js";
import { placeholderAuthority, preparedIssuance, RESERVATION_AUDIT, SCRATCH_AUTHORITY_ID } from "./scratch-store.js";
import type { StoreEngine } from "./store-engines.js";

export interface StoreNode {
  readonly ledger: IssuanceLedger & CertificateQuery & { probeWritable(): Promise<void> };
  readonly revocations: RevocationRepository;
  readonly ocsp: OcspRepository;
  readonly crls: CrlRepository;
}

export interface ContractStore {
  readonly kind: StoreEngine["kind"];
  /** Two nodes sharing the database; on SQLite the same repositories twice. */
  readonly nodes: readonly [StoreNode, StoreNode];
  /** The first column of the first row (undefined for none), `?` placeholders on both engines; integers as numbers. */
  value(sql: string, ...parameters: unknown[]): Promise<unknown>;
  /** Runs a statement, `?` placeholders on both engines. */
  execute(sql: string, ...parameters: unknown[]): Promise<void>;
  insertAuthority(authority: AuthorityRecord): Promise<void>;
  /** An enrollment token with `uses` uses, valid for a minute after `now` unless told otherwise. */
  insertToken(now: Date, uses: number, expiresAt?: Date): Promise<{ id: string; hash: Buffer }>;
  close(): Promise<void>;
}

const numbered = (sql: string): string => {
  let next = 1;
  return sql.replace(/\?/g, () => `$${next++}`);
};

/** pg hands BIGINT and count(*) back as strings; the contract compares numbers, as SQLite returns them. */
const normalised = (value: unknown): unknown => (typeof value === "string" && /^-?\d+$/.test(value) ? Number(value) : value);

function postgresNode(db: PostgresDatabase, feed: PostgresChangeFeed): StoreNode {
  return {
    ledger: new PostgresCertificateStore(db),
    revocations: new PostgresRevocationRepository(db),
    ocsp: new PostgresOcspRepository(db, feed),
    crls: new PostgresCrlRepository(db),
  };
}

/** The repositories of `engine`, with the placeholder root and intermediate (`ca`) every scratch certificate names. */
export async function openContractStore(engine: StoreEngine, now: Date): Promise<ContractStore> {
  let store: ContractStore;
  if (engine.kind === "sqlite") {
    const db = engine.db;
    const audit = new SqliteAuditEventRepository(db);
    const node: StoreNode = {
      ledger: new SqliteCertificateStore(db, audit),
      revocations: new SqliteRevocationRepository(db, audit),
      ocsp: new SqliteOcspRepository(db),
      crls: new SqliteCrlRepository(db),
    };
    const authorities = new SqliteAuthorityRepository(db);
    store = {
      kind: "sqlite",
      nodes: [node, node],
      value: async (sql, ...parameters) => normalised((db.prepare(sql).raw().get(...parameters) as unknown[] | undefined)?.[0]),
      execute: async (sql, ...parameters) => {
        db.prepare(sql).run(...parameters);
      },
      insertAuthority: async (authority) => authorities.insert(authority),
      insertToken: (tokenNow, uses, expiresAt) => insertTokenRow(store, tokenNow, uses, expiresAt),
      close: () => engine.close(),
    };
  } else {
    const first = engine.db;
    const second = await PostgresDatabase.open(engine.url);
    const feeds = await Promise.all([PostgresChangeFeed.open(engine.url), PostgresChangeFeed.open(engine.url)]);
    const nodes = [postgresNode(first, feeds[0]), postgresNode(second, feeds[1])] as const;
    store = {
      kind: "postgres",
      nodes,
      value: async (sql, ...parameters) => {
        const { rows } = await first.pool.query<unknown[]>({ text: numbered(sql), values: parameters, rowMode: "array" });
        return normalised(rows[0]?.[0]);
      },
      execute: async (sql, ...parameters) => {
        await first.query(numbered(sql), parameters);
      },
      insertAuthority: (authority) => new PostgresAuthorityRepository(first).insert(authority),
      insertToken: (tokenNow, uses, expiresAt) => insertTokenRow(store, tokenNow, uses, expiresAt),
      close: async () => {
        await Promise.all(feeds.map((feed) => feed.close()));
        await second.close().catch(() => undefined);
        await engine.close();
      },
    };
  }
  await store.insertAuthority(placeholderAuthority("root", "root", "active", now));
  await store.insertAuthority(placeholderAuthority(SCRATCH_AUTHORITY_ID, "intermediate", "active", now));
  return store;
}

async function insertTokenRow(store: ContractStore, now: Date, uses: number, expiresAt = new Date(now.getTime() + 60_000)): Promise<{ id: string; hash: Buffer }> {
  const hash = randomBytes(32);
  const id = `tok_${hash.toString("hex", 0, 6)}`;
  await store.execute(
    `INSERT INTO enrollment_tokens (id, token_hash, spiffe_id, dns_names, max_ttl_seconds, expires_at, uses_left, created_by, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    id,
    hash,
    "spiffe://anchorage.test/web",
    "[]",
    3600,
    expiresAt.getTime(),
    uses,
    "apikey:admin",
    now.getTime(),
  );
  return { id, hash };
}

/** Reserves and completes a certificate on `node` at `now` (renewing `predecessorSerial` when given); its serial. */
export async function issueOn(node: StoreNode, now: Date, overrides: Partial<PreparedIssuance> = {}): Promise<string> {
  const item = preparedIssuance(now, overrides);
  expect(await node.ledger.prepare([item], now)).toEqual([{ ok: true }]);
  await node.ledger.complete([{ serial: item.serial, der: randomBytes(50), fingerprintSha256: "ab", audit: { ...RESERVATION_AUDIT, type: "issuance.signed" } }], now);
  return item.serial;
}
