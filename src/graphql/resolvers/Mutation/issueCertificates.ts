import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const issueCertificates: NonNullable<MutationResolvers["issueCertificates"]> = (_parent, { inputs }, context) =>
  context.services.issuance.issueBatch(inputs, context.remoteAddress ? { remoteAddress: context.remoteAddress } : {});
