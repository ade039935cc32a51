import type { AuditEventFilter } from "../../../audit/audit-events.js";
import type { QueryResolvers } from "../../generated/resolvers-types.js";
import { parseTimeInput, presentFields } from "../../inputs.js";

export const auditEvents: NonNullable<QueryResolvers["auditEvents"]> = (_parent, args, context) => {
  const { outcome, occurredAfter, occurredBefore, ...equalities } = presentFields(args.filter);
  const filter: AuditEventFilter = {
    ...equalities,
    ...(outcome !== undefined ? { outcome: outcome === "SUCCESS" ? "success" : "failure" } : {}),
    ...(occurredAfter !== undefined ? { occurredAfter: parseTimeInput(occurredAfter, "occurredAfter") } : {}),
    ...(occurredBefore !== undefined ? { occurredBefore: parseTimeInput(occurredBefore, "occurredBefore") } : {}),
  };
  return context.services.auditEvents.list(context.principal, filter, args.first, args.after);
};
