import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const revokeEnrollmentToken: NonNullable<MutationResolvers["revokeEnrollmentToken"]> = (_parent, { id }, context) => {
  const record = context.services.enrollmentTokens.revoke(context.principal, id, context.remoteAddress);
  return { id: record.id, spiffeId: record.spiffeId, usesLeft: record.usesLeft };
};
