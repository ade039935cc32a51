import { BadUserInputError } from "../common/errors.js";

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i;

/** An RFC 3339 time argument as a Date; BAD_USER_INPUT naming the field otherwise. */
export function parseTimeInput(value: string, field: string): Date {
  const time = RFC3339.test(value) ? new Date(value) : undefined;
  if (!time || Number.isNaN(time.getTime())) {
    throw new BadUserInputError(`${field} must be an RFC 3339 time such as 2026-01-31T12:00:00Z`);
  }
  return time;
}

/** Copies the non-null fields of a GraphQL input, so that absent and null both mean "no condition". */
export function presentFields<T extends object>(input: T | null | undefined): { [K in keyof T]?: NonNullable<T[K]> } {
  const result: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input ?? {})) {
    if (value !== null && value !== undefined) result[key] = value;
  }
  return result as { [K in keyof T]?: NonNullable<T[K]> };
}
