import { certificateToPem } from "../../../common/pem.js";
import type { IssuedCertificateResolvers } from "../../generated/resolvers-types.js";

export const IssuedCertificate: IssuedCertificateResolvers = {
  certificatePem: (issued) => certificateToPem(issued.certificateDer),
  chainPem: (issued) => issued.chainDer.map(certificateToPem).join(""),
  notBefore: (issued) => issued.notBefore.toISOString(),
  notAfter: (issued) => issued.notAfter.toISOString(),
};
