import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const revokeCertificate: NonNullable<MutationResolvers["revokeCertificate"]> = (_parent, { input }, context) =>
  context.services.revocation.revoke(context.principal, input.serial, input.reason ?? undefined, context.clientCertificate);
