import { nameToString } from "./ceremony.js";
import { certificateFields } from "./x509/ca-certificates.js";
import type { AuthorityRecord } from "./model.js";
import type { AuthorityRepository } from "./ports.js";
import { trustBundleOf, type TrustBundle } from "./trust-bundle.js";

/** Public read access to the CA hierarchy. */
export class AuthorityService {
  constructor(
    private readonly repository: AuthorityRepository,
    readonly trustDomain: string,
  ) {}

  /** Records a CA certificate (after a ceremony or a rotation step). */
  register(authority: AuthorityRecord): void {
    this.repository.insert(authority);
  }

  list(): AuthorityRecord[] {
    return this.repository.list();
  }

  get(id: string): AuthorityRecord | undefined {
    return this.repository.get(id);
  }

  /** The bundle of this CA's trust domain; an empty bundle for any other (we federate with none yet). */
  trustBundle(trustDomain?: string | null): TrustBundle {
    const domain = trustDomain ?? this.trustDomain;
    if (domain !== this.trustDomain) return trustBundleOf(domain, [], 0);
    return trustBundleOf(domain, this.repository.list(), this.repository.bundleSequence());
  }
}

/** Builds the record of a CA certificate: its id is the lower-case hex SKI, stable and derived from the key. */
export function authorityRecordOf(
  certificateDer: Buffer,
  attributes: { kind: AuthorityRecord["kind"]; status: AuthorityRecord["status"]; keyLabel: string | null; parentId: string | null; createdAt: Date },
): AuthorityRecord {
  const fields = certificateFields(certificateDer);
  return {
    id: fields.subjectKeyIdentifier.toString("hex"),
    subject: nameToString(fields.subjectNameDer),
    certificateDer,
    notBefore: fields.notBefore,
    notAfter: fields.notAfter,
    ...attributes,
  };
}
