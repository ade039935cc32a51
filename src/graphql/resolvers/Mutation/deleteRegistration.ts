import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const deleteRegistration: NonNullable<MutationResolvers["deleteRegistration"]> = (_parent, { id }, context) =>
  context.services.registrations.delete(context.principal, id, context.remoteAddress);
