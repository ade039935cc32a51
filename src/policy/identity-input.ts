import { BadUserInputError } from "../common/errors.js";
import { InvalidIdentityError, parseDnsName, parseWorkloadSpiffeId } from "./identity.js";

/**
 * An identity typed by an administrator (for a token or a registration), checked by the rules certificates
 * are checked by, in canonical form: a workload SPIFFE ID in this trust domain and de-duplicated DNS names.
 */
export function parseIdentityInput(
  spiffeId: string,
  dnsNames: readonly string[] | null | undefined,
  trustDomain: string,
): { spiffeId: string; dnsNames: string[] } {
  try {
    const parsed = parseWorkloadSpiffeId(spiffeId);
    if (parsed.trustDomain !== trustDomain) {
      throw new InvalidIdentityError(`SPIFFE ID "${spiffeId}" is not in this CA's trust domain "${trustDomain}"`);
    }
    return { spiffeId: parsed.id, dnsNames: [...new Set((dnsNames ?? []).map(parseDnsName))] };
  } catch (error) {
    if (error instanceof InvalidIdentityError) throw new BadUserInputError(error.message, { cause: error });
    throw error;
  }
}

export function integerInRange(value: number | null | undefined, fallback: number, min: number, max: number, field: string): number {
  const chosen = value ?? fallback;
  if (!Number.isInteger(chosen) || chosen < min || chosen > max) {
    throw new BadUserInputError(`${field} must be an integer from ${min} to ${max}`);
  }
  return chosen;
}
