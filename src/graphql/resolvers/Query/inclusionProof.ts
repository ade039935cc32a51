import type { QueryResolvers } from "../../generated/resolvers-types.js";

export const inclusionProof: NonNullable<QueryResolvers["inclusionProof"]> = async (_parent, args, context) => {
  const proof = await context.services.transparencyLog.inclusionProof(context.principal, args.serial, args.treeSize);
  return {
    leafIndex: proof.leafIndex,
    treeSize: proof.treeSize,
    entry: proof.entry.toString("utf8"),
    hashes: proof.hashes.map((hash) => hash.toString("base64")),
    checkpoint: proof.checkpoint.note,
  };
};
