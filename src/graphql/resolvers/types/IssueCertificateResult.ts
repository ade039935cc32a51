import { AnchorageError } from "../../../common/errors.js";
import { errorPayload } from "../../errors.js";
import type { IssueCertificateResultResolvers } from "../../generated/resolvers-types.js";

export const IssueCertificateResult: IssueCertificateResultResolvers = {
  certificate: (outcome) => (outcome instanceof AnchorageError ? null : outcome),
  error: (outcome) => (outcome instanceof AnchorageError ? errorPayload(outcome) : null),
};
