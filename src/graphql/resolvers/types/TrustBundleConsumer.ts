import type { TrustBundleConsumerResolvers } from "../../generated/resolvers-types.js";

export const TrustBundleConsumer: TrustBundleConsumerResolvers = {
  acknowledgedAt: (consumer) => consumer.acknowledgedAt?.toISOString() ?? null,
  registeredAt: (consumer) => consumer.registeredAt?.toISOString() ?? null,
};
