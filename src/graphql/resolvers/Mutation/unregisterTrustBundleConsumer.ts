import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const unregisterTrustBundleConsumer: NonNullable<MutationResolvers["unregisterTrustBundleConsumer"]> = (_parent, args, context) => {
  context.services.rotation.unregisterConsumer(context.principal, args.consumerId, context.remoteAddress);
  return true;
};
