import { Repeater } from "graphql-yoga";
import type { TrustBundle } from "../../../ca/trust-bundle.js";
import type { SubscriptionResolvers } from "../../generated/resolvers-types.js";

export const trustBundleChanged: NonNullable<SubscriptionResolvers["trustBundleChanged"]> = {
  subscribe: (_parent, args, context) =>
    new Repeater<TrustBundle>(async (push, stop) => {
      // Subscribe before reading the current bundle, so a change in between is not lost.
      const unsubscribe = context.services.rotation.watchTrustBundle(args.trustDomain, (bundle) => void push(bundle));
      await push(context.services.authorities.trustBundle(args.trustDomain));
      await stop;
      unsubscribe();
    }),
  resolve: (bundle: TrustBundle) => bundle,
};
