import { maxAliasesPlugin } from "@escape.tech/graphql-armor-max-aliases";
import { maxDepthPlugin } from "@escape.tech/graphql-armor-max-depth";
import { maxDirectivesPlugin } from "@escape.tech/graphql-armor-max-directives";
import { maxTokensPlugin } from "@escape.tech/graphql-armor-max-tokens";
import { useCSRFPrevention } from "@graphql-yoga/plugin-csrf-prevention";
import { useDisableIntrospection } from "@graphql-yoga/plugin-disable-introspection";
import { createSchema, createYoga, type YogaServerInstance } from "graphql-yoga";
import type { Logger } from "../common/logger.js";
import type { GraphQLContext } from "./context.js";
import { createErrorMasker, useClientErrorCodes } from "./errors.js";
import { useOneIssuanceFieldWithoutApiKey } from "./issuance-fields.js";
import { useReadOnlyRoles } from "./read-only-roles.js";
import { resolvers } from "./resolvers/index.js";
import { loadSchemaSdl } from "./schema.js";

export interface GraphQLLimits {
  readonly maxQueryDepth: number;
  readonly maxAliases: number;
  readonly maxTokens: number;
}

/** What the HTTP layer adds to each request for the context factory. */
export type RequestContextInput = Omit<GraphQLContext, never>;

export type AnchorageYoga = YogaServerInstance<RequestContextInput, object>;

/** A header no browser sends cross-origin without a CORS preflight; clients that send no JSON body (GET) add it. */
export const CSRF_HEADER = "x-graphql-yoga-csrf";

/**
 * The GraphQL endpoint. Hostile queries are refused before execution by graphql-armor's validation rules
 * (depth, aliases, tokens, directives); HTTP batching stays off (yoga's default), so one request is one
 * operation. The context arrives complete from the HTTP layer.
 *
 * Browsers: clients of this CA authenticate with a client certificate that a browser may hold, so a page on
 * another origin must neither read answers (CORS is off unless origins are configured) nor run mutations with
 * a request that needs no preflight (form-encoded, multipart or text/plain bodies, GET without CSRF_HEADER).
 */
export function createGraphQLServer(options: { logger: Logger; limits: GraphQLLimits; corsOrigins: readonly string[] }): AnchorageYoga {
  const { logger, limits, corsOrigins } = options;
  return createYoga<RequestContextInput>({
    schema: createSchema<RequestContextInput>({ typeDefs: loadSchemaSdl(), resolvers: resolvers as never }),
    graphqlEndpoint: "/graphql",
    landingPage: false,
    graphiql: false,
    batching: false,
    cors: corsOrigins.length > 0 ? { origin: [...corsOrigins], credentials: true, methods: ["GET", "POST"] } : false,
    // The HTTP layer has already bounded and buffered the body; yoga's own limit would stream it again.
    maxRequestBodySize: false,
    logging: {
      debug: (...args) => logger.debug({ args }, "yoga"),
      info: (...args) => logger.info({ args }, "yoga"),
      warn: (...args) => logger.warn({ args }, "yoga"),
      error: (...args) => logger.error({ args }, "yoga"),
    },
    maskedErrors: { maskError: createErrorMasker(logger) },
    plugins: [
      useCSRFPrevention({ requestHeaders: [CSRF_HEADER] }),
      // The schema is no secret to operators; to anyone else it is a map of what to try.
      useDisableIntrospection({ isDisabled: (_request, context) => !isAdmin(context as Partial<RequestContextInput>) }),
      maxTokensPlugin({ n: limits.maxTokens }),
      // Introspection counts too: it is the deepest thing this schema can be asked for.
      maxDepthPlugin({ n: limits.maxQueryDepth, flattenFragments: true, ignoreIntrospection: false }),
      maxAliasesPlugin({ n: limits.maxAliases }),
      maxDirectivesPlugin({ n: 20 }),
      useClientErrorCodes(),
      useReadOnlyRoles(),
      useOneIssuanceFieldWithoutApiKey(),
    ],
  });
}

function isAdmin(context: Partial<RequestContextInput>): boolean {
  return context.principal?.kind === "apiKey" && context.principal.role === "ADMIN";
}
