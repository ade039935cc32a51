import { certificateToPem } from "../../../common/pem.js";
import type { AuthorityResolvers } from "../../generated/resolvers-types.js";

export const Authority: AuthorityResolvers = {
  kind: (authority) => (authority.kind === "root" ? "ROOT" : "INTERMEDIATE"),
  status: (authority) => (authority.status === "active" ? "ACTIVE" : authority.status === "published" ? "PUBLISHED" : "RETIRED"),
  notBefore: (authority) => authority.notBefore.toISOString(),
  notAfter: (authority) => authority.notAfter.toISOString(),
  certificatePem: (authority) => certificateToPem(authority.certificateDer),
};
