import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const createEnrollmentToken: NonNullable<MutationResolvers["createEnrollmentToken"]> = (_parent, { input }, context) =>
  context.services.enrollmentTokens.create(context.principal, input);
