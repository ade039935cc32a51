import { getOperationAST, GraphQLError, Kind, type FragmentDefinitionNode, type SelectionSetNode } from "graphql";
import type { Plugin } from "graphql-yoga";
import { BadUserInputError } from "../common/errors.js";
import type { GraphQLContext } from "./context.js";

/** The mutations that reach the CSR parser and the HSM. */
const ISSUANCE_FIELDS: ReadonlySet<string> = new Set(["issueCertificate", "issueCertificates", "renewCertificate"]);

/**
 * Refuses, before execution, an operation of a caller without an API key that selects more than one issuance
 * field (aliases count): without it, one small request fans out into aliases × batch items of work and
 * refusals. A workload needs one field per request (a batch is one field); operators with a key are trusted
 * with more. BAD_USER_INPUT rather than RATE_LIMITED: the request's shape is at fault, and waiting will not
 * make it acceptable.
 */
export function useOneIssuanceFieldWithoutApiKey(): Plugin<GraphQLContext> {
  return {
    onExecute: ({ args, setResultAndStopExecution }) => {
      if (args.contextValue.principal.kind === "apiKey") return;
      const operation = getOperationAST(args.document, args.operationName);
      if (operation?.operation !== "mutation") return;
      const fragments = new Map<string, FragmentDefinitionNode>();
      for (const definition of args.document.definitions) {
        if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
      }
      if (issuanceFields(operation.selectionSet, fragments, new Set()) <= 1) return;
      const error = new BadUserInputError("an operation without an API key may hold only one issuance field (issueCertificate, issueCertificates or renewCertificate); use issueCertificates for several certificates");
      setResultAndStopExecution({ errors: [new GraphQLError(error.message, { extensions: { code: error.code } })] });
    },
  };
}

function issuanceFields(selectionSet: SelectionSetNode, fragments: ReadonlyMap<string, FragmentDefinitionNode>, visited: Set<string>): number {
  let count = 0;
  for (const selection of selectionSet.selections) {
    if (selection.kind === Kind.FIELD) {
      if (ISSUANCE_FIELDS.has(selection.name.value)) count += 1;
    } else if (selection.kind === Kind.INLINE_FRAGMENT) {
      count += issuanceFields(selection.selectionSet, fragments, visited);
    } else {
      const name = selection.name.value;
      const fragment = fragments.get(name);
      // Validation has already refused fragment cycles; the set only keeps this walk finite regardless.
      if (!fragment || visited.has(name)) continue;
      visited.add(name);
      count += issuanceFields(fragment.selectionSet, fragments, visited);
    }
  }
  return count;
}
