/**
 * The fixed set of error codes clients can rely on. Every refusal the service makes
 * carries exactly one of these; the GraphQL layer copies it into `extensions.code` and nothing else.
 */
export const ERROR_CODES = [
  "UNAUTHENTICATED",
  "FORBIDDEN",
  "BAD_CSR",
  "POLICY_VIOLATION",
  "NOT_FOUND",
  "RATE_LIMITED",
  "HSM_UNAVAILABLE",
  "UNAVAILABLE",
  "BAD_USER_INPUT",
  "INTERNAL",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/**
 * Base of every expected failure. `message` is public: it must help the caller act and must never contain
 * secrets or internal detail. The internal reason goes into `cause`, which is logged but never sent.
 */
export abstract class AnchorageError extends Error {
  abstract readonly code: ErrorCode;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** No credential, or a credential we do not accept (unknown, expired or used-up token, bad API key). */
export class UnauthenticatedError extends AnchorageError {
  readonly code = "UNAUTHENTICATED";
}

/** The caller is known but its role does not allow the operation. */
export class ForbiddenError extends AnchorageError {
  readonly code = "FORBIDDEN";
}

/** The CSR cannot be used: malformed, wrong signature, unsupported key or malformed names. */
export class BadCsrError extends AnchorageError {
  readonly code = "BAD_CSR";
}

/** A well-formed request asks for something the caller's authorisation does not cover. */
export class PolicyViolationError extends AnchorageError {
  readonly code = "POLICY_VIOLATION";
}

export class NotFoundError extends AnchorageError {
  readonly code = "NOT_FOUND";
}

/** Too many requests or failed attempts in a window; the caller may try again after `retryAfterSeconds`. */
export class RateLimitedError extends AnchorageError {
  readonly code = "RATE_LIMITED";

  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
  }
}

/** The HSM cannot sign right now. Issuance fails closed: nothing is returned unsigned or signed elsewhere. */
export class HsmUnavailableError extends AnchorageError {
  readonly code = "HSM_UNAVAILABLE";
}

/**
 * The database cannot take the write right now (another process holds its lock past the bounded wait, or the
 * disk is full or failing). Retryable: the request was not completed, and the same request may be sent again.
 */
export class UnavailableError extends AnchorageError {
  readonly code = "UNAVAILABLE";
}

/** An argument is malformed or out of range (not a CSR problem). */
export class BadUserInputError extends AnchorageError {
  readonly code = "BAD_USER_INPUT";
}

/**
 * A broken invariant (signature that does not verify, TBS mismatch, corrupted record). The public message
 * stays generic; the cause is logged.
 */
export class InternalError extends AnchorageError {
  readonly code = "INTERNAL";
}

/** Configuration that cannot work. Raised at start-up only, never mapped to a client. */
export class ConfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ConfigError";
  }
}
