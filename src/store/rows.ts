/**
 * Rows as both engines return them, and the records they map to. The column names are the same on SQLite and
 * PostgreSQL; only the integer columns differ in type: SQLite gives numbers, pg gives BIGINT as strings, so
 * those columns are `Integer` here and pass through `Number` once.
 */
import type { AuthorityKind, AuthorityRecord, AuthorityStatus } from "../ca/model.js";
import type { TrustBundleConsumer } from "../ca/ports.js";
import type { ApiKeyRecord, ApiKeyRole, EnrollmentTokenRecord, RegistrationRecord } from "../policy/model.js";

/** An INTEGER column (SQLite) or a BIGINT one (PostgreSQL, read as a string). */
export type Integer = number | string;

const dateOf = (millis: Integer): Date => new Date(Number(millis));
const dateOrNull = (millis: Integer | null): Date | null => (millis === null ? null : dateOf(millis));

export interface AuthorityRow {
  id: string;
  kind: AuthorityKind;
  status: AuthorityStatus;
  subject: string;
  certificate_der: Buffer;
  key_label: string | null;
  parent_id: string | null;
  not_before: Integer;
  not_after: Integer;
  created_at: Integer;
}

export const authorityFromRow = (row: AuthorityRow): AuthorityRecord => ({
  id: row.id,
  kind: row.kind,
  status: row.status,
  subject: row.subject,
  certificateDer: row.certificate_der,
  keyLabel: row.key_label,
  parentId: row.parent_id,
  notBefore: dateOf(row.not_before),
  notAfter: dateOf(row.not_after),
  createdAt: dateOf(row.created_at),
});

export interface ConsumerRow {
  consumer_id: string;
  spiffe_id: string | null;
  acknowledged_sequence: Integer;
  acknowledged_at: Integer | null;
  first_seen_at: Integer;
  registered_at: Integer | null;
  registered_by: string | null;
}

export const consumerFromRow = (row: ConsumerRow): TrustBundleConsumer => ({
  consumerId: row.consumer_id,
  spiffeId: row.spiffe_id,
  acknowledgedSequence: Number(row.acknowledged_sequence),
  acknowledgedAt: dateOrNull(row.acknowledged_at),
  firstSeenAt: dateOf(row.first_seen_at),
  registeredAt: dateOrNull(row.registered_at),
  registeredBy: row.registered_by,
});

export interface ApiKeyRow {
  id: string;
  name: string;
  role: ApiKeyRole;
  key_hash: Buffer;
  created_at: Integer;
  revoked_at: Integer | null;
  expires_at: Integer | null;
}

export const apiKeyFromRow = (row: ApiKeyRow): ApiKeyRecord => ({
  id: row.id,
  name: row.name,
  role: row.role,
  keyHash: row.key_hash,
  createdAt: dateOf(row.created_at),
  revokedAt: dateOrNull(row.revoked_at),
  expiresAt: dateOrNull(row.expires_at),
});

export interface EnrollmentTokenRow {
  id: string;
  token_hash: Buffer;
  spiffe_id: string;
  dns_names: string;
  max_ttl_seconds: number;
  expires_at: Integer;
  uses_left: number;
  created_by: string;
  created_at: Integer;
  registration_id: string | null;
  revoked_at: Integer | null;
}

export const enrollmentTokenFromRow = (row: EnrollmentTokenRow): EnrollmentTokenRecord => ({
  id: row.id,
  tokenHash: row.token_hash,
  spiffeId: row.spiffe_id,
  dnsNames: JSON.parse(row.dns_names) as string[],
  maxTtlSeconds: row.max_ttl_seconds,
  expiresAt: dateOf(row.expires_at),
  usesLeft: row.uses_left,
  createdBy: row.created_by,
  createdAt: dateOf(row.created_at),
  registrationId: row.registration_id,
  revokedAt: dateOrNull(row.revoked_at),
});

export interface RegistrationRow {
  id: string;
  spiffe_id: string;
  dns_names: string;
  max_ttl_seconds: number;
  jwt_issuer: string | null;
  jwt_subject: string | null;
  created_by: string;
  created_at: Integer;
  updated_at: Integer;
}

export const registrationFromRow = (row: RegistrationRow): RegistrationRecord => ({
  id: row.id,
  spiffeId: row.spiffe_id,
  dnsNames: JSON.parse(row.dns_names) as string[],
  maxTtlSeconds: row.max_ttl_seconds,
  jwtIssuer: row.jwt_issuer,
  jwtSubject: row.jwt_subject,
  createdBy: row.created_by,
  createdAt: dateOf(row.created_at),
  updatedAt: dateOf(row.updated_at),
});
