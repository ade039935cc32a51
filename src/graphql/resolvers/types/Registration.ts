import type { RegistrationResolvers } from "../../generated/resolvers-types.js";

export const Registration: RegistrationResolvers = {
  dnsNames: (record) => [...record.dnsNames],
  createdAt: (record) => record.createdAt.toISOString(),
  updatedAt: (record) => record.updatedAt.toISOString(),
};
