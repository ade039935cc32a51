import { getOperationAST, GraphQLError } from "graphql";
import type { Plugin } from "graphql-yoga";
import { AnchorageError } from "../common/errors.js";
import { requireMayChangeState } from "../policy/api-keys.js";
import type { GraphQLContext } from "./context.js";

/**
 * Refuses every mutation to read-only roles before any resolver runs, so no mutation added later can forget
 * the check. The decision itself is the policy module's.
 */
export function useReadOnlyRoles(): Plugin<GraphQLContext> {
  return {
    onExecute: ({ args, setResultAndStopExecution }) => {
      const operation = getOperationAST(args.document, args.operationName);
      if (operation?.operation !== "mutation") return;
      try {
        requireMayChangeState(args.contextValue.principal);
      } catch (error) {
        if (!(error instanceof AnchorageError)) throw error;
        setResultAndStopExecution({ errors: [new GraphQLError(error.message, { extensions: { code: error.code } })] });
      }
    },
  };
}
