import type { QueryResolvers } from "../../generated/resolvers-types.js";

export const certificate: NonNullable<QueryResolvers["certificate"]> = (_parent, args, context) =>
  context.services.certificates.get(context.principal, args.serial, context.clientCertificate) ?? null;
