import type { AuditEvent } from "../audit/audit-log.js";
import type { AuthorityRecord, AuthorityStatus, CertificateFilter, CertificateRecord, Page } from "./model.js";

/** Port for the CA records. Implemented in `src/store`. */
export interface AuthorityRepository {
  insert(authority: AuthorityRecord): void;
  get(id: string): AuthorityRecord | undefined;
  list(): AuthorityRecord[];
  setStatus(id: string, status: AuthorityStatus): void;
  /** Makes `id` the active intermediate and the one active before it `published`, in one transaction. */
  activate(id: string): void;
  /** The current trust bundle version; it goes up whenever the set of published authorities changes. */
  bundleSequence(): number;
  /** The first bundle version that published `id`. */
  firstBundleSequenceContaining(id: string): number | undefined;
  /** The latest notAfter among the certificates `id` signed (issued or being issued). */
  lastLeafExpiry(id: string): Date | undefined;
}

/** A mesh control plane's last acknowledged trust bundle version. */
export interface TrustBundleConsumer {
  readonly consumerId: string;
  readonly acknowledgedSequence: number;
  readonly acknowledgedAt: Date;
  readonly firstSeenAt: Date;
}

export interface TrustBundleConsumerRepository {
  /** Records an acknowledgement; the stored sequence never goes down. Returns the consumer as stored. */
  acknowledge(consumerId: string, sequence: number, now: Date): TrustBundleConsumer;
  get(consumerId: string): TrustBundleConsumer | undefined;
  list(): TrustBundleConsumer[];
  count(): number;
}

/** What a certificate is for; workload unless said otherwise. */
export type CertificateProfile = "workload" | "ocsp-responder";

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
  /** The certificate a renewal replaces; the reservation fails if it already has a live successor. */
  readonly predecessorSerial?: string;
  /** `workload` when absent. Certificates of other profiles carry an empty `spiffeId`. */
  readonly profile?: CertificateProfile;
  readonly audit: AuditEvent;
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
  readonly audit: AuditEvent;
}

/** Outcome of one reservation in a batch. */
export type ReservationResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: "TOKEN_EXHAUSTED" }
  | { readonly ok: false; readonly reason: "SUPERSEDED"; readonly successorSerial: string };

/**
 * The durable side of the issuance cycle (DESIGN.md: record intent → sign → store). Every method is one
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
}

export interface CertificateQuery {
  get(serial: string, now: Date): CertificateRecord | undefined;
  list(filter: CertificateFilter, first: number, after: string | undefined, now: Date): Page<CertificateRecord>;
  /** Every match in commit order, read in bounded chunks (for exports of the whole history). */
  iterate(filter: CertificateFilter, now: Date): Iterable<CertificateRecord>;
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
