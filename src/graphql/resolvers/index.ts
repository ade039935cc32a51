import type { Resolvers } from "../generated/resolvers-types.js";
import { acknowledgeTrustBundle } from "./Mutation/acknowledgeTrustBundle.js";
import { activateAuthority } from "./Mutation/activateAuthority.js";
import { createApiKey } from "./Mutation/createApiKey.js";
import { createEnrollmentToken } from "./Mutation/createEnrollmentToken.js";
import { createRegistration } from "./Mutation/createRegistration.js";
import { deleteRegistration } from "./Mutation/deleteRegistration.js";
import { explainIssuance } from "./Mutation/explainIssuance.js";
import { issueCertificate } from "./Mutation/issueCertificate.js";
import { issueCertificates } from "./Mutation/issueCertificates.js";
import { registerTrustBundleConsumer } from "./Mutation/registerTrustBundleConsumer.js";
import { renewCertificate } from "./Mutation/renewCertificate.js";
import { revokeApiKey } from "./Mutation/revokeApiKey.js";
import { unregisterTrustBundleConsumer } from "./Mutation/unregisterTrustBundleConsumer.js";
import { retireAuthority } from "./Mutation/retireAuthority.js";
import { updateRegistration } from "./Mutation/updateRegistration.js";
import { revokeCertificate } from "./Mutation/revokeCertificate.js";
import { revokeEnrollmentToken } from "./Mutation/revokeEnrollmentToken.js";
import { apiKeys } from "./Query/apiKeys.js";
import { auditEvents } from "./Query/auditEvents.js";
import { authorities } from "./Query/authorities.js";
import { certificate } from "./Query/certificate.js";
import { certificates } from "./Query/certificates.js";
import { consistencyProof } from "./Query/consistencyProof.js";
import { inclusionProof } from "./Query/inclusionProof.js";
import { registrations } from "./Query/registrations.js";
import { transparencyLog } from "./Query/transparencyLog.js";
import { trustBundle } from "./Query/trustBundle.js";
import { trustBundleConsumers } from "./Query/trustBundleConsumers.js";
import { trustBundleChanged } from "./Subscription/trustBundleChanged.js";
import { ApiKey } from "./types/ApiKey.js";
import { AuditEvent } from "./types/AuditEvent.js";
import { AuditEventConnection } from "./types/AuditEventConnection.js";
import { Authority } from "./types/Authority.js";
import { Certificate } from "./types/Certificate.js";
import { CertificateConnection } from "./types/CertificateConnection.js";
import { CreatedApiKey } from "./types/CreatedApiKey.js";
import { EnrollmentToken } from "./types/EnrollmentToken.js";
import { IssuedCertificate } from "./types/IssuedCertificate.js";
import { Registration } from "./types/Registration.js";
import { TrustBundle } from "./types/TrustBundle.js";
import { TrustBundleConsumer } from "./types/TrustBundleConsumer.js";

export const resolvers: Resolvers = {
  Query: { trustBundle, authorities, certificate, certificates, apiKeys, auditEvents, transparencyLog, inclusionProof, consistencyProof, trustBundleConsumers, registrations },
  Mutation: { createApiKey, createEnrollmentToken, issueCertificate, issueCertificates, revokeCertificate, revokeApiKey, revokeEnrollmentToken, explainIssuance, renewCertificate, acknowledgeTrustBundle, registerTrustBundleConsumer, unregisterTrustBundleConsumer, activateAuthority, retireAuthority, createRegistration, updateRegistration, deleteRegistration },
  Subscription: { trustBundleChanged },
  ApiKey,
  AuditEvent,
  AuditEventConnection,
  Authority,
  Certificate,
  CertificateConnection,
  CreatedApiKey,
  EnrollmentToken,
  IssuedCertificate,
  Registration,
  TrustBundle,
  TrustBundleConsumer,
};
