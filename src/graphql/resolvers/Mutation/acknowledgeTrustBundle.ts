import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const acknowledgeTrustBundle: NonNullable<MutationResolvers["acknowledgeTrustBundle"]> = (_parent, args, context) => {
  context.services.rotation.acknowledge(args.consumerId, args.sequence);
  return true;
};
