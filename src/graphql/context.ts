import type { AuditEventService } from "../audit/audit-events.js";
import type { TransparencyLog } from "../audit/transparency-log.js";
import type { AuthorityService } from "../ca/authority-service.js";
import type { CertificateService } from "../ca/certificate-service.js";
import type { RenewalService } from "../ca/renewal-service.js";
import type { RotationService } from "../ca/rotation-service.js";
import type { IssuanceService } from "../ca/issuance-service.js";
import type { ApiKeyService } from "../policy/api-keys.js";
import type { EnrollmentTokenService } from "../policy/enrollment-tokens.js";
import type { Principal } from "../policy/principal.js";
import type { RateLimits } from "../policy/rate-limits.js";
import type { RegistrationService } from "../policy/registrations.js";
import type { RevocationService } from "../revocation/revocation-service.js";

/** The domain services a request may reach. Built once by the composition root. */
export interface Services {
  readonly issuance: IssuanceService;
  readonly enrollmentTokens: EnrollmentTokenService;
  readonly apiKeys: ApiKeyService;
  readonly authorities: AuthorityService;
  readonly certificates: CertificateService;
  readonly revocation: RevocationService;
  readonly auditEvents: AuditEventService;
  readonly transparencyLog: TransparencyLog;
  readonly renewal: RenewalService;
  readonly rotation: RotationService;
  readonly registrations: RegistrationService;
  readonly rateLimits: RateLimits;
}

/** Per-request context, built by the HTTP layer from the connection and headers. */
export interface GraphQLContext {
  readonly services: Services;
  readonly principal: Principal;
  readonly remoteAddress: string | undefined;
  /** DER of the certificate the client presented in the TLS handshake, if any; not yet trusted. */
  readonly clientCertificate: Buffer | undefined;
}
