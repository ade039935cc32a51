import { createHash, createPublicKey, randomBytes, verify } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Issuer } from "../ca/issuer.js";
import type { IssuanceLedger } from "../ca/ports.js";
import { generateSerial } from "../ca/serial.js";
import { buildName, certificateFields, inspectSubjectPublicKeyInfo, type CertificateFields } from "../ca/x509/ca-certificates.js";
import { SIGNATURE_HASH_ALGORITHMS } from "../ca/x509/algorithms.js";
import { integer, nullValue, octetString, oid, sequence } from "../ca/x509/der.js";
import { buildOcspSignerTbs } from "../ca/x509/ocsp-signer.js";
import type { Clock } from "../common/clock.js";
import { AnchorageError, InternalError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import type { KeyStore, Signer } from "../signer/signer.js";
import {
  OcspMalformedRequestError,
  assembleOcspResponse,
  buildResponseData,
  certIdMatches,
  issuerHashes,
  ocspErrorResponse,
  parseOcspRequest,
  type CertId,
  type IssuerHashes,
  type OcspCertStatus,
} from "./ocsp-codec.js";
import type { CertIdHash, CertificateRevocationStatus, OcspRepository, OcspSignerRecord, StoredOcspResponse } from "./ports.js";
import { REVOCATION_REASON_CODES, isRevocationReason } from "./reasons.js";
import { SigningBudget } from "./signing-budget.js";

export interface OcspSettings {
  /** nextUpdate - thisUpdate of responses. */
  readonly responseValiditySeconds: number;
  /** Lifetime of a delegated responder certificate; renewed once two thirds of it have passed. */
  readonly signerValiditySeconds: number;
  /** CertIDs accepted in one request. */
  readonly maxRequests: number;
  /** Budget of signatures made as requests arrive (see `SigningBudget`), for this process. */
  readonly onRequestSignaturesPerSecond: number;
  readonly onRequestSignatureBurst: number;
}

export const DEFAULT_OCSP_SETTINGS: OcspSettings = {
  responseValiditySeconds: 4 * 3600,
  signerValiditySeconds: 30 * 86400,
  maxRequests: 16,
  onRequestSignaturesPerSecond: 100,
  onRequestSignatureBurst: 100,
};

/**
 * What the HTTP layer sends back. `cacheable` answers carry validity for the HTTP caching headers;
 * `stored` ones are the pre-signed response of an issued certificate, which stays the answer to the same
 * request until the responder's `generation()` changes.
 */
export type OcspAnswer =
  | {
      readonly der: Buffer;
      readonly cacheable: true;
      readonly stored: boolean;
      readonly thisUpdate: Date;
      readonly nextUpdate: Date;
      readonly etag: string;
    }
  | { readonly der: Buffer; readonly cacheable: false };

interface Responder {
  readonly issuer: Issuer;
  readonly hashes: IssuerHashes;
  readonly signer: Signer;
  readonly certificateDer: Buffer;
  readonly keyHash: Buffer;
  readonly notAfter: Date;
}

const PRESIGN_GROUP_SIZE = 32;

/**
 * Responder certificate creation is claimed in the database, so that service processes starting together
 * (or seeing a published intermediate together) make one between them. A claim older than this is taken
 * to be abandoned; the others poll for the certificate meanwhile.
 */
const SIGNER_CLAIM_STALE_MS = 60_000;
const SIGNER_WAIT_MS = 30_000;
const SIGNER_POLL_MS = 50;

/** Who asks for responder certificates, in the ledger and the audit events. */
const RESPONDER_REQUESTER = "system:ocsp-responder";

const HASH_OIDS: Readonly<Record<CertIdHash, string>> = { sha1: "1.3.14.3.2.26", sha256: "2.16.840.1.101.3.4.2.1" };

const MALFORMED = ocspErrorResponse("malformedRequest");
const UNAUTHORIZED = ocspErrorResponse("unauthorized");
const INTERNAL_ERROR = ocspErrorResponse("internalError");
const TRY_LATER = ocspErrorResponse("tryLater");

const etags = new WeakMap<Buffer, string>();

/** At most one warning this often while the on-request signing budget turns requests away. */
const BUDGET_WARNING_INTERVAL_MS = 10_000;

/** Strong ETag of a response body, computed once per stored body. */
function etagOf(der: Buffer): string {
  let etag = etags.get(der);
  if (!etag) {
    etag = `"${createHash("sha256").update(der).digest("base64url")}"`;
    etags.set(der, etag);
  }
  return etag;
}

function storedAnswer(stored: StoredOcspResponse): OcspAnswer {
  return {
    der: stored.der,
    cacheable: true,
    stored: true,
    thisUpdate: stored.thisUpdate,
    nextUpdate: stored.nextUpdate,
    etag: etagOf(stored.der),
  };
}

function toCodecStatus(status: CertificateRevocationStatus): OcspCertStatus {
  if (status.kind !== "revoked") return status;
  const code = isRevocationReason(status.reason) ? REVOCATION_REASON_CODES[status.reason] : 0;
  return { kind: "revoked", revokedAt: status.revokedAt, ...(code ? { reason: code } : {}) };
}

/**
 * RFC 6960 responder with the RFC 5019 profile. Each issuing CA has a delegated responder certificate
 * (id-kp-OCSPSigning, ocsp-nocheck) whose key is in the HSM. Responses without a nonce are signed ahead of
 * time (at issuance, on revocation, and before they expire) and served from storage, so a status lookup
 * does not touch the HSM; a request with a nonce, several CertIDs, or for a serial we never issued is signed
 * when it arrives, within a budget of signatures per second: over it, a nonce is ignored and the stored
 * response served, and what has none gets tryLater. Storage is shared by every service process, so a
 * revocation replaces the stored response for all of them at once. The responder certificates are signed
 * through the issuance ledger, so they are in the history and the transparency log like any other.
 */
export class OcspResponder {
  private responders = new Map<string, Responder>();
  private timer: NodeJS.Timeout | undefined;
  private refreshesStoredResponses = false;
  private presignQueue: { authorityId: string; serial: string }[] = [];
  private presigning = false;
  /**
   * Responses served recently, in front of the database. The whole map is dropped whenever another
   * process has written to the database, so a revocation made elsewhere is never hidden behind it.
   */
  private readonly recent = new Map<string, StoredOcspResponse>();
  private seenChangeCounter = Number.NaN;
  private changeCheckedAt = Number.NEGATIVE_INFINITY;
  /** Bumped whenever a response in `recent` is replaced or dropped; see `generation()`. */
  private changes = 0;
  private readonly onRequestBudget: SigningBudget;
  private refusedSinceWarning = 0;
  private warnedAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly deps: {
      readonly repository: OcspRepository;
      /** Where the responder certificates are recorded before and after they are signed. */
      readonly ledger: IssuanceLedger;
      readonly keyStore: KeyStore;
      readonly issuers: () => readonly Issuer[];
      readonly clock: Clock;
      readonly logger: Logger;
      readonly settings: OcspSettings;
    },
  ) {
    this.onRequestBudget = new SigningBudget({
      perSecond: deps.settings.onRequestSignaturesPerSecond,
      burst: deps.settings.onRequestSignatureBurst,
    });
  }

  private reportBudgetSpent(): void {
    this.refusedSinceWarning++;
    const now = performance.now();
    if (now - this.warnedAt < BUDGET_WARNING_INTERVAL_MS) return;
    this.deps.logger.warn(
      { refused: this.refusedSinceWarning, perSecond: this.deps.settings.onRequestSignaturesPerSecond, burst: this.deps.settings.onRequestSignatureBurst },
      "OCSP on-request signing budget spent: serving pre-signed responses without nonce, tryLater for the rest",
    );
    this.warnedAt = now;
    this.refusedSinceWarning = 0;
  }

  /**
   * Loads or creates the responder certificates, then keeps them fresh. With `refreshStoredResponses` it
   * also re-signs stored responses that near their nextUpdate: they are shared by every process, so one
   * process of a cluster does that for all.
   */
  async start(options: { readonly refreshStoredResponses: boolean; readonly checkEveryMs?: number } = { refreshStoredResponses: true }): Promise<void> {
    this.refreshesStoredResponses = options.refreshStoredResponses;
    await this.ensureResponders();
    this.timer = setInterval(() => {
      this.maintain(this.refreshesStoredResponses).catch((error: unknown) => this.deps.logger.error({ err: error }, "OCSP maintenance failed"));
    }, options.checkEveryMs ?? 60_000);
    this.timer.unref();
  }

  /** Whether this process re-signs the stored responses (the one that runs the sweeps does, from its next round). */
  refreshStoredResponses(enabled: boolean): void {
    this.refreshesStoredResponses = enabled;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Answers one DER OCSPRequest. Never throws: failures become OCSP error statuses. */
  async respond(requestDer: Buffer): Promise<OcspAnswer> {
    let request;
    try {
      request = parseOcspRequest(requestDer, { maxRequests: this.deps.settings.maxRequests });
    } catch (error) {
      if (error instanceof OcspMalformedRequestError) return { der: MALFORMED, cacheable: false };
      throw error;
    }
    const first = request.requests[0] as CertId;
    const responder = this.responderFor(first);
    if (!responder || request.requests.some((certId) => this.responderFor(certId) !== responder)) {
      return { der: UNAUTHORIZED, cacheable: false };
    }
    const now = this.deps.clock.now();
    const stored =
      request.requests.length === 1 ? await this.lookup(responder.issuer.id, first.serialNumber.toString("hex"), first.hashAlgorithm) : undefined;
    const fresh = stored && stored.nextUpdate.getTime() > now.getTime() ? stored : undefined;
    if (fresh && request.nonce === undefined) return storedAnswer(fresh);
    if (!this.onRequestBudget.tryTake()) {
      this.reportBudgetSpent();
      // RFC 8954 lets a responder leave the nonce out; what has no pre-signed answer waits for the budget.
      return fresh ? storedAnswer(fresh) : { der: TRY_LATER, cacheable: false };
    }
    try {
      const statuses = await Promise.all(
        request.requests.map((certId) => this.deps.repository.status(responder.issuer.id, certId.serialNumber.toString("hex"))),
      );
      const signed = await this.sign(responder, request.requests, statuses, now, request.nonce);
      if (request.requests.length > 1 || request.nonce !== undefined) return { der: signed.der, cacheable: false };
      // Responses for serials we issued are kept; for the rest (anyone can ask about any serial) they are not.
      if (statuses[0]?.kind !== "unknown") {
        await this.store(
          { authorityId: responder.issuer.id, serial: first.serialNumber.toString("hex"), hashAlgorithm: first.hashAlgorithm, ...signed },
          statuses[0]?.kind ?? "unknown",
        );
      }
      return {
        der: signed.der,
        cacheable: true,
        stored: false,
        thisUpdate: signed.thisUpdate,
        nextUpdate: signed.nextUpdate,
        etag: etagOf(signed.der),
      };
    } catch (error) {
      this.deps.logger.error({ err: error }, "OCSP signing failed");
      // As over the budget: what can no longer be signed on request (the database or the HSM is out of reach)
      // but has a pre-signed answer still valid gets that answer, without the nonce (RFC 8954).
      if (fresh) return storedAnswer(fresh);
      return { der: error instanceof InternalError ? INTERNAL_ERROR : TRY_LATER, cacheable: false };
    }
  }

  /**
   * Re-signs the stored responses of one certificate now (after a revocation), for both CertID hash
   * algorithms, before the caller reports success.
   */
  async refresh(authorityId: string, serial: string): Promise<void> {
    const responder = this.responders.get(authorityId);
    if (!responder) return;
    const now = this.deps.clock.now();
    const status = await this.deps.repository.status(authorityId, serial);
    for (const hashAlgorithm of ["sha1", "sha256"] as const) {
      const certId = this.certIdFor(responder, serial, hashAlgorithm);
      const signed = await this.sign(responder, [certId], [status], now);
      await this.store({ authorityId, serial, hashAlgorithm, ...signed }, status.kind);
    }
  }

  /**
   * Queues responses of freshly issued certificates for signing in the background, one at a time, so that
   * their first lookup is served from storage without slowing issuance down. A full queue drops the
   * overflow: those certificates are signed at their first lookup instead.
   */
  presign(certificates: readonly { authorityId: string; serial: string }[]): void {
    const room = 10_000 - this.presignQueue.length;
    this.presignQueue.push(...certificates.slice(0, Math.max(0, room)));
    if (!this.presigning) void this.drainPresignQueue();
  }

  private async drainPresignQueue(): Promise<void> {
    this.presigning = true;
    const pending: { response: StoredOcspResponse; signedStatus: CertificateRevocationStatus["kind"] }[] = [];
    const flush = async (): Promise<void> => {
      const saving = pending.splice(0);
      for (const response of await this.deps.repository.saveResponses(saving)) this.remember(response);
    };
    try {
      // One signature at a time, so that pre-signing never takes more than one HSM session from issuance;
      // stored in groups, so that it costs one commit per group rather than one per certificate.
      for (let next = this.presignQueue.shift(); next; next = this.presignQueue.shift()) {
        const responder = this.responders.get(next.authorityId);
        if (!responder) continue;
        const certId = this.certIdFor(responder, next.serial, "sha1");
        const status = await this.deps.repository.status(next.authorityId, next.serial);
        const signed = await this.sign(responder, [certId], [status], this.deps.clock.now());
        pending.push({
          response: { authorityId: next.authorityId, serial: next.serial, hashAlgorithm: "sha1", ...signed },
          signedStatus: status.kind,
        });
        if (pending.length >= PRESIGN_GROUP_SIZE) await flush();
      }
      await flush();
    } catch (error) {
      this.deps.logger.warn({ err: error }, "OCSP pre-signing paused; lookups will sign on demand");
      this.presignQueue = [];
    } finally {
      this.presigning = false;
    }
  }

  /** Creates or loads the responder certificates of issuers that appeared since start (a published intermediate). */
  refreshResponders(): Promise<void> {
    return this.ensureResponders();
  }

  private async maintain(refreshStoredResponses: boolean): Promise<void> {
    await this.ensureResponders();
    if (!refreshStoredResponses) return;
    const now = this.deps.clock.now();
    const margin = (this.deps.settings.responseValiditySeconds * 1000) / 3;
    for (const due of await this.deps.repository.responsesDue(new Date(now.getTime() + margin), now, 1000)) {
      const responder = this.responders.get(due.authorityId);
      if (!responder) continue;
      const certId = this.certIdFor(responder, due.serial, due.hashAlgorithm);
      const status = await this.deps.repository.status(due.authorityId, due.serial);
      const signed = await this.sign(responder, [certId], [status], now);
      await this.store({ ...due, ...signed }, status.kind);
    }
    await this.deps.repository.deleteExpired(now);
  }

  /**
   * A number that changes whenever a stored answer given before may no longer be the answer: a response
   * was re-signed (a revocation, a refresh) or another process wrote to the database. Until it changes, a
   * `stored` answer may be served again for the same request without asking the responder.
   */
  generation(): number {
    this.noticeExternalChanges();
    return this.changes;
  }

  private noticeExternalChanges(): void {
    // Another process's commit (a revocation) empties the memory cache. Asking SQLite costs more than the
    // rest of a cached lookup, so it is asked at most once a millisecond: a revocation committed elsewhere
    // reaches this process's answers within 1 ms (this process's own revocations, at once).
    const now = performance.now();
    if (now - this.changeCheckedAt < 1) return;
    this.changeCheckedAt = now;
    const counter = this.deps.repository.externalChangeCounter();
    if (counter !== this.seenChangeCounter) {
      this.recent.clear();
      this.changes++;
      this.seenChangeCounter = counter;
    }
  }

  /**
   * The stored response, from memory when this process has it (no database round trip on the hot path), and
   * undefined when the database cannot be read: the caller then signs on request, or says tryLater.
   */
  private lookup(authorityId: string, serial: string, hashAlgorithm: CertIdHash): StoredOcspResponse | undefined | Promise<StoredOcspResponse | undefined> {
    this.noticeExternalChanges();
    const remembered = this.recent.get(`${authorityId}/${serial}/${hashAlgorithm}`);
    if (remembered) return remembered;
    return this.deps.repository.getResponse(authorityId, serial, hashAlgorithm).then(
      (stored) => {
        if (stored) this.remember(stored);
        return stored;
      },
      (error: unknown) => {
        this.deps.logger.warn({ err: error }, "could not read a stored OCSP response");
        return undefined;
      },
    );
  }

  /**
   * Saves a response to the database and to the in-memory map (which our own writes do not invalidate),
   * unless the certificate's status changed while it was being signed: a revocation must never be
   * overwritten by a response signed just before it.
   */
  private async store(response: StoredOcspResponse, signedStatus: CertificateRevocationStatus["kind"]): Promise<void> {
    if (await this.deps.repository.saveResponse(response, signedStatus)) {
      this.remember(response);
    } else {
      this.recent.delete(`${response.authorityId}/${response.serial}/${response.hashAlgorithm}`);
      this.changes++;
    }
  }

  private remember(response: StoredOcspResponse): void {
    const key = `${response.authorityId}/${response.serial}/${response.hashAlgorithm}`;
    if (this.recent.size >= 100_000) {
      this.recent.clear();
      this.changes++;
    } else if (this.recent.has(key)) {
      this.changes++;
    }
    this.recent.set(key, response);
  }

  private responderFor(certId: CertId): Responder | undefined {
    for (const responder of this.responders.values()) {
      if (certIdMatches(certId, responder.hashes)) return responder;
    }
    return undefined;
  }

  /** The CertID a client computes for `serial` of this issuer (hash AlgorithmIdentifier with NULL parameters, as OpenSSL sends it). */
  private certIdFor(responder: Responder, serial: string, hashAlgorithm: CertIdHash): CertId {
    const issuerNameHash = responder.hashes.nameHashes[hashAlgorithm];
    const issuerKeyHash = responder.hashes.keyHashes[hashAlgorithm];
    const serialNumber = Buffer.from(serial, "hex");
    const der = sequence(
      sequence(oid(HASH_OIDS[hashAlgorithm]), nullValue()),
      octetString(issuerNameHash),
      octetString(issuerKeyHash),
      integer(serialNumber),
    );
    return { hashAlgorithm, issuerNameHash, issuerKeyHash, serialNumber, der };
  }

  private async sign(
    responder: Responder,
    certIds: readonly CertId[],
    statuses: readonly CertificateRevocationStatus[],
    now: Date,
    nonce?: Buffer,
  ): Promise<{ der: Buffer; thisUpdate: Date; nextUpdate: Date }> {
    // Whole seconds: the encoding drops milliseconds, and stored times must match the signed ones.
    const thisUpdate = new Date(Math.floor(now.getTime() / 1000) * 1000);
    const nextUpdate = new Date(thisUpdate.getTime() + this.deps.settings.responseValiditySeconds * 1000);
    const tbs = buildResponseData({
      responderKeyHash: responder.keyHash,
      producedAt: thisUpdate,
      responses: certIds.map((certId, index) => ({
        certId,
        status: toCodecStatus(statuses[index] as CertificateRevocationStatus),
        thisUpdate,
        nextUpdate,
      })),
      ...(nonce ? { nonce } : {}),
    });
    const signature = await responder.signer.sign(tbs);
    return { der: assembleOcspResponse(tbs, responder.signer.signatureAlgorithm, signature, responder.certificateDer), thisUpdate, nextUpdate };
  }

  /** Loads each issuer's newest responder certificate, creating one when it is missing or two thirds through its life. */
  private async ensureResponders(): Promise<void> {
    const now = this.deps.clock.now();
    const lifetime = this.deps.settings.signerValiditySeconds * 1000;
    for (const issuer of this.deps.issuers()) {
      let record = await this.deps.repository.newestSigner(issuer.id);
      if (!record || record.notAfter.getTime() - now.getTime() < lifetime / 3) {
        const claimed = await this.deps.repository.claimSignerCreation(issuer.id, now, new Date(now.getTime() - SIGNER_CLAIM_STALE_MS));
        const next = claimed ? await this.createResponder(issuer, now) : await this.signerMadeElsewhere(issuer.id, record);
        if (!next) continue;
        record = next;
      }
      const current = this.responders.get(issuer.id);
      if (current && current.certificateDer.equals(record.certificateDer)) continue;
      const signer = await this.deps.keyStore.openKey(record.keyLabel);
      const fields = certificateFields(record.certificateDer);
      if (!fields.subjectPublicKeyInfo.equals(signer.publicKeySpki)) {
        throw new InternalError(`OCSP responder key "${record.keyLabel}" does not match its certificate`);
      }
      this.responders.set(issuer.id, {
        issuer,
        hashes: issuerHashes(issuer.authority.certificateDer),
        signer,
        certificateDer: record.certificateDer,
        keyHash: createHash("sha1").update(inspectSubjectPublicKeyInfo(fields.subjectPublicKeyInfo).subjectPublicKey).digest(),
        notAfter: record.notAfter,
      });
      this.deps.logger.info({ authorityId: issuer.id, keyLabel: record.keyLabel, notAfter: record.notAfter }, "OCSP responder certificate loaded");
      await this.recordIfMissing(issuer, record, fields, now);
    }
  }

  /**
   * Responder certificates signed before they went through the ledger are recorded there when loaded, so
   * that the history and the transparency log hold every one in use. Processes starting together may race
   * to do it; the loser's reservation fails on the serial and the winner's record stands.
   */
  private async recordIfMissing(issuer: Issuer, record: OcspSignerRecord, fields: CertificateFields, now: Date): Promise<void> {
    const serial = fields.serialNumberHex;
    if ((await this.deps.repository.status(issuer.id, serial)).kind !== "unknown") return;
    try {
      await this.signThroughLedger(
        issuer,
        fields.tbsDer,
        { serial, notBefore: fields.notBefore, notAfter: fields.notAfter, keyLabel: record.keyLabel, now },
        () => Promise.resolve(record.certificateDer),
        { signedAt: record.createdAt.toISOString() },
      );
      this.deps.logger.info({ authorityId: issuer.id, serial }, "earlier OCSP responder certificate recorded in the ledger");
    } catch (error) {
      if ((await this.deps.repository.status(issuer.id, serial)).kind !== "unknown") return;
      this.deps.logger.warn({ err: error, authorityId: issuer.id, serial }, "could not record an earlier OCSP responder certificate in the ledger");
    }
  }

  /**
   * Waits for the responder certificate another process has claimed to create. Undefined when none appears
   * in time (that process died): the claim goes stale and a later round creates one.
   */
  private async signerMadeElsewhere(authorityId: string, current: OcspSignerRecord | undefined): Promise<OcspSignerRecord | undefined> {
    const deadline = performance.now() + SIGNER_WAIT_MS;
    for (;;) {
      const newest = await this.deps.repository.newestSigner(authorityId);
      if (newest && (!current || newest.notAfter.getTime() > current.notAfter.getTime())) return newest;
      if (performance.now() > deadline) {
        this.deps.logger.warn({ authorityId }, "another process claimed the OCSP responder certificate but has not stored it");
        return current;
      }
      await sleep(SIGNER_POLL_MS);
    }
  }

  /**
   * Signs a responder certificate through the issuance ledger, like any certificate a key of ours signs:
   * reserved with its TBS and an audit event first, then signed, then stored (and so in the history and the
   * transparency log), or marked failed. `sign` is the issuer's signature, except when recording a
   * certificate signed earlier (see `recordIfMissing`).
   */
  private async signThroughLedger(
    issuer: Issuer,
    tbsDer: Buffer,
    certificate: { serial: string; notBefore: Date; notAfter: Date; keyLabel: string; now: Date },
    sign: () => Promise<Buffer> = () => issuer.sign(tbsDer),
    details: Record<string, unknown> = {},
  ): Promise<Buffer> {
    const { serial, now } = certificate;
    const event = {
      actor: RESPONDER_REQUESTER,
      subject: serial,
      details: { profile: "ocsp-responder", issuerId: issuer.id, keyLabel: certificate.keyLabel, ...details },
    };
    const [reservation] = await this.deps.ledger.prepare(
      [
        {
          serial,
          authorityId: issuer.id,
          spiffeId: "",
          dnsNames: [],
          notBefore: certificate.notBefore,
          notAfter: certificate.notAfter,
          keyType: "P-256",
          requester: RESPONDER_REQUESTER,
          tbsDer,
          profile: "ocsp-responder",
          audit: { type: "issuance.prepared", outcome: "success", ...event },
        },
      ],
      now,
    );
    if (!reservation?.ok) throw new InternalError(`the OCSP responder certificate ${serial} could not be reserved`);
    let der: Buffer;
    try {
      der = await sign();
    } catch (error) {
      const code = error instanceof AnchorageError ? error.code : "INTERNAL";
      await this.deps.ledger.abandon([{ serial, audit: { type: "issuance.failed", outcome: "failure", code, ...event } }], now);
      throw error;
    }
    await this.deps.ledger.complete(
      [{ serial, der, fingerprintSha256: createHash("sha256").update(der).digest("hex"), audit: { type: "issuance.signed", outcome: "success", ...event } }],
      now,
    );
    return der;
  }

  private async createResponder(issuer: Issuer, now: Date) {
    const stamp = now.toISOString().slice(0, 10).replaceAll("-", "");
    const keyLabel = `anchorage-ocsp-${issuer.id.slice(0, 8)}-${stamp}-${randomBytes(2).toString("hex")}`;
    const signer = await this.deps.keyStore.generateKey(keyLabel, { type: "ec", curve: "P-256" });
    const issuerFields = certificateFields(issuer.authority.certificateDer);
    // Whole seconds, as X.509 encodes them, so the ledger's record says exactly what the certificate says.
    const wholeSeconds = (milliseconds: number): Date => new Date(Math.floor(milliseconds / 1000) * 1000);
    const notBefore = wholeSeconds(Math.max(now.getTime() - 300_000, issuer.notBefore.getTime()));
    const notAfter = wholeSeconds(Math.min(now.getTime() + this.deps.settings.signerValiditySeconds * 1000, issuer.notAfter.getTime()));
    const serialNumber = generateSerial();
    const tbs = buildOcspSignerTbs({
      subjectNameDer: buildName({ commonName: `Anchorage OCSP Responder ${issuer.id.slice(0, 8)}`, organization: "Anchorage" }),
      subjectPublicKeyInfo: signer.publicKeySpki,
      serialNumber,
      notBefore,
      notAfter,
      signatureAlgorithm: issuer.template.signatureAlgorithm,
      issuerNameDer: issuerFields.subjectNameDer,
      issuerSubjectKeyIdentifier: issuerFields.subjectKeyIdentifier,
    });
    const certificateDer = await this.signThroughLedger(issuer, tbs, { serial: serialNumber.toString("hex"), notBefore, notAfter, keyLabel, now });
    // One self-test signature, checked against the new certificate before anything relies on it.
    const probe = randomBytes(32);
    const probeSignature = await signer.sign(probe);
    const publicKey = createPublicKey({ key: signer.publicKeySpki, format: "der", type: "spki" });
    if (!verify(SIGNATURE_HASH_ALGORITHMS[signer.signatureAlgorithm], probe, { key: publicKey, dsaEncoding: "der" }, probeSignature)) {
      throw new InternalError(`the new OCSP responder key "${keyLabel}" does not sign correctly`);
    }
    const record = { keyLabel, authorityId: issuer.id, certificateDer, notBefore, notAfter, createdAt: now };
    await this.deps.repository.insertSigner(record);
    this.deps.logger.info({ authorityId: issuer.id, keyLabel, notAfter }, "OCSP responder certificate created");
    return record;
  }
}
