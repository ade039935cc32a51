import type { AuditEvent } from "../audit/audit-log.js";

/** The current CRL of one authority, as served at /crl/<authority-id>.crl. */
export interface StoredCrl {
  readonly authorityId: string;
  readonly crlNumber: bigint;
  readonly der: Buffer;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
}

/** Port implemented by the store. `save` refuses a CRL number that does not go up. */
export interface CrlRepository {
  save(crl: StoredCrl): Promise<void>;
  get(authorityId: string): Promise<StoredCrl | undefined>;
}

/** One entry of a CRL, as the store hands it out. */
export interface RevokedEntry {
  readonly serial: string;
  readonly revokedAt: Date;
  readonly reason: string;
  /** The certificate's notAfter: once a scheduled CRL issued after it has listed the entry, it may drop off. */
  readonly notAfter: Date;
}

/** A later certificate of a lineage, revoked together with the one named. */
export interface RevokedSuccessor {
  readonly serial: string;
  readonly authorityId: string;
}

export type RevocationOutcome =
  | { readonly kind: "revoked"; readonly authorityId: string; readonly successors: readonly RevokedSuccessor[] }
  | { readonly kind: "already-revoked"; readonly authorityId: string; readonly successors: readonly RevokedSuccessor[] }
  | { readonly kind: "not-found" };

/** Port implemented by the store: revocation records and CRL numbering. */
export interface RevocationRepository {
  /**
   * Marks an issued certificate revoked and appends the audit event, in one transaction. A certificate that
   * is already revoked keeps its first time and reason (the call is idempotent); nothing is written then.
   *
   * With `successorAudit`, every later certificate of its lineage (renewals of renewals, including one still
   * being signed) that is neither revoked nor expired yet is revoked too, with the same reason and time and an event of its
   * own, in the same transaction — also when the certificate itself was already revoked.
   */
  revoke(serial: string, reason: string, revokedAt: Date, audit: AuditEvent, successorAudit?: (serial: string) => AuditEvent): Promise<RevocationOutcome>;
  /**
   * Revoked certificates of an authority that its CRL must still list, streamed (CRLs can be large): every
   * one except those already recorded with `recordListedAfterExpiry`.
   */
  revokedEntries(authorityId: string): AsyncIterable<RevokedEntry>;
  /**
   * Records that these expired certificates appeared on a scheduled CRL issued at `thisUpdate`, after their
   * expiry (RFC 5280 §3.3): later CRLs need not list them. Only the first such CRL is kept.
   */
  recordListedAfterExpiry(authorityId: string, serials: readonly string[], thisUpdate: Date): Promise<void>;
  /** The next CRL number of an authority: strictly greater than any reserved before. */
  reserveCrlNumber(authorityId: string): Promise<bigint>;
}

/** A delegated OCSP responder certificate and the label of its key on the online token. */
export interface OcspSignerRecord {
  readonly keyLabel: string;
  readonly authorityId: string;
  readonly certificateDer: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly createdAt: Date;
}

export type CertIdHash = "sha1" | "sha256";

export interface StoredOcspResponse {
  readonly authorityId: string;
  readonly serial: string;
  readonly hashAlgorithm: CertIdHash;
  readonly der: Buffer;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
}

export type CertificateRevocationStatus =
  | { readonly kind: "good" }
  | { readonly kind: "revoked"; readonly revokedAt: Date; readonly reason: string }
  | { readonly kind: "unknown" };

/** Port implemented by the store: responder certificates and pre-signed responses. */
export interface OcspRepository {
  newestSigner(authorityId: string): Promise<OcspSignerRecord | undefined>;
  insertSigner(record: OcspSignerRecord): Promise<void>;
  /**
   * Claims the creation of an issuer's next responder certificate for the calling process: true unless
   * another process claimed it after `staleBefore` (and may still be at it).
   */
  claimSignerCreation(authorityId: string, now: Date, staleBefore: Date): Promise<boolean>;
  getResponse(authorityId: string, serial: string, hashAlgorithm: CertIdHash): Promise<StoredOcspResponse | undefined>;
  /**
   * Stores a response signed for a certificate whose status was `signedStatus`, unless that status has
   * changed since (a revocation raced the signature) or a newer response is already there. Returns whether
   * it was stored. The check and the write are one transaction.
   */
  saveResponse(response: StoredOcspResponse, signedStatus: CertificateRevocationStatus["kind"]): Promise<boolean>;
  /** `saveResponse` for several responses in one transaction; returns those stored. */
  saveResponses(
    items: readonly { response: StoredOcspResponse; signedStatus: CertificateRevocationStatus["kind"] }[],
  ): Promise<StoredOcspResponse[]>;
  /** The status of `serial` as issued by `authorityId`; `unknown` when that authority never issued it. */
  status(authorityId: string, serial: string): Promise<CertificateRevocationStatus>;
  /** Stored responses of unexpired certificates whose nextUpdate is before `before`, oldest first. */
  responsesDue(before: Date, now: Date, limit: number): Promise<{ authorityId: string; serial: string; hashAlgorithm: CertIdHash }[]>;
  /** Drops stored responses of certificates that expired before `now`. */
  deleteExpired(now: Date): Promise<number>;
  /**
   * A number that changes whenever another connection (another service process, an operator tool) has
   * committed to the database since the last call; this process's own writes do not change it.
   */
  externalChangeCounter(): number;
}
