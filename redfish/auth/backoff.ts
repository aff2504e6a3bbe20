// Failed-login back-off that an attacker cannot turn against the account it guesses at:
//  - per username + client address ("pair"): after `maxFailures` failures that pair is locked for baseDelay,
//    doubling with every further failure up to maxDelay, and its logins are refused without a password check.
//    Only the guessing client is refused; the same user from any other address is not.
//  - per username and per client address alone: failures there (guessing from many addresses, or many
//    usernames from one address) only delay the next check of that user or address, they never refuse it.
//    A correct password still gets in, later.
// Keys are keyed digests of fixed size (an attacker's 60,000-character user name costs the same as "bob"),
// and the records are bounded in bytes, least recently failed dropped first.
import { keyedDigest } from "./users";

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

/** The back-off keys of one login attempt. */
export interface BackoffKeys {
  /** The username at this client address: refused while locked. */
  pair: string;
  /** The username from anywhere: delayed while locked. */
  user?: string;
  /** The client address for any username: delayed while locked. */
  address: string;
}

/** Keys of a login attempt; `username` undefined when it could not be read (only the address counts). */
export function backoffKeys(username: string | undefined, clientAddress: string): BackoffKeys {
  const address = digestKey("addr", clientAddress);
  if (username === undefined) return { pair: digestKey("pair-unknown", clientAddress), address };
  return { pair: digestKey("pair", username, clientAddress), user: digestKey("user", username), address };
}

const delayedKeys = (keys: BackoffKeys): string[] => (keys.user === undefined ? [keys.address] : [keys.user, keys.address]);

function digestKey(...parts: string[]): string {
  return keyedDigest("backoff", ...parts).toString("base64", 0, 16); // 128 bits: 24 characters
}

/**
 * Estimated heap per record: a Map entry, a 24-character key string and a three-number object. Generous, so
 * that MAX_BACKOFF_BYTES really is an upper bound.
 */
const RECORD_BYTES = 200;
/** Memory the back-off may use, whatever an attacker sends. */
export const MAX_BACKOFF_BYTES = 4 * 1024 * 1024;
const MAX_RECORDS = Math.floor(MAX_BACKOFF_BYTES / RECORD_BYTES);

/** Longest a login is held back by the username or address delay (well inside any client's read timeout). */
export const MAX_LOGIN_DELAY_MS = 2_000;

export class LoginBackoff {
  private readonly records = new Map<string, FailureRecord>(); // insertion order = least recently failed first

  constructor(private readonly now: () => number = Date.now) {}

  /** Seconds until the pair may try again (0: allowed now). */
  refusedForSeconds(keys: BackoffKeys): number {
    return Math.ceil(this.remainingMs(keys.pair, this.now()) / 1000);
  }

  /** How long to hold this login back before checking it (0: at once), at most MAX_LOGIN_DELAY_MS. */
  delayMs(keys: BackoffKeys): number {
    const now = this.now();
    return Math.min(MAX_LOGIN_DELAY_MS, Math.max(0, ...delayedKeys(keys).map(key => this.remainingMs(key, now))));
  }

  recordFailure(keys: BackoffKeys, policy: LockoutPolicy): void {
    const now = this.now();
    for (const key of [keys.pair, ...delayedKeys(keys)]) {
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
   * A successful login clears its pair and its username's delay. The address record stays: otherwise a client
   * holding one valid account could reset its address between guesses at other usernames.
   */
  recordSuccess(keys: BackoffKeys): void {
    this.records.delete(keys.pair);
    if (keys.user !== undefined) this.records.delete(keys.user);
  }

  get size(): number {
    return this.records.size;
  }

  private remainingMs(key: string, now: number): number {
    const record = this.current(key, now);
    return record && record.lockedUntil > now ? record.lockedUntil - now : 0;
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
