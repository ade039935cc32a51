import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const retireAuthority: NonNullable<MutationResolvers["retireAuthority"]> = (_parent, args, context) =>
  context.services.rotation.retire(context.principal, args.id, args.force ?? false, context.remoteAddress);
