import type { QueryResolvers } from "../../generated/resolvers-types.js";

export const authorities: NonNullable<QueryResolvers["authorities"]> = (_parent, _args, context) =>
  context.services.authorities.list();
