import type { MutationResolvers } from "../../generated/resolvers-types.js";

export const explainIssuance: NonNullable<MutationResolvers["explainIssuance"]> = async (_parent, { input }, context) => {
  const decision = await context.services.issuance.explain(input);
  return {
    allowed: decision.allowed,
    refusals: [...decision.refusals],
    requester: decision.requester ?? null,
    spiffeId: decision.spiffeId ?? null,
    dnsNames: decision.dnsNames ? [...decision.dnsNames] : null,
    keyType: decision.keyType ?? null,
    certificate: decision.certificate
      ? {
          issuerId: decision.certificate.issuerId,
          notBefore: decision.certificate.notBefore.toISOString(),
          notAfter: decision.certificate.notAfter.toISOString(),
          ttlSeconds: decision.certificate.ttlSeconds,
        }
      : null,
  };
};
