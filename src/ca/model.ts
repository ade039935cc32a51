/** Records the CA core reads and writes through its ports. */
import type { Page } from "../common/page.js";

export type { Page };

export type AuthorityKind = "root" | "intermediate";

/**
 * `active`: issues (exactly one intermediate at a time) or, for a root, is a trust anchor.
 * `published`: in the trust bundle but not issuing (prepared for rotation, or rotated out with leaves alive).
 * `retired`: no longer published.
 */
export type AuthorityStatus = "active" | "published" | "retired";

export interface AuthorityRecord {
  /** Lower-case hex of the subject key identifier: stable, derived from the key, used in URLs. */
  readonly id: string;
  readonly kind: AuthorityKind;
  readonly status: AuthorityStatus;
  readonly subject: string;
  readonly certificateDer: Buffer;
  /** Label of the signing key on the online token; null for a root, whose key never is there. */
  readonly keyLabel: string | null;
  readonly parentId: string | null;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly createdAt: Date;
}

export type KeyType = "ec" | "rsa";

export type CertificateStatus = "VALID" | "EXPIRED" | "REVOKED";

/** A workload certificate as stored. `der` is absent only while the row is reserved and not yet signed. */
export interface CertificateRecord {
  readonly serial: string;
  readonly authorityId: string;
  readonly spiffeId: string;
  readonly dnsNames: readonly string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly keyType: string;
  readonly requester: string;
  readonly der: Buffer;
  readonly fingerprintSha256: string;
  readonly issuedAt: Date;
  readonly revokedAt: Date | null;
  readonly revocationReason: string | null;
  /** The credential the lineage started with; null for certificates issued before origins were recorded. */
  readonly origin?: CertificateOrigin | null;
  /** What the certificate is for; `workload` when absent. */
  readonly profile?: CertificateProfile;
}

/** Workload certificates (X.509-SVIDs), or the delegated OCSP responder certificates an intermediate signs. */
export type CertificateProfile = "workload" | "ocsp-responder";

/**
 * The credential a lineage of certificates started with, and the longest lifetime it allowed. Renewals inherit
 * both: they never outlive the cap, and stop once the credential is revoked or deleted.
 */
export type CertificateOrigin =
  | { readonly kind: "token"; readonly tokenId: string; readonly registrationId: string | null; readonly maxTtlSeconds: number }
  | { readonly kind: "jwt"; readonly issuer: string; readonly subject: string; readonly registrationId: string | null; readonly maxTtlSeconds: number }
  | { readonly kind: "system"; readonly maxTtlSeconds: number };

export interface CertificateFilter {
  readonly serial?: string;
  readonly spiffeId?: string;
  readonly spiffeIdPrefix?: string;
  readonly dnsName?: string;
  readonly authorityId?: string;
  readonly requester?: string;
  readonly status?: CertificateStatus;
  /** Issued at or after (inclusive) and before (exclusive). */
  readonly issuedAfter?: Date;
  readonly issuedBefore?: Date;
  /** notAfter at or after (inclusive) and before (exclusive). */
  readonly expiresAfter?: Date;
  readonly expiresBefore?: Date;
}

export function certificateStatus(record: CertificateRecord, now: Date): CertificateStatus {
  if (record.revokedAt) return "REVOKED";
  return record.notAfter.getTime() <= now.getTime() ? "EXPIRED" : "VALID";
}

export type CertificatePage = Page<CertificateRecord>;
