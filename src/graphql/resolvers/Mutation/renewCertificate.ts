import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const renewCertificate: NonNullable<MutationResolvers["renewCertificate"]> = (_parent, { input }, context) =>
  context.services.renewal.renew(context.clientCertificate, input, context.remoteAddress ? { remoteAddress: context.remoteAddress } : {});
