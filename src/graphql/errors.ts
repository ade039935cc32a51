import { GraphQLError } from "graphql";
import type { Plugin } from "graphql-yoga";
import { AnchorageError, RateLimitedError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";

/** yoga hands every error of a result to this one function: the single place where ours become codes. */
export function createErrorMasker(logger: Logger) {
  return (error: unknown): Error => {
    const original = error instanceof GraphQLError ? (error.originalError ?? undefined) : error;
    if (original instanceof AnchorageError) {
      if (original.code === "INTERNAL") logger.error({ err: original.cause ?? original }, "internal error");
      return new GraphQLError(original.code === "INTERNAL" ? "internal error" : original.message, {
        ...(error instanceof GraphQLError ? { nodes: error.nodes, path: error.path } : {}),
        extensions: { code: original.code, ...retryHint(original) },
      });
    }
    // Parse, validation and argument coercion errors: the client's query is at fault, and saying how is safe.
    // graphql-js wraps a bad variable value's own GraphQLError in another one, hence the second test.
    // yoga's own refusals (CSRF prevention, a mutation over GET) carry their HTTP status in `extensions.http`,
    // which yoga turns into the response status and never sends: keep it, so that they answer 403 or 405.
    if (error instanceof GraphQLError && (!error.originalError || error.originalError instanceof GraphQLError)) {
      const http = error.extensions?.http;
      return new GraphQLError(error.message, {
        nodes: error.nodes,
        path: error.path,
        extensions: { code: "BAD_USER_INPUT", ...(http === undefined ? {} : { http }) },
      });
    }
    logger.error({ err: original }, "unexpected error while resolving a request");
    return new GraphQLError("internal error", {
      ...(error instanceof GraphQLError ? { path: error.path } : {}),
      extensions: { code: "INTERNAL" },
    });
  };
}

/** `retryAfterSeconds` for a refusal that waiting will cure; nothing otherwise. */
export function retryHint(error: AnchorageError): { retryAfterSeconds?: number } {
  return error instanceof RateLimitedError ? { retryAfterSeconds: error.retryAfterSeconds } : {};
}

/** The shape of an expected failure inside a batch result. */
export function errorPayload(error: AnchorageError): { code: string; message: string; retryAfterSeconds: number | null } {
  return {
    code: error.code,
    message: error.code === "INTERNAL" ? "internal error" : error.message,
    retryAfterSeconds: retryHint(error).retryAfterSeconds ?? null,
  };
}

/**
 * yoga reports parse and validation failures itself, without passing them through `maskError`, and gives
 * them codes outside our fixed set (GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED). This plugin gives
 * them BAD_USER_INPUT, keeping the message, the locations and yoga's HTTP status.
 */
export function useClientErrorCodes(): Plugin {
  const recode = (error: Error): GraphQLError =>
    error instanceof GraphQLError ? recodeGraphQLError(error) : new GraphQLError(error.message, { extensions: { code: "BAD_USER_INPUT" } });
  const recodeGraphQLError = (error: GraphQLError): GraphQLError =>
    new GraphQLError(error.message, {
      nodes: error.nodes,
      source: error.source,
      positions: error.positions,
      path: error.path,
      originalError: error.originalError,
      extensions: { ...error.extensions, code: "BAD_USER_INPUT" },
    });
  return {
    onValidate: () => ({ result, setResult }) => {
      if (result.length > 0) setResult(result.map(recode));
    },
    onParse: () => ({ result, replaceParseResult }) => {
      if (result instanceof GraphQLError) replaceParseResult(recode(result));
    },
  };
}
