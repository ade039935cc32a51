import type { CertificateRecord } from "../ca/model.js";
import type { AuditEventRecord } from "./audit-events.js";

/**
 * The leaf data of the transparency log: one JSON object per issued certificate or audit event, with keys
 * in a fixed order, so the same row always yields the same bytes. Every stored column is in it (the
 * certificate's DER included), so an edit to any of them changes the leaf hash and no longer matches a
 * signed checkpoint. Revocation is not a column of the entry: it is an audit event of its own.
 */
export type LogEntry =
  | {
      readonly kind: "certificate";
      readonly seq: number;
      readonly serial: string;
      readonly issuerId: string;
      readonly spiffeId: string;
      readonly dnsNames: readonly string[];
      readonly notBefore: string;
      readonly notAfter: string;
      readonly keyType: string;
      readonly requester: string;
      readonly issuedAt: string;
      readonly fingerprintSha256: string;
      /** base64 DER. */
      readonly certificate: string;
      /** Only for certificates that are not workload certificates, so that older leaves keep their bytes. */
      readonly profile?: string;
      /** Only for certificates whose origin credential was recorded (see CertificateOrigin). */
      readonly origin?: unknown;
    }
  | {
      readonly kind: "audit";
      readonly sequence: number;
      readonly occurredAt: string;
      readonly type: string;
      readonly actor: string;
      readonly outcome: string;
      readonly subject: string | null;
      readonly code: string | null;
      readonly remoteAddress: string | null;
      /** The stored JSON text, verbatim. */
      readonly details: string | null;
    };

export function certificateLogEntry(record: CertificateRecord, issuedSeq: number): Buffer {
  const entry: LogEntry = {
    kind: "certificate",
    seq: issuedSeq,
    serial: record.serial,
    issuerId: record.authorityId,
    spiffeId: record.spiffeId,
    dnsNames: record.dnsNames,
    notBefore: record.notBefore.toISOString(),
    notAfter: record.notAfter.toISOString(),
    keyType: record.keyType,
    requester: record.requester,
    issuedAt: record.issuedAt.toISOString(),
    fingerprintSha256: record.fingerprintSha256,
    certificate: record.der.toString("base64"),
    // Columns added after the first leaves were signed join the entry only where set: a leaf is rebuilt from
    // its row whenever it is served, and must hash as it did when it was sequenced.
    ...(record.profile !== undefined && record.profile !== "workload" ? { profile: record.profile } : {}),
    ...(record.origin ? { origin: record.origin } : {}),
  };
  return Buffer.from(JSON.stringify(entry), "utf8");
}

export function auditLogEntry(record: AuditEventRecord): Buffer {
  const entry: LogEntry = {
    kind: "audit",
    sequence: record.sequence,
    occurredAt: record.occurredAt.toISOString(),
    type: record.type,
    actor: record.actor,
    outcome: record.outcome,
    subject: record.subject,
    code: record.code,
    remoteAddress: record.remoteAddress,
    details: record.details,
  };
  return Buffer.from(JSON.stringify(entry), "utf8");
}
