/**
 * A token bucket for HSM signatures that anyone may ask for without credentials (OCSP requests signed as
 * they arrive). Holds up to `burst` signatures and refills at `perSecond`; one per process, whatever the
 * number of connections, so that no request pattern makes the token sign faster than the operator allows.
 */
export class SigningBudget {
  private readonly capacity: number;
  private available: number;
  private refilledAt: number;

  constructor(
    private readonly settings: { readonly perSecond: number; readonly burst: number },
    /** Monotonic milliseconds. */
    private readonly now: () => number = () => performance.now(),
  ) {
    // A rate of 0 turns on-request signing off; any other rate can hold at least one signature.
    this.capacity = settings.perSecond > 0 ? Math.max(1, settings.burst) : 0;
    this.available = this.capacity;
    this.refilledAt = now();
  }

  /** Takes one signature from the budget; false when it is spent. */
  tryTake(): boolean {
    const now = this.now();
    this.available = Math.min(this.capacity, this.available + ((now - this.refilledAt) / 1000) * this.settings.perSecond);
    this.refilledAt = now;
    if (this.available < 1) return false;
    this.available -= 1;
    return true;
  }
}
