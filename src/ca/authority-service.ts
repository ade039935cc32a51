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
  async register(authority: AuthorityRecord): Promise<void> {
    await this.repository.insert(authority);
  }

  async list(): Promise<AuthorityRecord[]> {
    return await this.repository.list();
  }

  async get(id: string): Promise<AuthorityRecord | undefined> {
    return await this.repository.get(id);
  }

  /** `trustBundle` from a snapshot of the hierarchy already read (the authority watcher's). */
  bundleOf(snapshot: { readonly authorities: readonly AuthorityRecord[]; readonly sequence: number }, trustDomain?: string | null): TrustBundle {
    const domain = trustDomain ?? this.trustDomain;
    if (domain !== this.trustDomain) return trustBundleOf(domain, [], 0);
    return trustBundleOf(domain, snapshot.authorities, snapshot.sequence);
  }

  /** The bundle of this CA's trust domain; an empty bundle for any other (we federate with none yet). */
  async trustBundle(trustDomain?: string | null): Promise<TrustBundle> {
    if ((trustDomain ?? this.trustDomain) !== this.trustDomain) return this.bundleOf({ authorities: [], sequence: 0 }, trustDomain);
    const [authorities, sequence] = await Promise.all([this.repository.list(), this.repository.bundleSequence()]);
    return this.bundleOf({ authorities, sequence }, trustDomain);
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
