import type { AuditEventResolvers } from "../../generated/resolvers-types.js";

export const AuditEvent: AuditEventResolvers = {
  occurredAt: (record) => record.occurredAt.toISOString(),
  outcome: (record) => (record.outcome === "success" ? "SUCCESS" : "FAILURE"),
};
