import type { ApiKeyResolvers } from "../../generated/resolvers-types.js";

export const ApiKey: ApiKeyResolvers = {
  createdAt: (record) => record.createdAt.toISOString(),
  revokedAt: (record) => record.revokedAt?.toISOString() ?? null,
  expiresAt: (record) => record.expiresAt?.toISOString() ?? null,
};
