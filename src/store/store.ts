import { join } from "node:path";
import type { AuditEventRepository } from "../audit/audit-log.js";
import type { AuditEventQuery } from "../audit/audit-events.js";
import type { TransparencyLogRepository } from "../audit/transparency-log.js";
import type { AuthorityRepository, CertificateQuery, IssuanceLedger, TrustBundleConsumerRepository } from "../ca/ports.js";
import type { Logger } from "../common/logger.js";
import type { ApiKeyRepository, EnrollmentTokenRepository, RegistrationRepository } from "../policy/model.js";
import type { CrlRepository, OcspRepository, RevocationRepository } from "../revocation/ports.js";
import { SqliteAuditEventRepository } from "./audit-event-repository.js";
import { SqliteAuthorityRepository, SqliteTrustBundleConsumerRepository } from "./authority-repository.js";
import { SqliteCertificateStore } from "./certificate-store.js";
import { SqliteCrlRepository } from "./crl-repository.js";
import { openDatabase } from "./database.js";
import { SqliteOcspRepository } from "./ocsp-repository.js";
import { SqliteApiKeyRepository, SqliteEnrollmentTokenRepository, SqliteRegistrationRepository } from "./policy-repositories.js";
import { PostgresAuditEventRepository } from "./postgres/audit-event-repository.js";
import { PostgresAuthorityRepository, PostgresTrustBundleConsumerRepository } from "./postgres/authority-repository.js";
import { PostgresCertificateStore } from "./postgres/certificate-store.js";
import { PostgresChangeFeed } from "./postgres/change-feed.js";
import { PostgresCrlRepository } from "./postgres/crl-repository.js";
import { PostgresDatabase } from "./postgres/database.js";
import { PostgresOcspRepository } from "./postgres/ocsp-repository.js";
import { PostgresRevocationRepository } from "./postgres/revocation-repository.js";
import { PostgresApiKeyRepository, PostgresEnrollmentTokenRepository, PostgresRegistrationRepository } from "./postgres/policy-repositories.js";
import { PostgresSweeperLease } from "./postgres/sweeper-lease.js";
import { PostgresTransparencyLogRepository } from "./postgres/transparency-log-repository.js";
import { SqliteRevocationRepository } from "./revocation-repository.js";
import { SqliteTransparencyLogRepository } from "./transparency-log-repository.js";

/**
 * The right to run the sweeps over shared state (log sequencing, CRL and OCSP re-signing, retirement): held by
 * at most one process among all that share the database, and taken over by another when that one goes.
 */
export interface SweeperLease {
  /**
   * Calls `listener` with true when this process gains the lease and false when it loses it; resolves once the
   * first attempt to take it is over.
   */
  start(listener: (held: boolean) => void): Promise<void>;
  readonly held: boolean;
  stop(): Promise<void>;
}

/** Every port the service needs from its database, for one engine. */
export interface Store {
  readonly engine: "sqlite" | "postgres";
  readonly authorities: AuthorityRepository;
  readonly consumers: TrustBundleConsumerRepository;
  readonly certificates: IssuanceLedger & CertificateQuery;
  readonly revocations: RevocationRepository;
  readonly ocsp: OcspRepository;
  readonly crls: CrlRepository;
  readonly auditEvents: AuditEventRepository & AuditEventQuery;
  readonly apiKeys: ApiKeyRepository;
  readonly enrollmentTokens: EnrollmentTokenRepository;
  readonly registrations: RegistrationRepository;
  readonly transparencyLog: TransparencyLogRepository;
  /** Resolves when a write would go through now; rejects with UnavailableError otherwise (readiness). */
  probeWritable(): Promise<void>;
  /**
   * Calls `listener` soon after another process changed the CA hierarchy or the trust bundle, where the engine
   * can tell (PostgreSQL notifications); undefined where it cannot, and the hierarchy is polled instead.
   */
  readonly hierarchyChanges?: (listener: () => void) => () => void;
  /** The lease on the sweeps: SQLite is one machine, whose cluster primary picks the sweeper, so it is always held there. */
  sweeperLease(logger: Logger): SweeperLease;
  close(): Promise<void>;
}

export interface StoreSettings {
  readonly dataDir: string;
  /** postgres:// selects PostgreSQL; unset, SQLite in `dataDir`. */
  readonly url?: string;
  readonly busyTimeoutMs: number;
  readonly poolSize: number;
}

/** Opens (and migrates) the store the settings name. */
export function openStore(settings: StoreSettings): Promise<Store> {
  return settings.url ? openPostgresStore(settings.url, settings) : Promise.resolve(openSqliteStore(join(settings.dataDir, "anchorage.db"), settings));
}

export function openSqliteStore(path: string, { busyTimeoutMs }: { readonly busyTimeoutMs: number }): Store {
  const db = openDatabase(path, { busyTimeoutMs });
  const auditEvents = new SqliteAuditEventRepository(db);
  const certificates = new SqliteCertificateStore(db, auditEvents);
  return {
    engine: "sqlite",
    authorities: new SqliteAuthorityRepository(db),
    consumers: new SqliteTrustBundleConsumerRepository(db),
    certificates,
    revocations: new SqliteRevocationRepository(db, auditEvents),
    ocsp: new SqliteOcspRepository(db),
    crls: new SqliteCrlRepository(db),
    auditEvents,
    apiKeys: new SqliteApiKeyRepository(db),
    enrollmentTokens: new SqliteEnrollmentTokenRepository(db),
    registrations: new SqliteRegistrationRepository(db),
    transparencyLog: new SqliteTransparencyLogRepository(db),
    probeWritable: () => certificates.probeWritable(),
    sweeperLease: () => alwaysHeldLease(),
    close: async () => {
      if (db.open) db.close();
    },
  };
}

export async function openPostgresStore(url: string, { busyTimeoutMs, poolSize }: { readonly busyTimeoutMs: number; readonly poolSize: number }): Promise<Store> {
  const db = await PostgresDatabase.open(url, { poolSize, connectTimeoutMs: busyTimeoutMs, statementTimeoutMs: busyTimeoutMs });
  let feed: PostgresChangeFeed;
  try {
    feed = await PostgresChangeFeed.open(url);
  } catch (error) {
    await db.close();
    throw error;
  }
  const certificates = new PostgresCertificateStore(db);
  const leases: PostgresSweeperLease[] = [];
  return {
    engine: "postgres",
    authorities: new PostgresAuthorityRepository(db),
    consumers: new PostgresTrustBundleConsumerRepository(db),
    certificates,
    revocations: new PostgresRevocationRepository(db),
    ocsp: new PostgresOcspRepository(db, feed),
    crls: new PostgresCrlRepository(db),
    auditEvents: new PostgresAuditEventRepository(db),
    apiKeys: new PostgresApiKeyRepository(db),
    enrollmentTokens: new PostgresEnrollmentTokenRepository(db),
    registrations: new PostgresRegistrationRepository(db),
    transparencyLog: new PostgresTransparencyLogRepository(db),
    probeWritable: () => certificates.probeWritable(),
    hierarchyChanges: (listener) => {
      const unsubscribers = [feed.subscribe("authorities", listener), feed.subscribe("trust_bundle", listener)];
      return () => unsubscribers.forEach((unsubscribe) => unsubscribe());
    },
    sweeperLease: (logger) => {
      const lease = new PostgresSweeperLease(url, logger);
      leases.push(lease);
      return lease;
    },
    close: async () => {
      await Promise.all(leases.map((lease) => lease.stop()));
      await feed.close();
      await db.close();
    },
  };
}

function alwaysHeldLease(): SweeperLease {
  return {
    held: true,
    start: async (listener) => listener(true),
    stop: async () => undefined,
  };
}
