import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const updateRegistration: NonNullable<MutationResolvers["updateRegistration"]> = (_parent, { id, input }, context) =>
  context.services.registrations.update(context.principal, id, input, context.remoteAddress);
