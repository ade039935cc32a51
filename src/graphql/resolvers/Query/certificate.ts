import type { QueryResolvers } from "../../generated/resolvers-types.js";

export const certificate: NonNullable<QueryResolvers["certificate"]> = async (_parent, args, context) =>
  (await context.services.certificates.get(context.principal, args.serial, context.clientCertificate)) ?? null;
