/** Records and ports of the authorisation policy: who may obtain which identity. */

export type ApiKeyRole = "ADMIN" | "AUDITOR";

export interface ApiKeyRecord {
  readonly id: string;
  readonly name: string;
  readonly role: ApiKeyRole;
  /** SHA-256 of the key. Keys carry 256 bits of CSPRNG output, so a fast hash is as good as a slow one. */
  readonly keyHash: Buffer;
  readonly createdAt: Date;
  readonly revokedAt: Date | null;
  /** After this the key is refused; null: it lasts until revoked. */
  readonly expiresAt: Date | null;
}

export interface EnrollmentTokenRecord {
  readonly id: string;
  /** SHA-256 of the secret; the secret itself is shown once and never stored. */
  readonly tokenHash: Buffer;
  readonly spiffeId: string;
  readonly dnsNames: readonly string[];
  readonly maxTtlSeconds: number;
  readonly expiresAt: Date;
  readonly usesLeft: number;
  readonly createdBy: string;
  readonly createdAt: Date;
  /** The registration the token was made from; its current entry bounds what the token grants. */
  readonly registrationId?: string | null;
  /** When an admin voided the token; certificate lineages it started stop renewing from then on. */
  readonly revokedAt?: Date | null;
}

/** Which identity a JWT subject (or a token made from the registration) may obtain. */
export interface RegistrationRecord {
  readonly id: string;
  readonly spiffeId: string;
  readonly dnsNames: readonly string[];
  readonly maxTtlSeconds: number;
  /** With `jwtSubject`: the JWT (iss, sub) this registration applies to; both null for token-only ones. */
  readonly jwtIssuer: string | null;
  readonly jwtSubject: string | null;
  readonly createdBy: string;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface RegistrationRepository {
  insert(record: RegistrationRecord): Promise<void>;
  update(record: RegistrationRecord): Promise<void>;
  delete(id: string): Promise<boolean>;
  get(id: string): Promise<RegistrationRecord | undefined>;
  findByJwt(issuer: string, subject: string): Promise<RegistrationRecord | undefined>;
  list(filter: { spiffeIdPrefix?: string }): Promise<RegistrationRecord[]>;
}

export interface ApiKeyRepository {
  insert(record: ApiKeyRecord): Promise<void>;
  findByHash(keyHash: Buffer): Promise<ApiKeyRecord | undefined>;
  get(id: string): Promise<ApiKeyRecord | undefined>;
  list(): Promise<ApiKeyRecord[]>;
  /** Sets revoked_at unless already set; the first revocation time stands. */
  revoke(id: string, at: Date): Promise<void>;
  count(): Promise<number>;
}

/** Token consumption is not here: it is part of the issuance transaction (`IssuanceLedger.prepare`). */
export interface EnrollmentTokenRepository {
  insert(record: EnrollmentTokenRecord): Promise<void>;
  findByHash(tokenHash: Buffer): Promise<EnrollmentTokenRecord | undefined>;
  get(id: string): Promise<EnrollmentTokenRecord | undefined>;
  /** Takes every remaining use away and marks the token revoked (the first time stands); returns how many uses there were. */
  revoke(id: string, at: Date): Promise<number>;
}
