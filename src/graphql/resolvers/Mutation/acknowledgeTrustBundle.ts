import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const acknowledgeTrustBundle: NonNullable<MutationResolvers["acknowledgeTrustBundle"]> = async (_parent, args, context) => {
  await context.services.rotation.acknowledge(context.principal, context.clientCertificate, args.consumerId, args.sequence, context.remoteAddress);
  return true;
};
