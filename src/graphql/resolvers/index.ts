import type { Resolvers } from "../generated/resolvers-types.js";
import { createApiKey } from "./Mutation/createApiKey.js";
import { createEnrollmentToken } from "./Mutation/createEnrollmentToken.js";
import { issueCertificate } from "./Mutation/issueCertificate.js";
import { issueCertificates } from "./Mutation/issueCertificates.js";
import { revokeCertificate } from "./Mutation/revokeCertificate.js";
import { authorities } from "./Query/authorities.js";
import { certificate } from "./Query/certificate.js";
import { certificates } from "./Query/certificates.js";
import { trustBundle } from "./Query/trustBundle.js";
import { Authority } from "./types/Authority.js";
import { Certificate } from "./types/Certificate.js";
import { EnrollmentToken } from "./types/EnrollmentToken.js";
import { IssuedCertificate } from "./types/IssuedCertificate.js";
import { TrustBundle } from "./types/TrustBundle.js";

export const resolvers: Resolvers = {
  Query: { trustBundle, authorities, certificate, certificates },
  Mutation: { createApiKey, createEnrollmentToken, issueCertificate, issueCertificates, revokeCertificate },
  Authority,
  Certificate,
  EnrollmentToken,
  IssuedCertificate,
  TrustBundle,
};
