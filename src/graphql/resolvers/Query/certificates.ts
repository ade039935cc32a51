import type { CertificateFilter } from "../../../ca/model.js";
import type { QueryResolvers } from "../../generated/resolvers-types.js";
import { parseTimeInput, presentFields } from "../../inputs.js";

export const certificates: NonNullable<QueryResolvers["certificates"]> = (_parent, args, context) => {
  const { issuerId, issuedAfter, issuedBefore, expiresAfter, expiresBefore, ...equalities } = presentFields(args.filter);
  const filter: CertificateFilter = {
    ...equalities,
    ...(issuerId !== undefined ? { authorityId: issuerId } : {}),
    ...(issuedAfter !== undefined ? { issuedAfter: parseTimeInput(issuedAfter, "issuedAfter") } : {}),
    ...(issuedBefore !== undefined ? { issuedBefore: parseTimeInput(issuedBefore, "issuedBefore") } : {}),
    ...(expiresAfter !== undefined ? { expiresAfter: parseTimeInput(expiresAfter, "expiresAfter") } : {}),
    ...(expiresBefore !== undefined ? { expiresBefore: parseTimeInput(expiresBefore, "expiresBefore") } : {}),
  };
  return context.services.certificates.list(context.principal, filter, args.first, args.after);
};
