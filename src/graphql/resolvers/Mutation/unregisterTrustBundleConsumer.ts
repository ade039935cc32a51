import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const unregisterTrustBundleConsumer: NonNullable<MutationResolvers["unregisterTrustBundleConsumer"]> = async (_parent, args, context) => {
  await context.services.rotation.unregisterConsumer(context.principal, args.consumerId, context.remoteAddress);
  return true;
};
