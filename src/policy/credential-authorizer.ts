import type { IssuanceAuthorizer, IssuanceCredentials, IssuanceGrant } from "../ca/ports.js";
import { BadUserInputError, UnauthenticatedError } from "../common/errors.js";
import type { EnrollmentTokenService } from "./enrollment-tokens.js";
import type { JwtAttestor } from "./jwt-attestation.js";

/**
 * The credentials a workload may present for a first certificate: an enrollment token, or a signed JWT from an
 * operator-configured issuer. Exactly one of them.
 */
export class CredentialAuthorizer implements IssuanceAuthorizer {
  constructor(
    private readonly tokens: EnrollmentTokenService,
    private readonly jwt: JwtAttestor | undefined,
  ) {}

  async authorize(credentials: IssuanceCredentials, now: Date): Promise<IssuanceGrant> {
    if (credentials.token && credentials.jwt) throw new BadUserInputError("give either an enrollment token or a JWT, not both");
    if (!credentials.jwt) return this.tokens.authorize(credentials, now);
    if (!this.jwt) throw new UnauthenticatedError("this CA accepts no JWTs: no JWT issuer is configured");
    const attestation = await this.jwt.attest(credentials.jwt);
    return {
      requester: `jwt:${attestation.issuer}#${attestation.subject}`,
      spiffeId: attestation.spiffeId,
      dnsNames: attestation.dnsNames,
      maxTtlSeconds: attestation.maxTtlSeconds,
    };
  }
}
