import type { QueryResolvers } from "../../generated/resolvers-types.js";

export const apiKeys: NonNullable<QueryResolvers["apiKeys"]> = (_parent, _args, context) => context.services.apiKeys.list(context.principal);
