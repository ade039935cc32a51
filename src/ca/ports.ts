import type { AuditEvent } from "../audit/audit-log.js";
import type { AuthorityRecord, AuthorityStatus, CertificateFilter, CertificateOrigin, CertificateProfile, CertificateRecord, Page } from "./model.js";

/** Port for the CA records. Implemented in `src/store`. */
export interface AuthorityRepository {
  /** Inserts the record, and the audit event when given, in one transaction. */
  insert(authority: AuthorityRecord, audit?: AuditEvent): Promise<void>;
  /**
   * In one transaction: registers `root` unless it is already known, turns the active intermediate (if any)
   * into a published one, and registers `intermediate` as the active one.
   */
  importHierarchy(root: AuthorityRecord, intermediate: AuthorityRecord): Promise<void>;
  get(id: string): Promise<AuthorityRecord | undefined>;
  list(): Promise<AuthorityRecord[]>;
  setStatus(id: string, status: AuthorityStatus): Promise<void>;
  /** Makes `id` the active intermediate and the one active before it `published`, in one transaction. */
  activate(id: string): Promise<void>;
  /** The current trust bundle version; it goes up whenever the set of published authorities changes. */
  bundleSequence(): Promise<number>;
  /** The first bundle version that published `id`. */
  firstBundleSequenceContaining(id: string): Promise<number | undefined>;
  /** The latest notAfter among the certificates `id` signed (issued or being issued). */
  lastLeafExpiry(id: string): Promise<Date | undefined>;
}

/** A mesh control plane that installs the trust bundle, registered by an admin, and the last version it acknowledged. */
export interface TrustBundleConsumer {
  readonly consumerId: string;
  /** The workload whose certificate may acknowledge for this consumer; null: only admins may. */
  readonly spiffeId: string | null;
  /** 0 until the first acknowledgement. */
  readonly acknowledgedSequence: number;
  readonly acknowledgedAt: Date | null;
  readonly firstSeenAt: Date;
  /** Null for a consumer created by an acknowledgement before consumers were registered. */
  readonly registeredAt: Date | null;
  readonly registeredBy: string | null;
}

export interface TrustBundleConsumerRepository {
  /** Creates the consumer, or rebinds an existing one to `spiffeId` keeping its acknowledged version. */
  register(consumer: { consumerId: string; spiffeId: string | null; registeredBy: string }, now: Date): Promise<TrustBundleConsumer>;
  /** Whether a consumer was removed. */
  unregister(consumerId: string): Promise<boolean>;
  /**
   * Records an acknowledgement of an existing consumer (never creates one); the stored sequence never goes
   * down. Returns the consumer as stored, or undefined when it does not exist.
   */
  acknowledge(consumerId: string, sequence: number, now: Date): Promise<TrustBundleConsumer | undefined>;
  get(consumerId: string): Promise<TrustBundleConsumer | undefined>;
  list(): Promise<TrustBundleConsumer[]>;
  count(): Promise<number>;
}

/** What is written, atomically, before a certificate is signed. */
export interface PreparedIssuance {
  readonly serial: string;
  readonly authorityId: string;
  readonly spiffeId: string;
  readonly dnsNames: readonly string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly keyType: string;
  readonly requester: string;
  readonly tbsDer: Buffer;
  /** Hash of the enrollment token to consume with this reservation, if the request used one. */
  readonly consumeTokenHash?: Buffer;
  /** The certificate a renewal replaces; the reservation fails if it already has a live successor or was revoked. */
  readonly predecessorSerial?: string;
  /** Recorded with the certificate, so that its renewals inherit it. */
  readonly origin?: CertificateOrigin;
  /** A single-use JWT to record as used with this reservation; the reservation fails if it already was. */
  readonly consumeJwt?: JwtUse;
  /** `workload` when absent. Certificates of other profiles carry an empty `spiffeId`. */
  readonly profile?: CertificateProfile;
  readonly audit: AuditEvent;
}

/** One presentation of a JWT that may obtain a certificate only once: remembered until the token expires. */
export interface JwtUse {
  readonly issuer: string;
  readonly tokenId: string;
  /** When the token can no longer verify (its exp plus the clock tolerance); the use is forgotten after that. */
  readonly expiresAt: Date;
}

export interface CompletedIssuance {
  readonly serial: string;
  readonly der: Buffer;
  readonly fingerprintSha256: string;
  readonly audit: AuditEvent;
}

export interface AbandonedIssuance {
  readonly serial: string;
  /** Gives the use back: a request the CA could not serve does not cost the caller its token. */
  readonly refundTokenHash?: Buffer;
  /** Forgets the JWT's use, for the same reason. */
  readonly refundJwt?: JwtUse;
  readonly audit: AuditEvent;
}

/** Outcome of one reservation in a batch. */
export type ReservationResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: "TOKEN_EXHAUSTED" }
  | { readonly ok: false; readonly reason: "SUPERSEDED"; readonly successorSerial: string }
  | { readonly ok: false; readonly reason: "PREDECESSOR_REVOKED" }
  /** A renewal whose origin token was revoked, or whose origin registration was deleted or re-pointed, since authentication. */
  | { readonly ok: false; readonly reason: "ORIGIN_WITHDRAWN" }
  | { readonly ok: false; readonly reason: "JWT_REPLAYED" };

/**
 * The durable side of the issuance cycle (record intent → sign → store). Every method is one
 * transaction per call, and a call with several items commits them together, so a batch costs one commit.
 */
export interface IssuanceLedger {
  /**
   * Reserves serials, stores the TBS and consumes token uses, item by item: an item whose token is used up
   * or expired is left out (its result says so) and the others proceed. `now` decides token expiry.
   */
  prepare(items: readonly PreparedIssuance[], now: Date): Promise<ReservationResult[]>;
  complete(items: readonly CompletedIssuance[], now: Date): Promise<void>;
  abandon(items: readonly AbandonedIssuance[], now: Date): Promise<void>;
  /** Whether this single-use JWT already obtained a certificate (read only: for dry runs). */
  jwtAlreadyUsed(use: JwtUse, now: Date): Promise<boolean>;
}

export interface CertificateQuery {
  get(serial: string, now: Date): Promise<CertificateRecord | undefined>;
  list(filter: CertificateFilter, first: number, after: string | undefined, now: Date): Promise<Page<CertificateRecord>>;
  /** Every match in commit order, read in bounded chunks (for exports of the whole history). */
  iterate(filter: CertificateFilter, now: Date): AsyncIterable<CertificateRecord>;
}

/** The credentials a workload presents for a first certificate. */
export interface IssuanceCredentials {
  readonly token?: string | null;
  readonly jwt?: string | null;
}

/**
 * What a credential entitles its holder to. The CA checks the CSR against it; the policy module decides it.
 * `consumeTokenHash` is set for enrollment tokens, whose use is taken in the same transaction that
 * reserves the serial.
 */
export interface IssuanceGrant {
  readonly requester: string;
  readonly spiffeId: string;
  readonly dnsNames: readonly string[];
  readonly maxTtlSeconds: number;
  readonly consumeTokenHash?: Buffer;
  /** Set for single-use JWTs: recorded as used in the reservation's transaction, like a token's use. */
  readonly consumeJwt?: JwtUse;
  /** The credential this grant comes from (inherited from the predecessor for renewals). */
  readonly origin?: CertificateOrigin;
  /** iPAddress SANs to add; only trusted grants (the service's own certificate) carry them. */
  readonly ipAddresses?: readonly Buffer[];
  /** Set for renewals: the CSR must ask for exactly the grant's identity, and (unless allowed) a new key. */
  readonly renewal?: {
    readonly predecessorSerial: string;
    readonly predecessorSubjectPublicKeyInfo: Buffer;
    readonly allowSameKey: boolean;
  };
}

/**
 * Port implemented by `src/policy`: turns credentials into a grant or throws `UnauthenticatedError`. Never
 * changes state (a token's use is taken by the ledger), so a dry run may call it too.
 */
export interface IssuanceAuthorizer {
  authorize(credentials: IssuanceCredentials, now: Date): IssuanceGrant | Promise<IssuanceGrant>;
}

/**
 * Port implemented by `src/policy`: whether the credential a lineage of `spiffeId` started with still stands.
 * Returns why it does not (revoked token, deleted or re-targeted registration, JWT issuer no longer
 * configured), or undefined.
 */
export interface OriginStanding {
  refusal(origin: CertificateOrigin, spiffeId: string): Promise<string | undefined>;
}
