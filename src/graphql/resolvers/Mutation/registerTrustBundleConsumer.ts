import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const registerTrustBundleConsumer: NonNullable<MutationResolvers["registerTrustBundleConsumer"]> = (_parent, { input }, context) =>
  context.services.rotation.registerConsumer(context.principal, input, context.remoteAddress);
