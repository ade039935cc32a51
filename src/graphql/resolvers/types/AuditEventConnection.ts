import type { AuditEventConnectionResolvers } from "../../generated/resolvers-types.js";

export const AuditEventConnection: AuditEventConnectionResolvers = {
  edges: (page) => page.items.map((node, index) => ({ node, cursor: page.cursors[index] as string })),
  pageInfo: (page) => ({ hasNextPage: page.hasNextPage, endCursor: page.cursors.at(-1) ?? null }),
  totalCount: (page) => page.countTotal(),
};
