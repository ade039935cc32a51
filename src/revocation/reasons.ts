/**
 * The revocation reasons operators may give (RFC 5280 §5.3.1 CRLReason), in the API's SCREAMING_CASE.
 * certificateHold is deliberately absent: a hold can be lifted, and a workload certificate that lives an
 * hour gains nothing from that but ambiguity.
 */
export const REVOCATION_REASON_CODES = {
  UNSPECIFIED: 0,
  KEY_COMPROMISE: 1,
  CA_COMPROMISE: 2,
  AFFILIATION_CHANGED: 3,
  SUPERSEDED: 4,
  CESSATION_OF_OPERATION: 5,
  PRIVILEGE_WITHDRAWN: 9,
} as const;

export type RevocationReason = keyof typeof REVOCATION_REASON_CODES;

export function isRevocationReason(value: string): value is RevocationReason {
  return Object.hasOwn(REVOCATION_REASON_CODES, value);
}
