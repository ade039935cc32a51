import type { QueryResolvers } from "../../generated/resolvers-types.js";

export const registrations: NonNullable<QueryResolvers["registrations"]> = (_parent, args, context) =>
  context.services.registrations.list(context.principal, args.spiffeIdPrefix);
