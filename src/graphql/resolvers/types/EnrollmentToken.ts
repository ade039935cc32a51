import type { EnrollmentTokenResolvers } from "../../generated/resolvers-types.js";

export const EnrollmentToken: EnrollmentTokenResolvers = {
  id: (created) => created.record.id,
  spiffeId: (created) => created.record.spiffeId,
  dnsNames: (created) => created.record.dnsNames,
  maxTtlSeconds: (created) => created.record.maxTtlSeconds,
  expiresAt: (created) => created.record.expiresAt.toISOString(),
  usesLeft: (created) => created.record.usesLeft,
};
