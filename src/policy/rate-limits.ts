import { RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";
import { clientNetworkOf } from "../common/client-address.js";
import { RateLimitedError } from "../common/errors.js";

export interface RateLimitSettings {
  /** Length of the fixed window all limits count in. */
  readonly windowSeconds: number;
  /** Failed attempts (unknown credentials, bad API keys) one client address may make per window. */
  readonly failuresPerAddress: number;
  /** Issuances one credential (enrollment token, JWT subject) may ask for per window. */
  readonly issuancesPerCredential: number;
  /** Requests one API key may make per window. */
  readonly requestsPerApiKey: number;
}

/**
 * The service's rate limits, in this process's memory (each worker of a cluster counts its own share).
 * A client address means an IPv4 address or an IPv6 /64 (see clientNetworkOf).
 *
 * A client address is limited by its failures, not by its traffic: many workloads may share an address (NAT,
 * a node), and their successful issuances are bounded by their credentials. Once an address has used up its
 * failures, requests from it without a good API key are refused whole until the window ends; a good API key
 * is not held back by its address, so an operator can still act while an address nearby is being abusive.
 */
export class RateLimits {
  private readonly failures: RateLimiterMemory;
  private readonly issuances: RateLimiterMemory;
  private readonly apiKeyRequests: RateLimiterMemory;

  constructor(private readonly settings: RateLimitSettings) {
    const window = (points: number, keyPrefix: string) => new RateLimiterMemory({ points, duration: settings.windowSeconds, keyPrefix });
    this.failures = window(settings.failuresPerAddress, "failures");
    this.issuances = window(settings.issuancesPerCredential, "issuances");
    this.apiKeyRequests = window(settings.requestsPerApiKey, "apikey");
  }

  /** The refusal for an address that has used up its failed attempts, or undefined while it has not. */
  async addressRefusal(remoteAddress: string | undefined): Promise<RateLimitedError | undefined> {
    const state = await this.failures.get(clientNetworkOf(remoteAddress));
    if (!state || state.consumedPoints < this.settings.failuresPerAddress) return undefined;
    return refusal(state, "too many failed attempts from this address");
  }

  /** Counts a failed attempt against the address; never refuses by itself. */
  failedAttempt(remoteAddress: string | undefined): void {
    void this.failures.penalty(clientNetworkOf(remoteAddress), 1);
  }

  /** Takes one issuance from the credential's allowance, or throws RATE_LIMITED. */
  async takeIssuance(credential: string): Promise<void> {
    await take(this.issuances, credential, "too many issuances for this credential");
  }

  /** Takes one request from the API key's allowance, or throws RATE_LIMITED. */
  async takeApiKeyRequest(apiKeyId: string): Promise<void> {
    await take(this.apiKeyRequests, apiKeyId, "too many requests with this API key");
  }
}

async function take(limiter: RateLimiterMemory, key: string, reason: string): Promise<void> {
  try {
    await limiter.consume(key);
  } catch (error) {
    if (error instanceof RateLimiterRes) throw refusal(error, reason);
    throw error;
  }
}

function refusal(state: RateLimiterRes, reason: string): RateLimitedError {
  const retryAfterSeconds = Math.max(1, Math.ceil(state.msBeforeNext / 1000));
  return new RateLimitedError(`${reason}; try again in ${retryAfterSeconds} s`, retryAfterSeconds);
}
