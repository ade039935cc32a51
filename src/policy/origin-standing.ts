import type { OriginStanding } from "../ca/ports.js";
import type { CertificateOrigin } from "../ca/model.js";
import type { EnrollmentTokenRepository, RegistrationRepository } from "./model.js";

/**
 * Whether the credential a certificate lineage started with still stands: the enrollment token not revoked,
 * the registration not deleted, the JWT issuer still configured. An expired or used-up token still stands:
 * renewal exists so that a workload does not need its first credential again.
 */
export class CredentialStanding implements OriginStanding {
  constructor(
    private readonly deps: {
      readonly tokens: Pick<EnrollmentTokenRepository, "get">;
      readonly registrations: Pick<RegistrationRepository, "get">;
      /** The `iss` of every configured JWT issuer. */
      readonly jwtIssuers: ReadonlySet<string>;
    },
  ) {}

  async refusal(origin: CertificateOrigin, spiffeId: string): Promise<string | undefined> {
    if (origin.kind === "system") return undefined;
    if (origin.kind === "token") {
      const token = await this.deps.tokens.get(origin.tokenId);
      if (!token) return `the enrollment token ${origin.tokenId} its lineage started with no longer exists`;
      if (token.revokedAt) return `the enrollment token ${origin.tokenId} its lineage started with was revoked at ${token.revokedAt.toISOString()}`;
    }
    if (origin.kind === "jwt" && !this.deps.jwtIssuers.has(origin.issuer)) {
      return `the JWT issuer ${JSON.stringify(origin.issuer)} its lineage started with is no longer configured`;
    }
    if (origin.registrationId !== null) {
      const registration = await this.deps.registrations.get(origin.registrationId);
      if (!registration) return `the registration ${origin.registrationId} its lineage started with was deleted`;
      if (registration.spiffeId !== spiffeId) {
        return `the registration ${origin.registrationId} its lineage started with is now for ${registration.spiffeId}`;
      }
    }
    return undefined;
  }
}
