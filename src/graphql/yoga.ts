import { maxAliasesPlugin } from "@escape.tech/graphql-armor-max-aliases";
import { maxDepthPlugin } from "@escape.tech/graphql-armor-max-depth";
import { maxDirectivesPlugin } from "@escape.tech/graphql-armor-max-directives";
import { maxTokensPlugin } from "@escape.tech/graphql-armor-max-tokens";
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

/**
 * The GraphQL endpoint. Hostile queries are refused before execution by graphql-armor's validation rules
 * (depth, aliases, tokens, directives); HTTP batching stays off (yoga's default), so one request is one
 * operation. The context arrives complete from the HTTP layer.
 */
export function createGraphQLServer(options: { logger: Logger; limits: GraphQLLimits }): AnchorageYoga {
  const { logger, limits } = options;
  return createYoga<RequestContextInput>({
    schema: createSchema<RequestContextInput>({ typeDefs: loadSchemaSdl(), resolvers: resolvers as never }),
    graphqlEndpoint: "/graphql",
    landingPage: false,
    graphiql: false,
    batching: false,
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
