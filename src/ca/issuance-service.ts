import { createHash, createPublicKey } from "node:crypto";
import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../common/clock.js";
import {
  AnchorageError,
  BadUserInputError,
  ForbiddenError,
  InternalError,
  type ErrorCode,
  PolicyViolationError,
  UnauthenticatedError,
} from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import { parseCsrOffThread, type ParsedCsr } from "./csr.js";
import type { Issuer } from "./issuer.js";
import { generateSerial } from "./serial.js";
import { lintWorkloadCertificate, type WorkloadCertificateFields } from "./lint.js";
import type { IssuanceAuthorizer, IssuanceCredentials, IssuanceGrant, IssuanceLedger, PreparedIssuance, ReservationResult } from "./ports.js";

export interface IssueRequest extends IssuanceCredentials {
  readonly csr: string;
  readonly ttlSeconds?: number | null;
}

export interface IssuedCertificate {
  readonly serial: string;
  readonly certificateDer: Buffer;
  readonly chainDer: readonly Buffer[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly spiffeId: string;
  readonly dnsNames: readonly string[];
  readonly issuerId: string;
}

export interface IssuanceSettings {
  readonly trustDomain: string;
  readonly defaultTtlSeconds: number;
  readonly maxTtlSeconds: number;
  readonly backdateSeconds: number;
  readonly maxBatchSize: number;
}

export interface RequestContext {
  readonly remoteAddress?: string;
}

/** The checks a dry run reports on, in the order issuance applies them. */
export type IssuanceRule = "credential" | "csr" | "lifetime" | "identity" | "lint";

export interface IssuanceRefusal {
  readonly rule: IssuanceRule;
  readonly code: ErrorCode;
  readonly message: string;
}

/** What `explain` found: the refusals, or the certificate the request would get. */
export interface IssuanceDecision {
  readonly allowed: boolean;
  readonly refusals: readonly IssuanceRefusal[];
  readonly requester?: string;
  readonly spiffeId?: string;
  readonly dnsNames?: readonly string[];
  readonly keyType?: string;
  readonly certificate?: { readonly issuerId: string; readonly notBefore: Date; readonly notAfter: Date; readonly ttlSeconds: number };
}

/** Supplies the issuer that is active now; rotation swaps it without a restart. */
export type ActiveIssuerSource = () => Issuer;

export const MIN_TTL_SECONDS = 60;


/** Everything decided about one request before anything is written. */
interface PlannedIssuance {
  readonly issuer: Issuer;
  readonly grant: IssuanceGrant;
  readonly fields: WorkloadCertificateFields;
  readonly prepared: PreparedIssuance;
}



/**
 * The issuance cycle: authorise → parse and check the CSR → build the TBS (pure) → lint → reserve serial, TBS,
 * token use and audit event in one transaction → sign once through the HSM → verify → store → respond.
 * A batch goes through the same steps with one transaction per step for all its items.
 */
export class IssuanceService {
  constructor(
    private readonly deps: {
      readonly authorizer: IssuanceAuthorizer;
      readonly ledger: IssuanceLedger;
      readonly activeIssuer: ActiveIssuerSource;
      readonly audit: AuditLog;
      readonly clock: Clock;
      readonly logger: Logger;
      readonly settings: IssuanceSettings;
      /**
       * Takes one issuance from the grant's credential allowance, or throws RATE_LIMITED: after the credential
       * checked out (nobody can use up another's allowance by naming it), before the CSR is parsed.
       */
      readonly admitIssuance?: (grant: IssuanceGrant) => Promise<void>;
      /** Told about certificates once they are durable (e.g. to pre-sign their OCSP responses). */
      readonly onIssued?: (certificates: readonly { authorityId: string; serial: string }[]) => void;
    },
  ) {}

  async issue(request: IssueRequest, context: RequestContext = {}): Promise<IssuedCertificate> {
    const [outcome] = await this.run([request], context);
    if (outcome instanceof AnchorageError) throw outcome;
    return outcome as IssuedCertificate;
  }

  /**
   * Issues under a grant the caller vouches for, skipping credential checks: for callers that authenticated
   * the requester themselves (renewal over mutual TLS) and for the service's own TLS certificate.
   */
  async issueWithGrant(request: IssueRequest, grant: IssuanceGrant, context: RequestContext = {}): Promise<IssuedCertificate> {
    const [outcome] = await this.run([request], context, grant);
    if (outcome instanceof AnchorageError) throw outcome;
    return outcome as IssuedCertificate;
  }

  /** One outcome per request, in order: a bad item fails alone. */
  async issueBatch(requests: readonly IssueRequest[], context: RequestContext = {}): Promise<IssuanceOutcome[]> {
    const max = this.deps.settings.maxBatchSize;
    if (requests.length === 0 || requests.length > max) {
      throw new BadUserInputError(`a batch holds 1 to ${max} requests, not ${requests.length}`);
    }
    return this.run(requests, context);
  }

  private async run(
    requests: readonly IssueRequest[],
    context: RequestContext,
    trustedGrant?: IssuanceGrant,
  ): Promise<IssuanceOutcome[]> {
    const now = this.deps.clock.now();
    const outcomes: (IssuanceOutcome | undefined)[] = new Array(requests.length);
    const planned: { index: number; plan: PlannedIssuance }[] = [];
    await Promise.all(
      requests.map(async (request, index) => {
        // Known once the credential checks out, so a refusal after that names who asked.
        let grant: IssuanceGrant | undefined;
        try {
          if (trustedGrant) grant = trustedGrant;
          else {
            grant = await this.deps.authorizer.authorize(request, now);
            await this.deps.admitIssuance?.(grant);
          }
          planned.push({ index, plan: await this.plan(request, now, context, grant) });
        } catch (error) {
          outcomes[index] = await this.refuse(error, request, context, grant);
        }
      }),
    );
    planned.sort((left, right) => left.index - right.index);
    if (planned.length === 0) return outcomes as IssuanceOutcome[];

    const reservations = await this.deps.ledger.prepare(
      planned.map(({ plan }) => plan.prepared),
      now,
    );
    const reserved: typeof planned = [];
    for (const [position, { index, plan }] of planned.entries()) {
      const reservation = reservations[position];
      if (reservation?.ok) {
        reserved.push({ index, plan });
        continue;
      }
      const refusal = reservationRefusal(reservation, plan.grant.renewal?.predecessorSerial);
      outcomes[index] = await this.refuse(refusal, requests[index] as IssueRequest, context, plan.grant);
    }

    const signatures = await Promise.allSettled(reserved.map(({ plan }) => plan.issuer.sign(plan.prepared.tbsDer)));
    const completed = [];
    const abandoned = [];
    for (const [position, { index, plan }] of reserved.entries()) {
      const signature = signatures[position] as PromiseSettledResult<Buffer>;
      const { prepared } = plan;
      if (signature.status === "fulfilled") {
        const der = signature.value;
        completed.push({
          authorityId: plan.issuer.id,
          serial: prepared.serial,
          der,
          fingerprintSha256: createHash("sha256").update(der).digest("hex"),
          audit: {
            type: "issuance.signed" as const,
            actor: prepared.requester,
            outcome: "success" as const,
            subject: prepared.serial,
            ...(context.remoteAddress ? { remoteAddress: context.remoteAddress } : {}),
            details: { spiffeId: prepared.spiffeId, issuerId: plan.issuer.id },
          },
        });
        outcomes[index] = {
          serial: prepared.serial,
          certificateDer: der,
          chainDer: plan.issuer.chainDer,
          notBefore: prepared.notBefore,
          notAfter: prepared.notAfter,
          spiffeId: prepared.spiffeId,
          dnsNames: prepared.dnsNames,
          issuerId: plan.issuer.id,
        };
      } else {
        const error = asAnchorageError(signature.reason);
        this.deps.logger.error({ err: signature.reason, serial: prepared.serial }, "signing failed");
        abandoned.push({
          serial: prepared.serial,
          ...(prepared.consumeTokenHash ? { refundTokenHash: prepared.consumeTokenHash } : {}),
          ...(prepared.consumeJwt ? { refundJwt: prepared.consumeJwt } : {}),
          audit: {
            type: "issuance.failed" as const,
            actor: prepared.requester,
            outcome: "failure" as const,
            subject: prepared.serial,
            code: error.code,
            ...(context.remoteAddress ? { remoteAddress: context.remoteAddress } : {}),
          },
        });
        outcomes[index] = error;
      }
    }
    // A certificate is returned only after its row is durable; if that write fails, the request fails.
    await Promise.all([
      completed.length > 0 ? this.deps.ledger.complete(completed, now) : undefined,
      abandoned.length > 0 ? this.deps.ledger.abandon(abandoned, now) : undefined,
    ]);
    if (completed.length > 0 && this.deps.onIssued) {
      this.deps.onIssued(completed.map((item) => ({ authorityId: item.authorityId, serial: item.serial })));
    }
    return outcomes as IssuanceOutcome[];
  }

  private async plan(
    request: IssueRequest,
    now: Date,
    context: RequestContext,
    grant: IssuanceGrant,
  ): Promise<PlannedIssuance> {
    const csr = await parseCsrOffThread(request.csr);
    checkIdentity(csr, grant);
    const ttlSeconds = this.lifetime(request.ttlSeconds, grant);
    const issuer = this.deps.activeIssuer();
    const fields = this.certificateFields(csr, grant, ttlSeconds, issuer, now);
    const { serialNumber, notBefore, notAfter } = fields;
    const problems = this.lint(fields, issuer);
    if (problems.length > 0) {
      throw new InternalError("the certificate failed the pre-issuance lint", { cause: new Error(problems.join("; ")) });
    }
    const serial = serialNumber.toString("hex");
    return {
      issuer,
      grant,
      fields,
      prepared: {
        serial,
        authorityId: issuer.id,
        spiffeId: csr.spiffeId,
        dnsNames: csr.dnsNames,
        notBefore,
        notAfter,
        keyType: csr.keyDescription,
        requester: grant.requester,
        tbsDer: issuer.template.buildTbs(fields),
        ...(grant.consumeTokenHash ? { consumeTokenHash: grant.consumeTokenHash } : {}),
        ...(grant.consumeJwt ? { consumeJwt: grant.consumeJwt } : {}),
        ...(grant.origin ? { origin: grant.origin } : {}),
        ...(grant.renewal ? { predecessorSerial: grant.renewal.predecessorSerial } : {}),
        audit: {
          type: "issuance.prepared",
          actor: grant.requester,
          outcome: "success",
          subject: serial,
          ...(context.remoteAddress ? { remoteAddress: context.remoteAddress } : {}),
          details: {
            spiffeId: csr.spiffeId,
            dnsNames: csr.dnsNames,
            keyType: csr.keyDescription,
            ttlSeconds,
            ...(grant.renewal ? { renews: grant.renewal.predecessorSerial } : {}),
          },
        },
      },
    };
  }

  /** The values that go into the TBS, from the checked CSR, the grant and the issuer. Pure apart from the serial. */
  private certificateFields(csr: ParsedCsr, grant: IssuanceGrant, ttlSeconds: number, issuer: Issuer, now: Date): WorkloadCertificateFields {
    // Whole seconds, as X.509 encodes them, so the stored record says exactly what the certificate says.
    const wholeSeconds = (milliseconds: number): Date => new Date(Math.floor(milliseconds / 1000) * 1000);
    return {
      serialNumber: generateSerial(),
      // Backdated for clock skew, but never before the issuer itself is valid.
      notBefore: wholeSeconds(Math.max(now.getTime() - this.deps.settings.backdateSeconds * 1000, issuer.notBefore.getTime())),
      // Never outlive the issuer: a leaf valid past its CA's notAfter would fail path validation late.
      notAfter: wholeSeconds(Math.min(now.getTime() + ttlSeconds * 1000, issuer.notAfter.getTime())),
      subjectPublicKeyInfo: csr.subjectPublicKeyInfo,
      keyType: csr.keyType,
      spiffeId: csr.spiffeId,
      dnsNames: csr.dnsNames,
      ...(grant.ipAddresses?.length ? { ipAddresses: grant.ipAddresses } : {}),
    };
  }

  private lint(fields: WorkloadCertificateFields, issuer: Issuer): string[] {
    return lintWorkloadCertificate(fields, {
      trustDomain: this.deps.settings.trustDomain,
      issuerNotBefore: issuer.notBefore,
      issuerNotAfter: issuer.notAfter,
      maxLifetimeSeconds: this.deps.settings.maxTtlSeconds + this.deps.settings.backdateSeconds,
    });
  }

  /**
   * Dry run of `issue`: every rule the request would fail, not just the first, and the certificate it would
   * get otherwise. Consumes no token use, writes no row or audit event, signs nothing.
   */
  async explain(request: IssueRequest): Promise<IssuanceDecision> {
    const now = this.deps.clock.now();
    const refusals: IssuanceRefusal[] = [];
    const check = async <T>(rule: IssuanceRule, work: () => T | Promise<T>): Promise<T | undefined> => {
      try {
        return await work();
      } catch (error) {
        const refusal = asAnchorageError(error);
        if (refusal.code === "INTERNAL") throw refusal;
        refusals.push({ rule, code: refusal.code, message: refusal.message });
        return undefined;
      }
    };
    const grant = await check("credential", () => this.deps.authorizer.authorize(request, now));
    // The reservation would refuse a single-use JWT presented again; the dry run reads the same record.
    if (grant?.consumeJwt && (await this.deps.ledger.jwtAlreadyUsed(grant.consumeJwt, now))) {
      const replayed = reservationRefusal({ ok: false, reason: "JWT_REPLAYED" }, undefined);
      refusals.push({ rule: "credential", code: replayed.code, message: replayed.message });
    }
    const csr = await check("csr", () => parseCsrOffThread(request.csr));
    // Without a credential the lifetime is judged against the operator maximum alone.
    const ceiling = grant ?? { requester: "", spiffeId: "", dnsNames: [], maxTtlSeconds: this.deps.settings.maxTtlSeconds };
    const ttlSeconds = await check("lifetime", () => this.lifetime(request.ttlSeconds, ceiling));
    if (grant && csr) await check("identity", () => checkIdentity(csr, grant));
    let certificate: IssuanceDecision["certificate"];
    if (grant && csr && ttlSeconds !== undefined && refusals.every((refusal) => refusal.rule !== "identity")) {
      const issuer = this.deps.activeIssuer();
      const fields = this.certificateFields(csr, grant, ttlSeconds, issuer, now);
      // Issuance treats a lint finding as a bug of ours and fails with INTERNAL; the dry run says the same.
      for (const problem of this.lint(fields, issuer)) refusals.push({ rule: "lint", code: "INTERNAL", message: problem });
      certificate = { issuerId: issuer.id, notBefore: fields.notBefore, notAfter: fields.notAfter, ttlSeconds };
    }
    return {
      allowed: refusals.length === 0,
      refusals,
      ...(grant ? { requester: grant.requester } : {}),
      ...(csr ? { spiffeId: csr.spiffeId, dnsNames: csr.dnsNames, keyType: csr.keyDescription } : {}),
      ...(certificate && refusals.length === 0 ? { certificate } : {}),
    };
  }

  /** TTL capping lives here and only here: requested, else default; never above the grant or operator maximum. */
  private lifetime(requested: number | null | undefined, grant: IssuanceGrant): number {
    const { defaultTtlSeconds, maxTtlSeconds } = this.deps.settings;
    const ceiling = Math.min(maxTtlSeconds, grant.maxTtlSeconds);
    if (requested === undefined || requested === null) return Math.min(defaultTtlSeconds, ceiling);
    if (!Number.isInteger(requested) || requested < MIN_TTL_SECONDS) {
      throw new BadUserInputError(`ttlSeconds must be an integer of at least ${MIN_TTL_SECONDS}`);
    }
    if (requested > ceiling) {
      throw new PolicyViolationError(`ttlSeconds ${requested} exceeds the maximum of ${ceiling} allowed for this identity`);
    }
    return requested;
  }

  private async refuse(error: unknown, request: IssueRequest, context: RequestContext, grant?: IssuanceGrant): Promise<AnchorageError> {
    const refusal = asAnchorageError(error);
    if (refusal.code === "INTERNAL") this.deps.logger.error({ err: error }, "issuance failed");
    const event = {
      type: "issuance.refused",
      actor: grant?.requester ?? (request.token ? "token:unknown" : "anonymous"),
      outcome: "failure",
      code: refusal.code,
      ...(grant ? { subject: grant.spiffeId } : {}),
      ...(context.remoteAddress ? { remoteAddress: context.remoteAddress } : {}),
      details: { reason: refusal.message },
    } as const;
    // Without a grant the credential did not check out, and over a limit the caller is refused for asking too
    // often: either way repeating costs the caller nothing, so such refusals are counted, not each recorded.
    if (grant && refusal.code !== "RATE_LIMITED") await this.deps.audit.record(event);
    else await this.deps.audit.recordCountedRefusal(event);
    return refusal;
  }
}

/** Why the ledger would not reserve an item, as the refusal the caller gets. */
function reservationRefusal(reservation: ReservationResult | undefined, predecessorSerial: string | undefined): AnchorageError {
  if (!reservation || reservation.ok) return new InternalError("the ledger gave no reservation for a request");
  switch (reservation.reason) {
    case "SUPERSEDED":
      return new PolicyViolationError(
        `certificate ${predecessorSerial} was already renewed (by ${reservation.successorSerial}); only the newest certificate of a lineage may renew`,
      );
    case "PREDECESSOR_REVOKED":
      return new ForbiddenError(`certificate ${predecessorSerial} was revoked while its renewal was being prepared`);
    case "ORIGIN_WITHDRAWN":
      return new ForbiddenError(
        `certificate ${predecessorSerial} can no longer renew: the credential its lineage started with was revoked or deleted while the renewal was being prepared`,
      );
    case "JWT_REPLAYED":
      return new UnauthenticatedError("the JWT was already used to obtain a certificate; present a fresh one");
    case "TOKEN_EXHAUSTED":
      return new UnauthenticatedError("the enrollment token is unknown, expired or used up");
  }
}

function checkIdentity(csr: ParsedCsr, grant: IssuanceGrant): void {
  if (grant.renewal) {
    checkRenewal(csr, grant, grant.renewal);
    return;
  }
  if (csr.spiffeId !== grant.spiffeId) {
    throw new PolicyViolationError(
      `the CSR asks for ${csr.spiffeId} but the credential allows only ${grant.spiffeId}`,
    );
  }
  const allowed = new Set(grant.dnsNames);
  const refused = csr.dnsNames.filter((name) => !allowed.has(name));
  if (refused.length > 0) {
    throw new PolicyViolationError(
      `the CSR asks for DNS names the credential does not allow: ${refused.join(", ")}` +
        (grant.dnsNames.length > 0 ? ` (allowed: ${grant.dnsNames.join(", ")})` : " (none are allowed)"),
    );
  }
}

/** A renewal keeps the identity exactly (no name added or dropped) and, unless the operator allows it, changes the key. */
function checkRenewal(csr: ParsedCsr, grant: IssuanceGrant, renewal: NonNullable<IssuanceGrant["renewal"]>): void {
  const asked = [...new Set(csr.dnsNames)].sort();
  const held = [...new Set(grant.dnsNames)].sort();
  if (csr.spiffeId !== grant.spiffeId || asked.join(",") !== held.join(",")) {
    throw new PolicyViolationError(
      `a renewal keeps the identity of the certificate it renews (${[grant.spiffeId, ...held].join(", ")}); the CSR asks for ${[csr.spiffeId, ...asked].join(", ")}`,
    );
  }
  const requestedKey = createPublicKey({ key: csr.subjectPublicKeyInfo, format: "der", type: "spki" }).export({ type: "spki", format: "der" });
  if (!renewal.allowSameKey && requestedKey.equals(renewal.predecessorSubjectPublicKeyInfo)) {
    throw new PolicyViolationError("a renewal needs a new key: the CSR's public key is the current certificate's");
  }
}

function asAnchorageError(error: unknown): AnchorageError {
  if (error instanceof AnchorageError) return error;
  return new InternalError("the certificate could not be issued", { cause: error });
}
export type IssuanceOutcome = IssuedCertificate | AnchorageError;
