/** Assertions on GraphQL answers shared by the integration tests. */
import { expect } from "vitest";
import type { GqlResponse } from "./service.js";

/** The single error of a refused operation: no data, exactly one error, with a code. */
export function refusal(response: GqlResponse): { code: string; message: string } {
  expect(response.body, JSON.stringify(response.body)).toHaveProperty("errors");
  const errors = response.body.errors as { message: string; extensions?: { code?: string } }[];
  expect(errors, JSON.stringify(errors)).toHaveLength(1);
  // No data: null, or (for a nullable root field) only nulls.
  for (const value of Object.values((response.body.data ?? {}) as Record<string, unknown>)) expect(value).toBeNull();
  const [error] = errors;
  return { code: error?.extensions?.code ?? "(none)", message: error?.message ?? "" };
}

/** The data of a successful operation; fails the test, showing the errors, otherwise. */
export function ok<T = any>(response: GqlResponse): T {
  expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
  return response.body.data as T;
}

/** The fields of `IssuedCertificate` the tests select. */
export interface Issued {
  serial: string;
  certificatePem: string;
  chainPem: string;
  notBefore: string;
  notAfter: string;
  spiffeId: string;
  dnsNames: string[];
}
