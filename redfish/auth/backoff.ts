// Failed-login back-off, kept per username and per client address. After `maxFailures` failures a key is
// locked for baseDelay, doubling with every further failure up to maxDelay. While a key is locked,
// logins on it are refused without checking the password (no oracle, no hashing cost); those refusals
// do not extend the lock, so a client that retries with the right password gets in once it expires.

export interface LockoutPolicy {
  maxFailures: number;
  baseDelaySeconds: number;
  maxDelaySeconds: number;
}

interface FailureRecord {
  failures: number;
  lockedUntil: number; // ms epoch; 0 when not locked
  forgetAt: number; // ms epoch: the record is dropped after a quiet period
}

/** Bound on tracked keys: a flood of distinct usernames cannot grow memory without limit. */
const MAX_RECORDS = 100_000;

export class LoginBackoff {
  private readonly records = new Map<string, FailureRecord>(); // insertion order = least recently failed first

  constructor(private readonly now: () => number = Date.now) {}

  /** Seconds until a login on any of `keys` may be tried again (0: allowed now). */
  retryAfterSeconds(keys: readonly string[]): number {
    const now = this.now();
    let waitMs = 0;
    for (const key of keys) {
      const record = this.current(key, now);
      if (record && record.lockedUntil > now) waitMs = Math.max(waitMs, record.lockedUntil - now);
    }
    return Math.ceil(waitMs / 1000);
  }

  recordFailure(keys: readonly string[], policy: LockoutPolicy): void {
    const now = this.now();
    for (const key of keys) {
      const record = this.current(key, now) ?? { failures: 0, lockedUntil: 0, forgetAt: 0 };
      record.failures += 1;
      if (record.failures >= policy.maxFailures) {
        const exponent = Math.min(record.failures - policy.maxFailures, 30);
        const delaySeconds = Math.min(policy.baseDelaySeconds * 2 ** exponent, policy.maxDelaySeconds);
        record.lockedUntil = now + delaySeconds * 1000;
      }
      // Failures are forgotten after a quiet period as long as the longest lock.
      record.forgetAt = Math.max(record.lockedUntil, now) + policy.maxDelaySeconds * 1000;
      this.records.delete(key);
      this.records.set(key, record);
    }
    while (this.records.size > MAX_RECORDS) {
      const oldest = this.records.keys().next().value;
      if (oldest === undefined) break;
      this.records.delete(oldest);
    }
  }

  /**
   * A successful login clears its username's record. Address records are not cleared: otherwise a
   * client holding one valid account could reset its address between guesses at other usernames.
   */
  recordSuccess(key: string): void {
    this.records.delete(key);
  }

  private current(key: string, now: number): FailureRecord | undefined {
    const record = this.records.get(key);
    if (record && record.forgetAt <= now) {
      this.records.delete(key);
      return undefined;
    }
    return record;
  }
}
