import { normaliseSerial } from "../ca/serial.js";
import type { Clock } from "../common/clock.js";
import { BadUserInputError, ConfigError, InternalError, NotFoundError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import { requireRole } from "../policy/api-keys.js";
import type { Principal } from "../policy/principal.js";
import type { Signer } from "../signer/signer.js";
import { checkpointText, signNote, verifierKey } from "./checkpoint.js";
import { consistencyProof, inclusionProof, treeRoot, verifyConsistency, type SubtreeAddress, type SubtreeHashes } from "./merkle.js";

/** A signed tree head as stored: `note` is the C2SP checkpoint, signature lines included. */
export interface StoredCheckpoint {
  readonly treeSize: number;
  readonly rootHash: Buffer;
  readonly note: string;
  readonly createdAt: Date;
}

/** Port implemented by the store. */
export interface TransparencyLogRepository {
  /**
   * In one write transaction, appends up to `limit` certificates and audit events not yet in the log as
   * leaves (certificates in commit order, then audit events in sequence order), with the subtree hashes
   * they complete. Safe to call from several processes at once: SQLite serialises the transactions.
   */
  sequence(limit: number): Promise<{ readonly appended: number; readonly treeSize: number }>;
  treeSize(): Promise<number>;
  /** The stored perfect-subtree hashes at these addresses (every one must exist), for roots and proofs. */
  subtreeHashes(addresses: readonly SubtreeAddress[]): Promise<SubtreeHashes>;
  leafIndexOfCertificate(serial: string): Promise<number | undefined>;
  /** Leaf data of leaves [start, end) rebuilt from the rows, streamed; `entry` is undefined where a row is gone. */
  entries(start: number, end: number): AsyncIterable<{ readonly leafIndex: number; readonly entry: Buffer | undefined }>;
  /** The leaf data rebuilt from the current rows (so an edited row shows); undefined if the row is gone. */
  entry(leafIndex: number): Promise<Buffer | undefined>;
  /** Keeps the first checkpoint of a size: two processes may sign the same size, and either is valid. */
  saveCheckpoint(checkpoint: StoredCheckpoint): Promise<void>;
  latestCheckpoint(): Promise<StoredCheckpoint | undefined>;
  checkpointAt(treeSize: number): Promise<StoredCheckpoint | undefined>;
}

export interface TransparencyLogSettings {
  /** Checkpoint origin and signature key name, e.g. `anchorage.test/log`. */
  readonly origin: string;
  /** How often new leaves are sequenced and a checkpoint signed. */
  readonly intervalMs: number;
  /** Leaves per sequencing transaction, so a backlog never holds the write lock for long. */
  readonly batchLimit: number;
}

export interface InclusionProofResult {
  readonly leafIndex: number;
  readonly treeSize: number;
  readonly entry: Buffer;
  readonly hashes: readonly Buffer[];
  readonly checkpoint: StoredCheckpoint;
}

export interface ConsistencyProofResult {
  readonly fromSize: number;
  readonly toSize: number;
  readonly hashes: readonly Buffer[];
  readonly fromCheckpoint: StoredCheckpoint | undefined;
  readonly toCheckpoint: StoredCheckpoint | undefined;
}

/**
 * The transparency log (RFC 9162 Merkle tree, C2SP checkpoints). Issuance and audit writes never wait for
 * it: a timer sequences what was committed since the last round and signs a checkpoint through the HSM,
 * so the merge delay is bounded by the interval plus one signature.
 */
export class TransparencyLog {
  readonly verifierKey: string;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<StoredCheckpoint | undefined> | undefined;

  constructor(
    private readonly options: {
      readonly repository: TransparencyLogRepository;
      readonly signer: Signer;
      readonly clock: Clock;
      readonly logger: Logger;
      readonly settings: TransparencyLogSettings;
    },
  ) {
    if (options.signer.signatureAlgorithm !== "ecdsa-with-SHA256") {
      throw new ConfigError(`the transparency log key ${options.signer.keyLabel} must be an ECDSA P-256 key`);
    }
    this.verifierKey = verifierKey(options.settings.origin, options.signer.publicKeySpki);
  }

  get origin(): string {
    return this.options.settings.origin;
  }

  /** Two intervals: a leaf committed just after a round waits for the next one, then for its signature. */
  get maxMergeDelaySeconds(): number {
    return Math.ceil((2 * this.options.settings.intervalMs) / 1000);
  }

  start(): void {
    const tick = (): void => {
      this.publish()
        .catch((error: unknown) => this.options.logger.error({ err: error }, "transparency log round failed"))
        .finally(() => {
          if (this.timer) this.timer = setTimeout(tick, this.options.settings.intervalMs).unref();
        });
    };
    this.timer = setTimeout(tick, 0).unref();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Sequences everything committed so far and signs a checkpoint if the tree grew. One round at a time. */
  publish(): Promise<StoredCheckpoint | undefined> {
    this.running ??= this.publishOnce().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async publishOnce(): Promise<StoredCheckpoint | undefined> {
    const { repository, signer, clock, logger, settings } = this.options;
    let treeSize = await repository.treeSize();
    for (;;) {
      const round = await repository.sequence(settings.batchLimit);
      treeSize = round.treeSize;
      if (round.appended < settings.batchLimit) break;
    }
    const latest = await repository.latestCheckpoint();
    if (latest && latest.treeSize >= treeSize) return latest;
    const rootHash = await withStoredHashes(repository, (hashes) => treeRoot(hashes, treeSize));
    // The stored hashes are the log's memory: before signing, check that they still extend what was signed.
    if (latest && latest.treeSize > 0) {
      const proof = await withStoredHashes(repository, (hashes) => consistencyProof(hashes, latest.treeSize, treeSize));
      if (!verifyConsistency(latest.treeSize, treeSize, latest.rootHash, rootHash, proof)) {
        logger.error({ signedSize: latest.treeSize, treeSize }, "stored log hashes do not extend the last checkpoint; not signing");
        throw new InternalError("the transparency log's stored hashes are inconsistent with its last checkpoint");
      }
    }
    const text = checkpointText({ origin: settings.origin, size: treeSize, rootHash });
    const note = await signNote(text, settings.origin, signer.publicKeySpki, (data) => signer.sign(data));
    const checkpoint: StoredCheckpoint = { treeSize, rootHash, note, createdAt: clock.now() };
    await repository.saveCheckpoint(checkpoint);
    logger.info({ treeSize }, "transparency log checkpoint signed");
    return (await repository.checkpointAt(treeSize)) ?? checkpoint;
  }

  async latestCheckpoint(principal: Principal): Promise<StoredCheckpoint | undefined> {
    requireRole(principal, "ADMIN", "AUDITOR");
    return this.options.repository.latestCheckpoint();
  }

  async inclusionProof(principal: Principal, requestedSerial: string, treeSize?: number | null): Promise<InclusionProofResult> {
    requireRole(principal, "ADMIN", "AUDITOR");
    const serial = normaliseSerial(requestedSerial);
    const { repository } = this.options;
    const checkpoint = await this.checkpointFor(treeSize);
    const leafIndex = await repository.leafIndexOfCertificate(serial);
    if (leafIndex === undefined || leafIndex >= checkpoint.treeSize) {
      throw new NotFoundError(
        `certificate ${serial} is not in the tree of ${checkpoint.treeSize} leaves; new certificates are included within ${this.maxMergeDelaySeconds} s`,
      );
    }
    const entry = await repository.entry(leafIndex);
    if (!entry) throw new InternalError(`the row of log leaf ${leafIndex} is missing`);
    const hashes = await withStoredHashes(repository, (stored) => inclusionProof(stored, leafIndex, checkpoint.treeSize));
    return { leafIndex, treeSize: checkpoint.treeSize, entry, hashes, checkpoint };
  }

  async consistencyProof(principal: Principal, fromSize: number, toSize: number): Promise<ConsistencyProofResult> {
    requireRole(principal, "ADMIN", "AUDITOR");
    const { repository } = this.options;
    const latest = await repository.latestCheckpoint();
    const signedSize = latest?.treeSize ?? 0;
    if (!Number.isSafeInteger(fromSize) || !Number.isSafeInteger(toSize) || fromSize < 1 || fromSize > toSize || toSize > signedSize) {
      throw new BadUserInputError(`need 1 <= fromSize <= toSize <= ${signedSize} (the latest signed tree size)`);
    }
    return {
      fromSize,
      toSize,
      hashes: await withStoredHashes(repository, (hashes) => consistencyProof(hashes, fromSize, toSize)),
      fromCheckpoint: await repository.checkpointAt(fromSize),
      toCheckpoint: await repository.checkpointAt(toSize),
    };
  }

  /** Leaf data of [start, end) for a verifier that recomputes the tree; `end` is capped at the latest checkpoint. */
  async entries(
    principal: Principal,
    start: number,
    end: number | undefined,
  ): Promise<AsyncIterable<{ readonly leafIndex: number; readonly entry: Buffer | undefined }>> {
    requireRole(principal, "ADMIN", "AUDITOR");
    const signedSize = (await this.options.repository.latestCheckpoint())?.treeSize ?? 0;
    const stop = Math.min(end ?? signedSize, signedSize);
    if (!Number.isSafeInteger(start) || start < 0 || !Number.isSafeInteger(stop)) {
      throw new BadUserInputError("start and end must be non-negative integers");
    }
    return this.options.repository.entries(start, stop);
  }

  private async checkpointFor(treeSize: number | null | undefined): Promise<StoredCheckpoint> {
    const { repository } = this.options;
    if (treeSize === undefined || treeSize === null) {
      const latest = await repository.latestCheckpoint();
      if (!latest) throw new NotFoundError("the log has not signed a checkpoint yet");
      return latest;
    }
    const checkpoint = Number.isSafeInteger(treeSize) ? await repository.checkpointAt(treeSize) : undefined;
    if (!checkpoint) throw new BadUserInputError(`the log signed no checkpoint of ${treeSize} leaves`);
    return checkpoint;
  }
}

/**
 * Runs a root or proof computation over the stored hashes it needs, fetched in one call: which subtrees a
 * computation visits depends only on the sizes, so a first pass with placeholder hashes names them.
 */
export async function withStoredHashes<T>(repository: TransparencyLogRepository, compute: (hashes: SubtreeHashes) => T): Promise<T> {
  const wanted: SubtreeAddress[] = [];
  compute({
    get: (level, index) => {
      wanted.push({ level, index });
      return PLACEHOLDER_HASH;
    },
  });
  return compute(await repository.subtreeHashes(wanted));
}

const PLACEHOLDER_HASH = Buffer.alloc(32);
