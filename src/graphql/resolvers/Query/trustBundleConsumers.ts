import type { QueryResolvers } from "../../generated/resolvers-types.js";

export const trustBundleConsumers: NonNullable<QueryResolvers["trustBundleConsumers"]> = (_parent, _args, context) =>
  context.services.rotation.consumers(context.principal);
