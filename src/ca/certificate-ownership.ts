import { X509Certificate } from "node:crypto";
import { UnauthenticatedError } from "../common/errors.js";
import type { CertificateRecord } from "./model.js";
import type { AuthorityRepository, CertificateQuery } from "./ports.js";
import { normaliseSerial } from "./serial.js";

/**
 * Authenticates a workload by the certificate it presented as its TLS client certificate. The TLS handshake
 * has already proved possession of the key (CertificateVerify); here the certificate must be one this CA
 * issued — byte for byte the stored one, signed by its issuer — and be neither revoked nor expired beyond
 * the grace window. Chain checks by the TLS stack are not relied on, so an expired certificate inside the
 * grace window can still renew.
 */
export class CertificateOwnership {
  constructor(
    private readonly deps: {
      readonly certificates: CertificateQuery;
      readonly authorities: Pick<AuthorityRepository, "get">;
    },
  ) {}

  async authenticate(der: Buffer | undefined, now: Date, graceSeconds = 0): Promise<CertificateRecord> {
    if (!der || der.length === 0) {
      throw new UnauthenticatedError("present the current certificate as the TLS client certificate (mutual TLS)");
    }
    let presented: X509Certificate;
    try {
      presented = new X509Certificate(der);
    } catch {
      throw new UnauthenticatedError("the client certificate cannot be parsed");
    }
    const record = await this.deps.certificates.get(normaliseSerial(presented.serialNumber.replace(/^0+/, "")), now);
    const issuer = record && (await this.deps.authorities.get(record.authorityId));
    if (!record || !issuer || !record.der.equals(der) || !presented.verify(new X509Certificate(issuer.certificateDer).publicKey)) {
      throw new UnauthenticatedError("the client certificate was not issued by this CA");
    }
    if (record.revokedAt) throw new UnauthenticatedError(`the client certificate ${record.serial} has been revoked`);
    if (now.getTime() > record.notAfter.getTime() + graceSeconds * 1000) {
      throw new UnauthenticatedError(
        `the client certificate ${record.serial} expired at ${record.notAfter.toISOString()}` +
          (graceSeconds > 0 ? ` (renewals are accepted up to ${graceSeconds} s after expiry)` : ""),
      );
    }
    if (now.getTime() < record.notBefore.getTime()) {
      throw new UnauthenticatedError(`the client certificate ${record.serial} is not valid before ${record.notBefore.toISOString()}`);
    }
    return record;
  }
}

/** The certificate's SubjectPublicKeyInfo as DER, in the one encoding node:crypto exports, for comparisons. */
export function subjectPublicKeyInfoOf(der: Buffer): Buffer {
  return new X509Certificate(der).publicKey.export({ type: "spki", format: "der" });
}
