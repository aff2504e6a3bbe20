// Authentication of Redfish requests: HTTP Basic and X-Auth-Token sessions, with failed-login back-off
// per username and per client address. Nothing here logs a password, a token or an Authorization header.
//
// Back-off answers 401 (not 429), with Retry-After as a hint: sushy maps 401/403 to AccessError, which
// Ironic treats as a connection problem and retries after its connection_retry_interval, so a client
// with the right password recovers by itself once the lock expires. A 429 would surface in sushy as a
// generic HTTPError that Ironic does not retry (and a 401 tells an attacker nothing a 429 would not).
import { Log } from "../platform";
import { baseError, type RedfishError } from "../errors";
import { LoginBackoff, type LockoutPolicy } from "./backoff";
import { SessionStore, type Session } from "./sessions";
import type { UserAccount, UserDirectory } from "./users";

export const AUTH_REALM = 'Basic realm="Redfish", charset="UTF-8"';

export interface AuthSettings {
  users: UserDirectory;
  sessionTimeoutSeconds: number;
  lockout: LockoutPolicy;
}

export interface Principal {
  account: UserAccount;
  /** Set when the request authenticated with X-Auth-Token. */
  session?: Session;
}

export interface Credentials {
  authorization?: string;
  token?: string;
  clientAddress: string;
}

function unauthorized(retryAfterSeconds = 0): RedfishError {
  const headers: Record<string, string> = { "WWW-Authenticate": AUTH_REALM };
  if (retryAfterSeconds > 0) headers["Retry-After"] = String(retryAfterSeconds);
  return baseError(401, "NoValidSession", [], { headers });
}

/** A username as it may appear in a log line (attacker-controlled: bounded and printable). */
function loggableUsername(username: string): string {
  const printable = username.replace(/[^\x20-\x7e]/g, "?");
  return printable.length > 64 ? `${printable.slice(0, 64)}...` : printable;
}

/** `Basic base64(user:password)` → parts, or undefined when malformed. */
export function parseBasic(header: string): { username: string; password: string } | undefined {
  const match = /^basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(header);
  if (!match) return undefined;
  const decoded = Buffer.from(match[1], "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon <= 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export class Authenticator {
  readonly sessions: SessionStore;
  readonly backoff: LoginBackoff;

  constructor(
    private readonly settings: () => AuthSettings,
    now: () => number = Date.now,
  ) {
    this.sessions = new SessionStore(now);
    this.backoff = new LoginBackoff(now);
  }

  /** The principal of a request, or a 401 RedfishError. A present X-Auth-Token is never ignored. */
  async authenticate(credentials: Credentials): Promise<Principal> {
    const settings = this.settings();
    if (credentials.token !== undefined) {
      // An unknown token is not a failed login for back-off: 256-bit tokens cannot be guessed, and the
      // expired sessions of legitimate clients (sushy re-authenticates on 401) must not lock their address.
      const session = this.sessions.authenticate(credentials.token, settings.sessionTimeoutSeconds);
      if (!session) throw unauthorized();
      const account = settings.users.account(session.username);
      // A removed user or a changed password ends the user's sessions.
      if (!account || account.credentialFingerprint !== session.credentialFingerprint) {
        this.sessions.delete(session.id);
        throw unauthorized();
      }
      return { account, session };
    }
    if (credentials.authorization !== undefined) {
      const basic = parseBasic(credentials.authorization);
      if (!basic) {
        this.backoff.recordFailure([`addr:${credentials.clientAddress}`], settings.lockout);
        throw unauthorized();
      }
      const account = await this.verifyPassword(basic.username, basic.password, credentials.clientAddress);
      return { account };
    }
    throw unauthorized();
  }

  /** Checks a username and password under back-off; the account, or a 401 RedfishError. */
  async verifyPassword(username: string, password: string, clientAddress: string): Promise<UserAccount> {
    const settings = this.settings();
    const keys = [`user:${username}`, `addr:${clientAddress}`];
    const wait = this.backoff.retryAfterSeconds(keys);
    if (wait > 0) throw unauthorized(wait);
    const account = await settings.users.verify(username, password);
    if (!account) {
      this.backoff.recordFailure(keys, settings.lockout);
      const locked = this.backoff.retryAfterSeconds(keys);
      const fields = { username: loggableUsername(username), clientAddress };
      if (locked > 0) Log.warn({ ...fields, lockedForSeconds: locked }, "Redfish login failed; back-off engaged");
      else Log.info(fields, "Redfish login failed");
      throw unauthorized(locked);
    }
    this.backoff.recordSuccess(`user:${username}`);
    return account;
  }

  /** Opens a session for an account whose password was just verified (SessionService login). */
  openSession(account: UserAccount, clientAddress: string, context?: string): { session: Session; token: string } {
    this.sessions.sweep(this.settings().sessionTimeoutSeconds);
    return this.sessions.create(account, clientAddress, context);
  }

  /** The user's live sessions. */
  sessionsOf(username: string): Session[] {
    return this.sessions.listFor(username, this.settings().sessionTimeoutSeconds);
  }
}
