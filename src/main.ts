/**
 * Composition root: the one place that reads configuration, creates the database, the PKCS#11 module, the
 * issuers, the services and the listeners, wires them together and shuts them down.
 */
import "reflect-metadata";
import cluster from "node:cluster";
import { webcrypto } from "node:crypto";
import { once } from "node:events";
import type { Server } from "node:http";
import { isIP, isIPv4, type AddressInfo, type Server as NetServer } from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import * as x509 from "@peculiar/x509";
import { pino } from "pino";
import { AuditEventService } from "./audit/audit-events.js";
import { AuditLog } from "./audit/audit-log.js";
import { RefusalAggregator } from "./audit/refusal-aggregator.js";
import { TransparencyLog } from "./audit/transparency-log.js";
import { AuthorityService } from "./ca/authority-service.js";
import { CertificateOwnership } from "./ca/certificate-ownership.js";
import { CertificateService } from "./ca/certificate-service.js";
import { RenewalService } from "./ca/renewal-service.js";
import { IssuanceService, type IssuedCertificate } from "./ca/issuance-service.js";
import { AuthorityWatcher } from "./ca/authority-watcher.js";
import { IssuerRegistry } from "./ca/issuer-registry.js";
import { RotationService } from "./ca/rotation-service.js";
import {
  developmentHsmSettings,
  ensureAdminKey,
  ensureDevelopmentAuthorities,
  prepareDevelopmentHsm,
} from "./cli/development-bootstrap.js";
import { systemClock, type Clock } from "./common/clock.js";
import { ConfigError } from "./common/errors.js";
import { ipv6Groups } from "./common/ip-address.js";
import type { Logger } from "./common/logger.js";
import { certificateToPem, encodePem } from "./common/pem.js";
import { loadConfig, type Config } from "./config/config.js";
import type { Services } from "./graphql/context.js";
import { createGraphQLServer } from "./graphql/yoga.js";
import { createGraphQLListener, type TlsMaterial } from "./http/graphql-listener.js";
import { createPublicListener } from "./http/public-listener.js";
import { ReadinessMonitor } from "./http/readiness.js";
import { ApiKeyService } from "./policy/api-keys.js";
import { CredentialAuthorizer } from "./policy/credential-authorizer.js";
import { RateLimits } from "./policy/rate-limits.js";
import { JwtAttestor } from "./policy/jwt-attestation.js";
import { CredentialStanding } from "./policy/origin-standing.js";
import { RegistrationService } from "./policy/registrations.js";
import { CrlPublisher } from "./revocation/crl-publisher.js";
import { ocspErrorResponse } from "./revocation/ocsp-codec.js";
import { DEFAULT_OCSP_SETTINGS, OcspResponder } from "./revocation/ocsp-responder.js";
import { RevocationService } from "./revocation/revocation-service.js";
import { DEFAULT_TOKEN_SETTINGS, EnrollmentTokenService } from "./policy/enrollment-tokens.js";
import { Pkcs11KeyStore } from "./signer/pkcs11/pkcs11-key-store.js";
import { KeyNotFoundError, type KeyStore } from "./signer/signer.js";
import { openStore, type Store } from "./store/store.js";

export interface RunningService {
  readonly graphqlPort: number;
  readonly httpPort: number;
  close(): Promise<void>;
}

async function listen(server: Server | NetServer, port: number, host: string): Promise<number> {
  server.listen(port, host);
  await once(server, "listening");
  return (server.address() as AddressInfo).port;
}

/**
 * The 4 or 16 octets of an IP address literal, as an iPAddress SAN holds them; undefined for forms we do
 * not expand (an IPv6 address with an embedded IPv4 part, or a zone).
 */
function ipAddressOctets(address: string): Buffer | undefined {
  if (isIPv4(address)) return Buffer.from(address.split(".").map(Number));
  if (isIP(address) !== 6 || address.includes(".") || address.includes("%")) return undefined;
  return Buffer.from(
    ipv6Groups(address).flatMap((group) => {
      const value = Number.parseInt(group, 16);
      return [value >> 8, value & 0xff];
    }),
  );
}

function baseUrlOf(config: Config, httpPort: number): string {
  if (config.publicBaseUrl) return config.publicBaseUrl;
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  return `http://${host}:${httpPort}`;
}

/**
 * The service's own HTTPS identity: a key made in memory at each start (TLS handshakes sign with it, so it
 * stays off the HSM), certified by the active intermediate through the normal issuance path.
 */
async function issueServerCertificate(issuance: IssuanceService, config: Config): Promise<{ tls: TlsMaterial; issued: IssuedCertificate }> {
  const keys = (await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const spiffeId = `spiffe://${config.trustDomain}/anchorage/server`;
  const dnsNames = ["localhost"];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      keys,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: "url", value: spiffeId }, ...dnsNames.map((value) => ({ type: "dns" as const, value }))])],
    },
    webcrypto as unknown as Crypto,
  );
  // The listen address as an IP SAN too, so that clients may connect by address (https://127.0.0.1:8443).
  const octets = ipAddressOctets(config.host);
  const ipAddresses = octets ? [octets] : [];
  const issued = await issuance.issueWithGrant(
    { csr: csr.toString("pem"), ttlSeconds: config.issuance.maxTtlSeconds },
    {
      requester: "system:anchorage",
      spiffeId,
      dnsNames,
      maxTtlSeconds: config.issuance.maxTtlSeconds,
      ipAddresses,
      origin: { kind: "system", maxTtlSeconds: config.issuance.maxTtlSeconds },
    },
  );
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey));
  return {
    issued,
    tls: {
      keyPem: encodePem(pkcs8, "PRIVATE KEY"),
      certificateChainPem: [issued.certificateDer, ...issued.chainDer].map(certificateToPem).join(""),
    },
  };
}

/** The store the configuration names: PostgreSQL when a database URL is set, else SQLite in the data folder. */
function openConfiguredStore(config: Config): Promise<Store> {
  return openStore({ dataDir: config.dataDir, ...config.database });
}

/** Opens the store and the services that sit directly on it. */
async function openState(config: Config, logger: Logger, clock: Clock) {
  const store = await openConfiguredStore(config);
  const audit = new AuditLog(store.auditEvents, clock, logger.child({ component: "audit" }));
  return {
    store,
    audit,
    authorities: new AuthorityService(store.authorities, config.trustDomain),
    apiKeys: new ApiKeyService(store.apiKeys, audit, clock),
  };
}

function openKeyStore(config: Config, pin: string, logger: Logger): Promise<Pkcs11KeyStore> {
  return Pkcs11KeyStore.open({
    modulePath: config.hsm.modulePath,
    tokenLabel: config.hsm.tokenLabel,
    pin,
    sessionPoolSize: config.hsm.sessionPoolSize,
    logger: logger.child({ component: "pkcs11" }),
  });
}

/**
 * First-start work that must happen once, before any worker serves: in development, the tokens, the root
 * ceremony, the intermediate and the first admin key; always, the database migrations.
 */
export async function prepareDataFolder(config: Config, logger: Logger, clock: Clock = systemClock): Promise<void> {
  if (config.bootstrap !== "development") {
    await (await openConfiguredStore(config)).close();
    const keyStore = await openKeyStore(config, config.hsm.pin as string, logger);
    try {
      await ensureTransparencyLogKey(keyStore, config, logger);
    } finally {
      await keyStore.close();
    }
    return;
  }
  const hsm = prepareDevelopmentHsm(config, logger);
  const state = await openState(config, logger, clock);
  const keyStore = await openKeyStore(config, hsm.onlinePin, logger);
  try {
    await ensureDevelopmentAuthorities({ config, hsm, keyStore, authorities: state.authorities, crls: state.store.crls, clock, logger });
    await ensureAdminKey(state.apiKeys, config.dataDir, logger);
    await ensureTransparencyLogKey(keyStore, config, logger);
  } finally {
    await keyStore.close();
    await state.store.close();
  }
}

/**
 * The transparency log's signing key: P-256 on the online token, made once here, before any worker starts,
 * so that two processes never both create one.
 */
async function ensureTransparencyLogKey(keyStore: KeyStore, config: Config, logger: Logger): Promise<void> {
  const label = config.transparencyLog.keyLabel;
  try {
    await keyStore.openKey(label);
  } catch (error) {
    if (!(error instanceof KeyNotFoundError)) throw error;
    try {
      await keyStore.generateKey(label, { type: "ec", curve: "P-256" });
      logger.info({ keyLabel: label }, "transparency log key created");
    } catch (generationError) {
      // Nodes sharing a token may start together: the one that finds another's key under the label gives way.
      await keyStore.openKey(label).catch(() => {
        throw generationError;
      });
      logger.info({ keyLabel: label }, "transparency log key made by another node meanwhile");
    }
  }
}

/**
 * The variable through which a cluster's primary tells exactly one worker to run the sweeps over shared
 * state: sequencing the transparency log, re-signing ageing OCSP responses and CRLs, retiring intermediates.
 * Every process could run them safely (SQLite serialises the writes), but each would do the work again.
 */
const SWEEPER_VARIABLE = "ANCHORAGE_CLUSTER_SWEEPER";

/**
 * Starts the listeners of one service process on a prepared data folder. `runsSweeps` is false only for the
 * workers of a cluster that another worker sweeps for.
 */
export async function startService(
  config: Config,
  logger: Logger,
  { clock = systemClock, runsSweeps = true }: { readonly clock?: Clock; readonly runsSweeps?: boolean } = {},
): Promise<RunningService> {
  const pin = config.bootstrap === "development" ? developmentHsmSettings(config).onlinePin : config.hsm.pin;
  if (pin === undefined) throw new ConfigError("hsm.pin (ANCHORAGE_HSM_PIN) is required");

  const { store, audit, authorities, apiKeys } = await openState(config, logger, clock);
  const certificateStore = store.certificates;
  const authorityRepository = store.authorities;
  const registrationRepository = store.registrations;
  const enrollmentTokenRepository = store.enrollmentTokens;
  const enrollmentTokens = new EnrollmentTokenService(
    enrollmentTokenRepository,
    audit,
    clock,
    { trustDomain: config.trustDomain, maxTtlSeconds: config.issuance.maxTtlSeconds, ...DEFAULT_TOKEN_SETTINGS },
    registrationRepository,
  );
  const keyStore = await openKeyStore(config, pin, logger);

  const readiness = new ReadinessMonitor({
    probe: async () => {
      let database = false;
      try {
        await store.probeWritable();
        database = true;
      } catch (error) {
        logger.warn({ err: error }, "database not writable");
      }
      return { database, hsm: await keyStore.isHealthy() };
    },
    intervalMs: config.readiness.probeIntervalMs,
    logger: logger.child({ component: "readiness" }),
  });
  await readiness.start();
  // The responder needs the issuer, which needs the listener's port for its URLs: bind late.
  let ocspResponder: OcspResponder | undefined;
  const ocsp = {
    respond: (der: Buffer) =>
      ocspResponder ? ocspResponder.respond(der) : Promise.resolve({ der: ocspErrorResponse("tryLater"), cacheable: false as const }),
    generation: () => ocspResponder?.generation() ?? -1,
  };
  const publicListener = createPublicListener({ authorities, crls: store.crls, readiness: () => readiness.current(), ocsp, clock, logger: logger.child({ component: "http" }) });
  const httpPort = await listen(publicListener, config.httpPort, config.host);
  const baseUrl = baseUrlOf(config, httpPort);

  const intermediate = (await authorities.list()).find((authority) => authority.kind === "intermediate" && authority.status === "active");
  if (!intermediate?.keyLabel) throw new ConfigError("no active intermediate CA: run the ceremony and import one");
  // Where the store tells of other processes' changes, polling is only the fallback for a notification lost.
  const authorityWatcher = await AuthorityWatcher.open({
    repository: authorityRepository,
    logger: logger.child({ component: "authorities" }),
    intervalMs: store.hierarchyChanges ? 5_000 : 250,
  });
  const stopHearingHierarchyChanges = store.hierarchyChanges?.(() => void authorityWatcher.refresh());
  const issuers = new IssuerRegistry({ keyStore, publicBaseUrl: baseUrl, logger: logger.child({ component: "issuers" }) });
  await issuers.load(intermediate);
  await issuers.update(authorityWatcher.current().authorities);

  const revocations = store.revocations;
  const jwtAttestor =
    config.jwtIssuers.length > 0
      ? new JwtAttestor({ trustDomain: config.trustDomain, maxTtlSeconds: config.issuance.maxTtlSeconds, issuers: config.jwtIssuers, clock, logger })
      : undefined;
  const rateLimits = new RateLimits(config.rateLimits);
  const refusals = new RefusalAggregator((event) => audit.record(event).catch((error: unknown) => logger.error({ err: error }, "could not record a refusal")), clock, logger.child({ component: "audit" }), {
    windowSeconds: config.rateLimits.windowSeconds,
    individuallyRecorded: config.rateLimits.refusalsAuditedPerWindow,
    maxKinds: 10_000,
  });
  audit.routeCountedRefusals((event) => {
    refusals.record(event);
    // Being over a limit is not a failed attempt: counting it would keep a busy credential's address locked out.
    if (event.code !== "RATE_LIMITED") rateLimits.failedAttempt(event.remoteAddress);
  });
  refusals.start();
  const issuance = new IssuanceService({
    authorizer: new CredentialAuthorizer(
      enrollmentTokens,
      jwtAttestor,
      registrationRepository,
      new Set(config.jwtIssuers.filter((issuer) => issuer.requireRegistration).map((issuer) => issuer.issuer)),
    ),
    admitIssuance: (grant) => rateLimits.takeIssuance(grant.requester),
    ledger: certificateStore,
    activeIssuer: () => issuers.active(),
    onIssued: (certificates) => presignOcsp.presign(certificates),
    audit,
    clock,
    logger: logger.child({ component: "issuance" }),
    settings: { trustDomain: config.trustDomain, ...config.issuance },
  });
  const crlPublisher = new CrlPublisher({
    repository: revocations,
    crls: store.crls,
    issuers: () => issuers.all(),
    clock,
    logger: logger.child({ component: "crl" }),
    settings: config.crl,
  });
  ocspResponder = new OcspResponder({
    repository: store.ocsp,
    ledger: certificateStore,
    keyStore,
    issuers: () => issuers.all(),
    clock,
    logger: logger.child({ component: "ocsp" }),
    settings: { ...DEFAULT_OCSP_SETTINGS, ...config.ocsp },
  });
  await ocspResponder.start({ refreshStoredResponses: false });
  const presignOcsp = ocspResponder;
  const transparencyLog = new TransparencyLog({
    repository: store.transparencyLog,
    signer: await keyStore.openKey(config.transparencyLog.keyLabel),
    clock,
    logger: logger.child({ component: "transparency-log" }),
    settings: {
      origin: config.transparencyLog.origin ?? `${config.trustDomain}/log`,
      intervalMs: config.transparencyLog.intervalMs,
      batchLimit: 20_000,
    },
  });
  // Rotation steps taken in any process (or by the admin CLI) reach this one through the watcher.
  authorityWatcher.subscribe((snapshot) => {
    issuers
      .update(snapshot.authorities)
      .then(() => Promise.all([crlPublisher.refreshStale(), ocspResponder?.refreshResponders()]))
      .catch((error: unknown) => logger.error({ err: error }, "could not follow a change of the CA hierarchy"));
  });
  authorityWatcher.start();
  const ownership = new CertificateOwnership({ certificates: certificateStore, authorities: authorityRepository });
  const rotation = new RotationService({
    repository: authorityRepository,
    consumers: store.consumers,
    authorities,
    issuers,
    watcher: authorityWatcher,
    audit,
    clock,
    logger: logger.child({ component: "rotation" }),
    maxConsumers: config.trustBundleConsumers.max,
    trustDomain: config.trustDomain,
    ownership,
  });
  // The sweeps over shared state run in one process among all that share the database: the holder of the
  // sweeper lease (on SQLite, the process the cluster primary picked). Another takes over when it goes.
  let retirement: NodeJS.Timeout | undefined;
  const sweeps = {
    start: async (): Promise<void> => {
      await crlPublisher.start();
      ocspResponder?.refreshStoredResponses(true);
      transparencyLog.start();
      // Superseded intermediates leave the bundle by themselves once nothing they signed is valid.
      retirement = setInterval(() => {
        rotation.retireExpired().catch((error: unknown) => logger.error({ err: error }, "automatic retirement check failed"));
      }, 60_000).unref();
    },
    stop: (): void => {
      crlPublisher.stop();
      ocspResponder?.refreshStoredResponses(false);
      transparencyLog.stop();
      clearInterval(retirement);
    },
  };
  const sweeperLease = runsSweeps ? store.sweeperLease(logger.child({ component: "sweeper" })) : undefined;
  let sweepsStarting: Promise<void> | undefined;
  await sweeperLease?.start((held) => {
    if (!held) return sweeps.stop();
    sweepsStarting = sweeps.start().catch((error: unknown) => logger.error({ err: error }, "could not start the sweeps"));
  });
  // A process that starts with the lease has its CRLs in place before it listens, as a single node always had.
  await sweepsStarting;
  const services: Services = {
    issuance,
    rateLimits,
    enrollmentTokens,
    apiKeys,
    authorities,
    certificates: new CertificateService(certificateStore, clock, ownership),
    auditEvents: new AuditEventService(store.auditEvents),
    transparencyLog,
    rotation,
    registrations: new RegistrationService(registrationRepository, audit, clock, {
      trustDomain: config.trustDomain,
      maxTtlSeconds: config.issuance.maxTtlSeconds,
      jwtIssuers: config.jwtIssuers.map((issuer) => issuer.issuer),
    }),
    renewal: new RenewalService({
      ownership,
      issuance,
      audit,
      clock,
      maxTtlSeconds: config.issuance.maxTtlSeconds,
      settings: config.renewal,
      origins: new CredentialStanding({
        tokens: enrollmentTokenRepository,
        registrations: registrationRepository,
        jwtIssuers: new Set(config.jwtIssuers.map((issuer) => issuer.issuer)),
      }),
    }),
    revocation: new RevocationService({
      repository: revocations,
      certificates: certificateStore,
      audit,
      clock,
      logger: logger.child({ component: "revocation" }),
      ownership,
      onRevoked: async (authorityId, serial) => {
        await Promise.all([crlPublisher.rebuild(authorityId), ocspResponder?.refresh(authorityId, serial)]);
      },
    }),
  };

  const yoga = createGraphQLServer({ logger: logger.child({ component: "graphql" }), limits: config.limits, corsOrigins: config.corsOrigins });
  const trustAnchorsPem = (await authorities.list())
    .filter((authority) => authority.kind === "root" && authority.status !== "retired")
    .map((authority) => certificateToPem(authority.certificateDer))
    .join("");
  const server = await issueServerCertificate(issuance, config);
  const graphqlListener = createGraphQLListener({
    yoga,
    services,
    tls: server.tls,
    clientCaPem: trustAnchorsPem,
    maxRequestBytes: config.limits.maxRequestBytes,
    logger: logger.child({ component: "graphql-http" }),
  });
  const graphqlPort = await listen(graphqlListener, config.graphqlPort, config.host);

  // The service's own certificate is renewed at two thirds of its life, and at once when another intermediate
  // becomes active; new handshakes pick it up, open connections keep theirs.
  let serverCertificate = server.issued;
  let renewal: NodeJS.Timeout | undefined;
  let renewing: Promise<void> | undefined;
  const scheduleRenewal = (delayMs: number): void => {
    clearTimeout(renewal);
    renewal = setTimeout(() => void renewServerCertificate("two thirds of its lifetime"), delayMs);
    renewal.unref();
  };
  const renewServerCertificate = (reason: string): Promise<void> => {
    renewing ??= issueServerCertificate(issuance, config)
      .then((next) => {
        graphqlListener.setSecureContext({ key: next.tls.keyPem, cert: next.tls.certificateChainPem, ca: trustAnchorsPem });
        serverCertificate = next.issued;
        logger.info({ serial: next.issued.serial, notAfter: next.issued.notAfter, issuerId: next.issued.issuerId, reason }, "service certificate renewed");
        scheduleRenewal(Math.max(5_000, Math.floor(((next.issued.notAfter.getTime() - clock.now().getTime()) * 2) / 3)));
      })
      .catch((error: unknown) => {
        logger.error({ err: error }, "service certificate renewal failed; retrying in a minute");
        scheduleRenewal(60_000);
      })
      .finally(() => {
        renewing = undefined;
      });
    return renewing;
  };
  scheduleRenewal(Math.max(5_000, Math.floor(((serverCertificate.notAfter.getTime() - clock.now().getTime()) * 2) / 3)));
  issuers.onActiveChange((issuer) => {
    if (issuer.id !== serverCertificate.issuerId) void renewServerCertificate("a new intermediate is active");
  });

  logger.info({ graphqlPort, httpPort, issuerId: issuers.active().id, publicBaseUrl: baseUrl, runsSweeps }, "listeners up");

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      clearTimeout(renewal);
      readiness.stop();
      await sweeperLease?.stop();
      sweeps.stop();
      ocspResponder?.stop();
      stopHearingHierarchyChanges?.();
      authorityWatcher.stop();
      const stopped = Promise.all([
        new Promise((resolve) => graphqlListener.close(resolve)),
        new Promise((resolve) => publicListener.close(resolve)),
      ]);
      graphqlListener.closeIdleConnections();
      publicListener.closeIdleConnections();
      await stopped;
      refusals.stop();
      await keyStore.close();
      await store.close();
      logger.info({}, "stopped");
    })();
    return closing;
  };
  return { graphqlPort, httpPort, close };
}

function createLogger(level: Config["logLevel"]): Logger {
  return pino({
    level,
    base: { service: "anchorage", pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Belt and braces: these never should reach a log line, and if one does it is blanked.
    redact: { paths: ["pin", "*.pin", "authorization", "*.authorization", "*.headers.authorization"], censor: "[redacted]" },
  });
}

/** The start-up contract: scripts wait for this line, so it is written whatever the log level. */
function announceListening(ports: { graphqlPort: number; httpPort: number }, config: Config, workers: number): void {
  process.stdout.write(
    `${JSON.stringify({ level: 30, time: new Date().toISOString(), service: "anchorage", pid: process.pid, ...ports, host: config.host, workers, msg: "listening" })}\n`,
  );
}

interface ListeningMessage {
  readonly type: "listening";
  readonly graphqlPort: number;
  readonly httpPort: number;
}

/**
 * Several processes share the listeners (the cluster module hands connections round-robin), the SQLite file
 * (WAL, one writer at a time) and the token (each process has its own PKCS#11 sessions). The primary
 * prepares the data folder, starts the workers, replaces one that dies, and stops them all on SIGTERM.
 * One worker at a time runs the sweeps; the replacement of that worker takes them over.
 */
async function runPrimary(config: Config, logger: Logger): Promise<void> {
  await prepareDataFolder(config, logger);
  let stopping = false;
  let announced = false;
  const listening = new Map<number, ListeningMessage>();
  let sweeperId: number | undefined;
  const fork = (): void => {
    const runsSweeps = sweeperId === undefined;
    const worker = cluster.fork({ [SWEEPER_VARIABLE]: runsSweeps ? "1" : "0" });
    if (runsSweeps) sweeperId = worker.id;
    worker.on("message", (message: ListeningMessage) => {
      if (message?.type !== "listening") return;
      listening.set(worker.id, message);
      if (!announced && listening.size === config.workers) {
        announced = true;
        announceListening({ graphqlPort: message.graphqlPort, httpPort: message.httpPort }, config, config.workers);
      }
    });
  };
  cluster.on("exit", (worker, code, signal) => {
    listening.delete(worker.id);
    if (worker.id === sweeperId) sweeperId = undefined;
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
      return;
    }
    logger.error({ workerPid: worker.process.pid, code, signal }, "worker died; starting a replacement");
    fork();
  });
  for (let index = 0; index < config.workers; index++) fork();
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill("SIGTERM");
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
}

async function runService(config: Config, logger: Logger, inCluster: boolean): Promise<void> {
  let service: RunningService;
  try {
    if (!inCluster) await prepareDataFolder(config, logger);
    service = await startService(config, logger, { runsSweeps: !inCluster || process.env[SWEEPER_VARIABLE] === "1" });
  } catch (error) {
    logger.error({ err: error }, "start-up failed");
    process.exit(1);
  }
  const ports = { graphqlPort: service.graphqlPort, httpPort: service.httpPort };
  if (inCluster) process.send?.({ type: "listening", ...ports } satisfies ListeningMessage);
  else announceListening(ports, config, 1);
  const stop = (signal: string) => {
    logger.info({ signal }, "shutting down");
    service.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  // In a cluster the primary relays SIGINT as SIGTERM; a worker ignores the terminal's own SIGINT.
  process.once("SIGINT", () => (inCluster ? undefined : stop("SIGINT")));
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(2);
  }
  const logger = createLogger(config.logLevel);
  if (config.workers > 1 && cluster.isPrimary) {
    await runPrimary(config, logger).catch((error: unknown) => {
      logger.error({ err: error }, "start-up failed");
      process.exit(1);
    });
    return;
  }
  await runService(config, logger, config.workers > 1);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void main();
}
