import type { QueryResolvers } from "../../generated/resolvers-types.js";

export const consistencyProof: NonNullable<QueryResolvers["consistencyProof"]> = async (_parent, args, context) => {
  const proof = await context.services.transparencyLog.consistencyProof(context.principal, args.fromSize, args.toSize);
  return {
    fromSize: proof.fromSize,
    toSize: proof.toSize,
    hashes: proof.hashes.map((hash) => hash.toString("base64")),
    fromCheckpoint: proof.fromCheckpoint?.note ?? null,
    toCheckpoint: proof.toCheckpoint?.note ?? null,
  };
};
