import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const createRegistration: NonNullable<MutationResolvers["createRegistration"]> = (_parent, { input }, context) =>
  context.services.registrations.create(context.principal, input, context.remoteAddress);
