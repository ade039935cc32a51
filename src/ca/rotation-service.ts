import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../common/clock.js";
import { AnchorageError, BadUserInputError, ForbiddenError, NotFoundError, PolicyViolationError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import { requireRole } from "../policy/api-keys.js";
import { parseIdentityInput } from "../policy/identity-input.js";
import { actorOf, type Principal } from "../policy/principal.js";
import type { AuthorityService } from "./authority-service.js";
import type { AuthorityWatcher } from "./authority-watcher.js";
import type { CertificateOwnership } from "./certificate-ownership.js";
import type { IssuerRegistry } from "./issuer-registry.js";
import type { AuthorityRecord, CertificateRecord } from "./model.js";
import type { AuthorityRepository, TrustBundleConsumer, TrustBundleConsumerRepository } from "./ports.js";
import type { TrustBundle } from "./trust-bundle.js";

const CONSUMER_ID = /^[A-Za-z0-9._:/@-]{1,128}$/;

function checkConsumerId(consumerId: string): void {
  if (!CONSUMER_ID.test(consumerId)) throw new BadUserInputError("consumerId must be 1 to 128 letters, digits or . _ : / @ -");
}

function notAllowedFor(consumerId: string): ForbiddenError {
  return new ForbiddenError(
    `not allowed to acknowledge for trust bundle consumer ${JSON.stringify(consumerId)}: an admin registers each consumer with the SPIFFE ID that may speak for it`,
  );
}

export interface ConsumerStatus extends TrustBundleConsumer {
  /** Whether the consumer has installed a bundle with the intermediate that issues now. */
  readonly current: boolean;
}

/**
 * Intermediate rotation with overlap, and the trust bundle's consumers. A new intermediate is published
 * (in the bundle, not issuing) by the admin CLI; `activate` switches issuance to it in every process without
 * a restart; `retire` removes an old one from the bundle once the last certificate it signed has expired and
 * every registered consumer has acknowledged a bundle with its successor (an admin may override the latter), and
 * `retireExpired` does so by itself, on a timer, when both hold.
 */
export class RotationService {
  constructor(
    private readonly deps: {
      readonly repository: AuthorityRepository;
      readonly consumers: TrustBundleConsumerRepository;
      readonly authorities: AuthorityService;
      readonly issuers: IssuerRegistry;
      readonly watcher: AuthorityWatcher;
      readonly audit: AuditLog;
      readonly clock: Clock;
      readonly logger: Logger;
      /** Bound on registered consumers. */
      readonly maxConsumers: number;
      /** The SPIFFE IDs consumers are registered with belong to it. */
      readonly trustDomain: string;
      /** Authenticates control planes that acknowledge with their own certificate. */
      readonly ownership: CertificateOwnership;
    },
  ) {}

  /** Pushes the trust bundle of `trustDomain` to `listener` whenever it changes; returns the unsubscribe function. */
  watchTrustBundle(trustDomain: string | null | undefined, listener: (bundle: TrustBundle) => void): () => void {
    let last = this.deps.authorities.bundleOf(this.deps.watcher.current(), trustDomain).sequence;
    return this.deps.watcher.subscribe((snapshot) => {
      const bundle = this.deps.authorities.bundleOf(snapshot, trustDomain);
      if (bundle.sequence === last) return;
      last = bundle.sequence;
      listener(bundle);
    });
  }

  /**
   * Registers a consumer, or rebinds an existing one, with the SPIFFE ID whose certificate may acknowledge for
   * it (none: only admins may). Admin. Only admins create consumers, so strangers cannot fill the bounded table
   * or hold retirements back with made-up ones; the acknowledged version of an existing consumer is kept.
   */
  async registerConsumer(principal: Principal, input: { consumerId: string; spiffeId?: string | null }, remoteAddress?: string): Promise<ConsumerStatus> {
    requireRole(principal, "ADMIN");
    checkConsumerId(input.consumerId);
    const spiffeId = input.spiffeId == null ? null : parseIdentityInput(input.spiffeId, [], this.deps.trustDomain).spiffeId;
    const existing = await this.deps.consumers.get(input.consumerId);
    if (!existing && await this.deps.consumers.count() >= this.deps.maxConsumers) {
      throw new PolicyViolationError(`this CA tracks at most ${this.deps.maxConsumers} trust bundle consumers: unregister one first`);
    }
    const stored = await this.deps.consumers.register({ consumerId: input.consumerId, spiffeId, registeredBy: actorOf(principal) }, this.deps.clock.now());
    await this.deps.audit.record({
      type: "consumer.registered",
      actor: actorOf(principal),
      outcome: "success",
      subject: input.consumerId,
      ...(remoteAddress ? { remoteAddress } : {}),
      details: { spiffeId, previousSpiffeId: existing ? existing.spiffeId : null, existed: existing !== undefined },
    });
    return this.status(stored, await this.requiredSequence());
  }

  /** Removes a consumer: retirements stop waiting for it and nobody can acknowledge for it any more. Admin. */
  async unregisterConsumer(principal: Principal, consumerId: string, remoteAddress?: string): Promise<void> {
    requireRole(principal, "ADMIN");
    const existing = await this.deps.consumers.get(consumerId);
    if (!existing || !await this.deps.consumers.unregister(consumerId)) {
      throw new NotFoundError(`no trust bundle consumer with id ${JSON.stringify(consumerId.slice(0, 128))}`);
    }
    await this.deps.audit.record({
      type: "consumer.unregistered",
      actor: actorOf(principal),
      outcome: "success",
      subject: consumerId,
      ...(remoteAddress ? { remoteAddress } : {}),
      details: { spiffeId: existing.spiffeId, acknowledgedSequence: existing.acknowledgedSequence },
    });
  }

  /**
   * Records the bundle version a registered consumer installed. Needs an admin key, or the certificate of the
   * SPIFFE ID the consumer was registered with, presented over mutual TLS: a forged acknowledgement could let
   * an intermediate be retired while the mesh still needs it. An unknown consumer and the wrong caller are the
   * same FORBIDDEN, so that workloads cannot probe which consumers exist. Every acknowledgement, and every
   * refusal of an authenticated caller, is an audit event.
   */
  async acknowledge(principal: Principal, clientCertificate: Buffer | undefined, consumerId: string, sequence: number, remoteAddress?: string): Promise<TrustBundleConsumer> {
    const now = this.deps.clock.now();
    let caller: CertificateRecord | undefined;
    if (principal.kind === "apiKey" || !clientCertificate) requireRole(principal, "ADMIN");
    else caller = await this.deps.ownership.authenticate(clientCertificate, now);
    const actor = caller ? `certificate:${caller.serial}` : actorOf(principal);
    const audited = { actor, subject: consumerId.slice(0, 128), ...(remoteAddress ? { remoteAddress } : {}) };
    try {
      checkConsumerId(consumerId);
      const consumer = await this.deps.consumers.get(consumerId);
      if (!consumer || (caller && consumer.spiffeId !== caller.spiffeId)) throw notAllowedFor(consumerId);
      const current = await this.deps.repository.bundleSequence();
      if (!Number.isInteger(sequence) || sequence < 1 || sequence > current) {
        throw new BadUserInputError(`sequence must be a published bundle version, 1 to ${current}`);
      }
      // Undefined when an admin unregistered the consumer in between.
      const stored = await this.deps.consumers.acknowledge(consumerId, sequence, now);
      if (!stored) throw notAllowedFor(consumerId);
      await this.deps.audit.record({
        type: "consumer.acknowledged",
        outcome: "success",
        ...audited,
        details: { sequence, acknowledgedSequence: stored.acknowledgedSequence, spiffeId: caller?.spiffeId ?? null },
      });
      this.deps.logger.info({ consumerId, sequence: stored.acknowledgedSequence, actor }, "trust bundle acknowledged");
      return stored;
    } catch (error) {
      if (error instanceof AnchorageError) {
        await this.deps.audit.record({
          type: "consumer.acknowledgement_refused",
          outcome: "failure",
          code: error.code,
          ...audited,
          details: { sequence, reason: error.message, spiffeId: caller?.spiffeId ?? null },
        });
      }
      throw error;
    }
  }

  async consumers(principal: Principal): Promise<{ currentSequence: number; requiredSequence: number; consumers: ConsumerStatus[] }> {
    requireRole(principal, "ADMIN");
    const requiredSequence = await this.requiredSequence();
    return {
      currentSequence: await this.deps.repository.bundleSequence(),
      requiredSequence,
      consumers: (await this.deps.consumers.list()).map((consumer) => this.status(consumer, requiredSequence)),
    };
  }

  private status(consumer: TrustBundleConsumer, requiredSequence: number): ConsumerStatus {
    return { ...consumer, current: consumer.acknowledgedSequence >= requiredSequence };
  }

  /** Makes a published intermediate the one that issues, in every service process. Idempotent. */
  async activate(principal: Principal, id: string, remoteAddress?: string): Promise<AuthorityRecord> {
    requireRole(principal, "ADMIN");
    const authority = await this.intermediate(id);
    if (authority.status === "active") return authority;
    if (authority.status !== "published") throw new PolicyViolationError(`intermediate ${id} is retired and cannot issue again`);
    const now = this.deps.clock.now();
    if (authority.notBefore.getTime() > now.getTime() || authority.notAfter.getTime() <= now.getTime()) {
      throw new PolicyViolationError(`intermediate ${id} is not within its validity period`);
    }
    // Refuses before anything changes if the token does not hold the certificate's key.
    await this.deps.issuers.load(authority);
    const previous = (await this.deps.repository.list()).find((candidate) => candidate.kind === "intermediate" && candidate.status === "active");
    await this.deps.repository.activate(id);
    await this.deps.audit.record({
      type: "authority.activated",
      actor: actorOf(principal),
      outcome: "success",
      subject: id,
      ...(remoteAddress ? { remoteAddress } : {}),
      details: { previous: previous?.id ?? null },
    });
    await this.deps.watcher.refresh();
    await this.deps.issuers.update(this.deps.watcher.current().authorities);
    return await this.intermediate(id);
  }

  /**
   * Takes an intermediate out of the bundle. Refused while certificates it signed are still valid, and, unless
   * `force`, while a known consumer has not acknowledged a bundle with the intermediate that replaced it.
   */
  async retire(principal: Principal, id: string, force: boolean, remoteAddress?: string): Promise<AuthorityRecord> {
    requireRole(principal, "ADMIN");
    const authority = await this.intermediate(id);
    if (authority.status === "retired") return authority;
    if (authority.status === "active") throw new PolicyViolationError(`intermediate ${id} is the active one: activate its successor first`);
    const now = this.deps.clock.now();
    const lastExpiry = await this.deps.repository.lastLeafExpiry(id);
    if (lastExpiry && lastExpiry.getTime() > now.getTime()) {
      throw new PolicyViolationError(`certificates signed by ${id} are valid until ${lastExpiry.toISOString()}; it stays published until then`);
    }
    const required = await this.requiredSequence();
    const lagging = (await this.deps.consumers.list()).filter((consumer) => consumer.acknowledgedSequence < required);
    if (lagging.length > 0 && !force) {
      throw new PolicyViolationError(
        `${lagging.length} trust bundle consumer(s) have not acknowledged bundle ${required} or later: ${lagging
          .slice(0, 10)
          .map((consumer) => `${consumer.consumerId} (at ${consumer.acknowledgedSequence})`)
          .join(", ")}; retry when they have, or force`,
      );
    }
    await this.deps.repository.setStatus(id, "retired");
    await this.deps.audit.record({
      type: "authority.retired",
      actor: actorOf(principal),
      outcome: "success",
      subject: id,
      ...(remoteAddress ? { remoteAddress } : {}),
      details: { forced: lagging.length > 0, laggingConsumers: lagging.map((consumer) => consumer.consumerId).slice(0, 100) },
    });
    await this.deps.watcher.refresh();
    return await this.intermediate(id);
  }

  /**
   * Retires, as `system`, every superseded intermediate whose certificates have all expired, once every known
   * consumer has the bundle with its successor. Never forces; an intermediate that never issued is left alone
   * (it is waiting to be activated). Returns the ids retired.
   */
  async retireExpired(): Promise<string[]> {
    const now = this.deps.clock.now();
    const required = await this.requiredSequence();
    if ((await this.deps.consumers.list()).some((consumer) => consumer.acknowledgedSequence < required)) return [];
    const retired: string[] = [];
    for (const authority of await this.deps.repository.list()) {
      if (authority.kind !== "intermediate" || authority.status !== "published") continue;
      const lastExpiry = await this.deps.repository.lastLeafExpiry(authority.id);
      if (!lastExpiry || lastExpiry.getTime() > now.getTime()) continue;
      await this.deps.repository.setStatus(authority.id, "retired");
      await this.deps.audit.record({
        type: "authority.retired",
        actor: "system",
        outcome: "success",
        subject: authority.id,
        details: { forced: false, laggingConsumers: [], lastCertificateExpired: lastExpiry.toISOString() },
      });
      this.deps.logger.info({ authorityId: authority.id }, "intermediate retired: its last certificate has expired");
      retired.push(authority.id);
    }
    if (retired.length > 0) await this.deps.watcher.refresh();
    return retired;
  }

  /** The bundle version every consumer needs before an old intermediate goes: the first one with the active intermediate. */
  private async requiredSequence(): Promise<number> {
    const active = (await this.deps.repository.list()).find((authority) => authority.kind === "intermediate" && authority.status === "active");
    return (active && await this.deps.repository.firstBundleSequenceContaining(active.id)) ?? await this.deps.repository.bundleSequence();
  }

  private async intermediate(id: string): Promise<AuthorityRecord> {
    const authority = await this.deps.repository.get(id);
    if (!authority || authority.kind !== "intermediate") throw new NotFoundError(`no intermediate authority with id ${JSON.stringify(id.slice(0, 80))}`);
    return authority;
  }
}
