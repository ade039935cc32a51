import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const revokeEnrollmentToken: NonNullable<MutationResolvers["revokeEnrollmentToken"]> = async (_parent, { id }, context) => {
  const record = await context.services.enrollmentTokens.revoke(context.principal, id, context.remoteAddress);
  return { id: record.id, spiffeId: record.spiffeId, usesLeft: record.usesLeft };
};
