import type { CreatedApiKeyResolvers } from "../../generated/resolvers-types.js";

export const CreatedApiKey: CreatedApiKeyResolvers = {
  expiresAt: (created) => created.expiresAt?.toISOString() ?? null,
};
