import { AnchorageError } from "../../../common/errors.js";
import { errorPayload } from "../../errors.js";
import type { MutationResolvers } from "../../generated/resolvers-types.js";

/** Each outcome becomes a payload: an error object here is data, not a GraphQL error that would null the list. */
export const issueCertificates: NonNullable<MutationResolvers["issueCertificates"]> = async (_parent, { inputs }, context) => {
  const outcomes = await context.services.issuance.issueBatch(
    inputs,
    context.remoteAddress ? { remoteAddress: context.remoteAddress } : {},
  );
  return outcomes.map((outcome) =>
    outcome instanceof AnchorageError ? { certificate: null, error: errorPayload(outcome) } : { certificate: outcome, error: null },
  );
};
