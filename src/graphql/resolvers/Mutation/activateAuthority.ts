import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const activateAuthority: NonNullable<MutationResolvers["activateAuthority"]> = (_parent, args, context) =>
  context.services.rotation.activate(context.principal, args.id, context.remoteAddress);
