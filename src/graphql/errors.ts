import { GraphQLError } from "graphql";
import { AnchorageError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";

/** yoga hands every error of a result to this one function: the single place where ours become codes. */
export function createErrorMasker(logger: Logger) {
  return (error: unknown): Error => {
    const original = error instanceof GraphQLError ? (error.originalError ?? undefined) : error;
    if (original instanceof AnchorageError) {
      if (original.code === "INTERNAL") logger.error({ err: original.cause ?? original }, "internal error");
      return new GraphQLError(original.code === "INTERNAL" ? "internal error" : original.message, {
        ...(error instanceof GraphQLError ? { nodes: error.nodes, path: error.path } : {}),
        extensions: { code: original.code },
      });
    }
    // Parse, validation and argument coercion errors: the client's query is at fault, and saying how is safe.
    if (error instanceof GraphQLError && !error.originalError) {
      return new GraphQLError(error.message, {
        nodes: error.nodes,
        path: error.path,
        extensions: { code: "BAD_USER_INPUT" },
      });
    }
    logger.error({ err: original }, "unexpected error while resolving a request");
    return new GraphQLError("internal error", {
      ...(error instanceof GraphQLError ? { path: error.path } : {}),
      extensions: { code: "INTERNAL" },
    });
  };
}

/** The shape of an expected failure inside a batch result. */
export function errorPayload(error: AnchorageError): { code: string; message: string } {
  return { code: error.code, message: error.code === "INTERNAL" ? "internal error" : error.message };
}
