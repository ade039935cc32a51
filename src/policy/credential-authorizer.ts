import type { IssuanceAuthorizer, IssuanceCredentials, IssuanceGrant } from "../ca/ports.js";
import { BadUserInputError, PolicyViolationError, UnauthenticatedError } from "../common/errors.js";
import type { EnrollmentTokenService } from "./enrollment-tokens.js";
import type { JwtAttestor } from "./jwt-attestation.js";
import type { RegistrationRepository } from "./model.js";

/**
 * The credentials a workload may present for a first certificate: an enrollment token, or a signed JWT from an
 * operator-configured issuer. Exactly one of them.
 */
export class CredentialAuthorizer implements IssuanceAuthorizer {
  constructor(
    private readonly tokens: EnrollmentTokenService,
    private readonly jwt: JwtAttestor | undefined,
    private readonly registrations: Pick<RegistrationRepository, "findByJwt">,
    /** Issuers whose subjects get a certificate only through a registration (no claim template fallback). */
    private readonly registrationRequired: ReadonlySet<string> = new Set(),
  ) {}

  async authorize(credentials: IssuanceCredentials, now: Date): Promise<IssuanceGrant> {
    if (credentials.token && credentials.jwt) throw new BadUserInputError("give either an enrollment token or a JWT, not both");
    if (!credentials.jwt) return this.tokens.authorize(credentials, now);
    if (!this.jwt) throw new UnauthenticatedError("this CA accepts no JWTs: no JWT issuer is configured");
    const attestation = await this.jwt.attest(credentials.jwt);
    const requester = `jwt:${attestation.issuer}#${attestation.subject}`;
    // The use is only named here; the ledger records it with the reservation, so a dry run consumes nothing.
    const consumeJwt =
      attestation.singleUse && attestation.tokenId !== undefined
        ? { consumeJwt: { issuer: attestation.issuer, tokenId: attestation.tokenId, expiresAt: attestation.usableUntil } }
        : {};
    const origin = (registrationId: string | null, maxTtlSeconds: number) =>
      ({ kind: "jwt", issuer: attestation.issuer, subject: attestation.subject, registrationId, maxTtlSeconds }) as const;
    // A registration for this exact subject says which identity it obtains, instead of the claim template.
    const registration = await this.registrations.findByJwt(attestation.issuer, attestation.subject);
    if (registration) {
      const maxTtlSeconds = Math.min(registration.maxTtlSeconds, attestation.maxTtlSeconds);
      return {
        requester,
        spiffeId: registration.spiffeId,
        dnsNames: registration.dnsNames,
        maxTtlSeconds,
        ...consumeJwt,
        origin: origin(registration.id, maxTtlSeconds),
      };
    }
    if (this.registrationRequired.has(attestation.issuer)) {
      throw new PolicyViolationError(`no registration maps the JWT subject ${JSON.stringify(attestation.subject.slice(0, 200))} of this issuer`);
    }
    return {
      requester,
      spiffeId: attestation.spiffeId,
      dnsNames: attestation.dnsNames,
      maxTtlSeconds: attestation.maxTtlSeconds,
      ...consumeJwt,
      origin: origin(null, attestation.maxTtlSeconds),
    };
  }
}
