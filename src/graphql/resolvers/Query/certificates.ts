import type { QueryResolvers } from "../../generated/resolvers-types.js";

export const certificates: NonNullable<QueryResolvers["certificates"]> = (_parent, args, context) => {
  const { filter, first, after } = args;
  const page = context.services.certificates.list(
    context.principal,
    {
      ...(filter?.spiffeId != null ? { spiffeId: filter.spiffeId } : {}),
      ...(filter?.spiffeIdPrefix != null ? { spiffeIdPrefix: filter.spiffeIdPrefix } : {}),
      ...(filter?.dnsName != null ? { dnsName: filter.dnsName } : {}),
      ...(filter?.issuerId != null ? { authorityId: filter.issuerId } : {}),
      ...(filter?.requester != null ? { requester: filter.requester } : {}),
      ...(filter?.status != null ? { status: filter.status } : {}),
    },
    first,
    after,
  );
  return {
    edges: page.items.map((node, index) => ({ node, cursor: page.cursors[index] as string })),
    pageInfo: { hasNextPage: page.hasNextPage, endCursor: page.cursors.at(-1) ?? null },
    totalCount: page.totalCount,
  };
};
