import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const issueCertificate: NonNullable<MutationResolvers["issueCertificate"]> = (_parent, { input }, context) =>
  context.services.issuance.issue(input, context.remoteAddress ? { remoteAddress: context.remoteAddress } : {});
