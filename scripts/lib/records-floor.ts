/**
 * The CPU cost of the durable records one workload certificate needs, through the service's own store
 * classes on a real SQLite file (WAL, group commits, every commit synced): the reservation with its token
 * use and audit event, the completion with its audit event and DNS-name rows, the pre-signed OCSP response,
 * and the transparency log's sequencing of the three leaves. No crypto: the DER and the response are
 * random bytes of the usual sizes.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AuditEvent } from "../../src/audit/audit-log.js";
import type { CertificateRevocationStatus, StoredOcspResponse } from "../../src/revocation/ports.js";
import { SqliteAuditEventRepository } from "../../src/store/audit-event-repository.js";
import { SqliteAuthorityRepository } from "../../src/store/authority-repository.js";
import { SqliteCertificateStore } from "../../src/store/certificate-store.js";
import { openDatabase } from "../../src/store/database.js";
import { SqliteOcspRepository } from "../../src/store/ocsp-repository.js";
import { SqliteEnrollmentTokenRepository } from "../../src/store/policy-repositories.js";
import { SqliteTransparencyLogRepository } from "../../src/store/transparency-log-repository.js";

export interface RecordsCost {
  readonly certificates: number;
  /** Reservation, completion and OCSP rows, with their commits and syncs, in µs of process CPU. */
  readonly ledgerMicros: number;
  /** The log sequencer's share, in µs of process CPU per certificate. */
  readonly sequencingMicros: number;
}

/** Keeps `inFlight` issuances' worth of writes going for `seconds`, then sequences the log once. */
export async function durableRecordsCost(seconds: number, inFlight: number): Promise<RecordsCost> {
  const dir = mkdtempSync(join(tmpdir(), "anchorage-bench-records-"));
  const db = openDatabase(join(dir, "anchorage.db"));
  try {
    const now = new Date();
    const spiffeId = "spiffe://bench.test/ns/bench/sa/app";
    const dnsNames = ["app.bench.svc", "app.bench.svc.cluster.local"];
    const authorityId = "bench-intermediate";
    new SqliteAuthorityRepository(db).insert({
      id: authorityId,
      kind: "intermediate",
      status: "active",
      subject: "CN=bench",
      certificateDer: randomBytes(500),
      keyLabel: "bench",
      parentId: null,
      notBefore: now,
      notAfter: new Date(now.getTime() + 86_400_000),
      createdAt: now,
    });
    const tokenHash = randomBytes(32);
    new SqliteEnrollmentTokenRepository(db).insert({
      id: "tok_bench",
      tokenHash,
      spiffeId,
      dnsNames,
      maxTtlSeconds: 3600,
      expiresAt: new Date(now.getTime() + 3_600_000),
      usesLeft: 1_000_000_000,
      createdBy: "apikey:bench",
      createdAt: now,
    });
    const audit = new SqliteAuditEventRepository(db);
    const ledger = new SqliteCertificateStore(db, audit);
    const ocsp = new SqliteOcspRepository(db);
    const log = new SqliteTransparencyLogRepository(db);
    // The same shapes as the issuance service's events.
    const prepared = (serial: string): AuditEvent => ({
      type: "issuance.prepared",
      actor: "token:tok_bench",
      outcome: "success",
      subject: serial,
      remoteAddress: "127.0.0.1",
      details: { spiffeId, dnsNames, keyType: "ECDSA P-256", ttlSeconds: 3600 },
    });
    const signed = (serial: string): AuditEvent => ({
      type: "issuance.signed",
      actor: "token:tok_bench",
      outcome: "success",
      subject: serial,
      remoteAddress: "127.0.0.1",
      details: { spiffeId, issuerId: authorityId },
    });

    const presigned: { response: StoredOcspResponse; signedStatus: CertificateRevocationStatus["kind"] }[] = [];
    const issueOne = async (): Promise<void> => {
      const serial = randomBytes(16).toString("hex");
      const at = new Date();
      const [reserved] = await ledger.prepare(
        [
          {
            serial,
            authorityId,
            spiffeId,
            dnsNames,
            notBefore: at,
            notAfter: new Date(at.getTime() + 3_600_000),
            keyType: "P-256",
            requester: "token:tok_bench",
            tbsDer: randomBytes(520),
            consumeTokenHash: tokenHash,
            audit: prepared(serial),
          },
        ],
        at,
      );
      if (!reserved?.ok) throw new Error("the reservation was refused");
      await ledger.complete([{ serial, der: randomBytes(600), fingerprintSha256: randomBytes(32).toString("hex"), audit: signed(serial) }], at);
      // Stored as the responder's pre-signing stores them: in groups of 32, one transaction each.
      presigned.push({
        response: { authorityId, serial, hashAlgorithm: "sha1", der: randomBytes(470), thisUpdate: at, nextUpdate: new Date(at.getTime() + 14_400_000) },
        signedStatus: (await ocsp.status(authorityId, serial)).kind,
      });
      if (presigned.length >= 32) await ocsp.saveResponses(presigned.splice(0));
    };

    let certificates = 0;
    const cpuBefore = process.cpuUsage();
    const until = performance.now() + seconds * 1000;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (performance.now() < until) {
          await issueOne();
          certificates++;
        }
      }),
    );
    await ocsp.saveResponses(presigned.splice(0));
    const ledgerCpu = process.cpuUsage(cpuBefore);
    const sequencingBefore = process.cpuUsage();
    while ((await log.sequence(20_000)).appended > 0);
    const sequencingCpu = process.cpuUsage(sequencingBefore);
    return {
      certificates,
      ledgerMicros: (ledgerCpu.user + ledgerCpu.system) / certificates,
      sequencingMicros: (sequencingCpu.user + sequencingCpu.system) / certificates,
    };
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
