// Redfish users from the module configuration and password verification that does not cost a bcrypt
// hash per request: successful verifications are remembered under a keyed digest of username+password, and
// a verified Basic header as it was sent, so that a client repeating it costs one map lookup.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { Log } from "../platform";
import type { UserConfig } from "../../capabilities/config/schema";
import type { KubernetesIdentity } from "./kubernetes";

/** Per-process key: digests of credentials and tokens are useless outside this process. */
const PROCESS_KEY = randomBytes(32);

export function keyedDigest(...parts: string[]): Buffer {
  const mac = createHmac("sha256", PROCESS_KEY);
  for (const part of parts) {
    mac.update(part);
    mac.update("\0");
  }
  return mac.digest();
}

/** Salt and hash of a random, discarded password; prefixed with a cost it is a valid bcrypt hash. */
const DUMMY_BCRYPT_BODY = "99Ufwf7K9pfhMCVpJ0dva.ud8HMYCXMfsvp4m.pWbbBN5UtpD7Ya.";

/** Bound on remembered successful verifications (a map of digests; cleared oldest-first). */
const MAX_VERIFIED = 10_000;
/** Longer Basic headers are verified but not remembered: the header cache stays within MAX_VERIFIED x 512 bytes. */
const MAX_REMEMBERED_HEADER_LENGTH = 512;

/** bcrypt.compare as the caller provides it (off the event loop: BcryptPool). */
export type BcryptCompare = (password: string, hash: string) => Promise<boolean>;

export interface UserAccount {
  readonly username: string;
  /** Chassis names this user may see and act on. */
  readonly chassis: readonly string[];
  /** Changes when the user's password changes: sessions opened with an older password end. */
  readonly credentialFingerprint: string;
  /** Set for a Kubernetes identity (redfish/auth/kubernetes.ts): its chassis are those its RBAC lets it see. */
  readonly identity?: KubernetesIdentity;
}

interface StoredUser {
  account: UserAccount;
  check: (password: string, bcryptCompare: BcryptCompare) => Promise<boolean>;
}

/**
 * The users of one configuration. A new directory is built on every config change, which also drops
 * every remembered verification (a changed or removed password stops working at once).
 */
export class UserDirectory {
  private readonly users = new Map<string, StoredUser>();
  private readonly verified = new Map<string, UserAccount>(); // hex digest of username+password -> account
  private readonly verifiedHeaders = new Map<string, { readonly account: UserAccount }>(); // Authorization header -> principal
  private readonly inFlight = new Map<string, Promise<UserAccount | undefined>>();
  /**
   * Unknown usernames are checked against a dummy hash of the highest configured cost, so a wrong
   * username costs as much time as a wrong password (no username enumeration through timing).
   */
  private readonly dummyHash: string | undefined;

  constructor(users: readonly UserConfig[]) {
    const costs = users.map(u => Number(/^\$2[aby]\$(\d\d)\$/.exec(u.passwordHash ?? "")?.[1])).filter(c => c > 0);
    this.dummyHash = costs.length > 0 ? `$2b$${String(Math.max(...costs)).padStart(2, "0")}$${DUMMY_BCRYPT_BODY}` : undefined;
    for (const user of users) {
      const secret = user.passwordHash ?? user.password;
      if (secret === undefined) continue; // the config schema rejects this; never make a user without a credential
      const account: UserAccount = Object.freeze({
        username: user.username,
        chassis: Object.freeze([...user.chassis]),
        credentialFingerprint: keyedDigest("credential", user.username, secret).toString("hex"),
      });
      if (user.passwordHash !== undefined) {
        const hash = user.passwordHash;
        this.users.set(user.username, { account, check: (password, bcryptCompare) => bcryptCompare(password, hash) });
      } else {
        Log.warn(
          { username: user.username },
          "Redfish user has a plain-text password in the configuration; store a bcrypt passwordHash instead",
        );
        const expected = keyedDigest("plain", secret);
        this.users.set(user.username, {
          account,
          check: async password => timingSafeEqual(keyedDigest("plain", password), expected),
        });
      }
    }
  }

  /** The account of a configured user (no password check). */
  account(username: string): UserAccount | undefined {
    return this.users.get(username)?.account;
  }

  get size(): number {
    return this.users.size;
  }

  /** The principal of a Basic header that was verified before (a map lookup: no hashing, no allocation). */
  verifiedHeader(authorization: string): { readonly account: UserAccount } | undefined {
    return this.verifiedHeaders.get(authorization);
  }

  /**
   * Remembers a Basic header whose credentials were just verified; the principal that verifiedHeader will give for
   * it from now on (the same object: replays.ts compares principals by identity).
   */
  rememberHeader(authorization: string, account: UserAccount): { readonly account: UserAccount } {
    const principal = Object.freeze({ account });
    if (authorization.length > MAX_REMEMBERED_HEADER_LENGTH) return principal;
    if (this.verifiedHeaders.size >= MAX_VERIFIED) {
      const oldest = this.verifiedHeaders.keys().next().value;
      if (oldest !== undefined) this.verifiedHeaders.delete(oldest);
    }
    this.verifiedHeaders.set(authorization, principal);
    return principal;
  }

  /** Whether these credentials were verified before (no password check, no back-off needed). */
  knownGood(username: string, password: string): UserAccount | undefined {
    return this.verified.get(keyedDigest("login", username, password).toString("hex"));
  }

  /** The account when username and password are right; undefined otherwise. */
  async verify(username: string, password: string, bcryptCompare: BcryptCompare): Promise<UserAccount | undefined> {
    const digest = keyedDigest("login", username, password).toString("hex");
    const known = this.verified.get(digest);
    if (known) return known;
    // Concurrent requests with the same credentials share one hash computation.
    const pending = this.inFlight.get(digest);
    if (pending) return pending;
    const check = this.check(username, password, bcryptCompare).then(account => {
      this.inFlight.delete(digest);
      if (account) this.remember(digest, account);
      return account;
    });
    this.inFlight.set(digest, check);
    return check;
  }

  private async check(username: string, password: string, bcryptCompare: BcryptCompare): Promise<UserAccount | undefined> {
    const user = this.users.get(username);
    if (!user) {
      if (this.dummyHash) await bcryptCompare(password, this.dummyHash).catch(() => false);
      else timingSafeEqual(keyedDigest("plain", password), keyedDigest("plain", ""));
      return undefined;
    }
    try {
      return (await user.check(password, bcryptCompare)) ? user.account : undefined;
    } catch {
      return undefined;
    }
  }

  private remember(digest: string, account: UserAccount): void {
    if (this.verified.size >= MAX_VERIFIED) {
      const oldest = this.verified.keys().next().value;
      if (oldest !== undefined) this.verified.delete(oldest);
    }
    this.verified.set(digest, account);
  }
}
