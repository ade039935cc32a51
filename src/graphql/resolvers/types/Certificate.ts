import { certificateStatus } from "../../../ca/model.js";
import { certificateToPem } from "../../../common/pem.js";
import { isRevocationReason } from "../../../revocation/reasons.js";
import type { CertificateResolvers } from "../../generated/resolvers-types.js";

export const Certificate: CertificateResolvers = {
  certificatePem: (record) => certificateToPem(record.der),
  notBefore: (record) => record.notBefore.toISOString(),
  notAfter: (record) => record.notAfter.toISOString(),
  status: (record, _args, context) => certificateStatus(record, context.services.certificates.now()),
  revokedAt: (record) => record.revokedAt?.toISOString() ?? null,
  revocationReason: (record) =>
    record.revocationReason !== null && isRevocationReason(record.revocationReason) ? record.revocationReason : null,
  issuerId: (record) => record.authorityId,
  issuedAt: (record) => record.issuedAt.toISOString(),
  profile: (record) => (record.profile === "ocsp-responder" ? "OCSP_RESPONDER" : "WORKLOAD"),
};
