import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const createApiKey: NonNullable<MutationResolvers["createApiKey"]> = (_parent, { input }, context) =>
  context.services.apiKeys.create(context.principal, input);
