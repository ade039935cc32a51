import type { QueryResolvers } from "../../generated/resolvers-types.js";

export const transparencyLog: NonNullable<QueryResolvers["transparencyLog"]> = async (_parent, _args, context) => {
  const log = context.services.transparencyLog;
  const checkpoint = await log.latestCheckpoint(context.principal);
  return {
    origin: log.origin,
    verifierKey: log.verifierKey,
    checkpoint: checkpoint?.note ?? null,
    treeSize: checkpoint?.treeSize ?? 0,
    maxMergeDelaySeconds: log.maxMergeDelaySeconds,
  };
};
