import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const revokeApiKey: NonNullable<MutationResolvers["revokeApiKey"]> = (_parent, { id }, context) =>
  context.services.apiKeys.revoke(context.principal, id, context.remoteAddress);
