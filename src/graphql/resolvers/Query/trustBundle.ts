import type { QueryResolvers } from "../../generated/resolvers-types.js";

export const trustBundle: NonNullable<QueryResolvers["trustBundle"]> = (_parent, args, context) =>
  context.services.authorities.trustBundle(args.trustDomain);
