import { parseWorkloadSpiffeId, parseDnsName } from "../policy/identity.js";
import type { WorkloadCertificateFields } from "./x509/workload-template.js";

export type { WorkloadCertificateFields };

export interface LintContext {
  readonly trustDomain: string;
  readonly issuerNotBefore: Date;
  readonly issuerNotAfter: Date;
  readonly maxLifetimeSeconds: number;
}

/**
 * Pre-issuance lint (the last line of defence, as in Boulder's linter): checks the profile invariants on
 * exactly the values that go into the TBS. Earlier steps should already have refused anything it finds,
 * so a finding is a bug and issuance stops. Returns the problems found, empty when clean.
 */
export function lintWorkloadCertificate(fields: WorkloadCertificateFields, context: LintContext): string[] {
  const problems: string[] = [];
  const serial = fields.serialNumber;
  if (serial.length !== 16 || serial[0] === 0) problems.push("serial must be 16 bytes without a leading zero byte");
  const lifetime = (fields.notAfter.getTime() - fields.notBefore.getTime()) / 1000;
  if (lifetime <= 0) problems.push("notAfter must be after notBefore");
  if (lifetime > context.maxLifetimeSeconds) problems.push(`lifetime ${lifetime}s exceeds ${context.maxLifetimeSeconds}s`);
  if (fields.notBefore.getTime() < context.issuerNotBefore.getTime()) problems.push("notBefore precedes the issuer's");
  if (fields.notAfter.getTime() > context.issuerNotAfter.getTime()) problems.push("notAfter exceeds the issuer's");
  try {
    const id = parseWorkloadSpiffeId(fields.spiffeId);
    if (id.trustDomain !== context.trustDomain) problems.push(`SPIFFE ID outside trust domain ${context.trustDomain}`);
  } catch (error) {
    problems.push(`SPIFFE ID: ${(error as Error).message}`);
  }
  for (const name of fields.dnsNames) {
    try {
      if (parseDnsName(name) !== name) problems.push(`DNS name ${name} is not in canonical form`);
    } catch (error) {
      problems.push(`DNS name: ${(error as Error).message}`);
    }
  }
  if (new Set(fields.dnsNames).size !== fields.dnsNames.length) problems.push("duplicate DNS names");
  return problems;
}
