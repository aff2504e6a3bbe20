// Authentication of Redfish requests: HTTP Basic and X-Auth-Token sessions, with failed-login back-off
// (redfish/auth/backoff.ts), and, when enabled, Kubernetes bearer tokens (redfish/auth/kubernetes.ts: `Bearer`, or the
// password of the configured user name). Nothing here logs a password, a token or an Authorization header.
//
// A repeated credential costs a map lookup: a token finds its session, a Basic header that was verified
// before finds its account (both caches belong to the user directory of one configuration, so a config
// change empties them). Credentials that were verified before skip the back-off: an attacker's failures
// never stand between a client and the credential it has been using.
//
// Back-off answers 401 (not 429), with Retry-After as a hint: sushy maps 401/403 to AccessError, which
// Ironic treats as a connection problem and retries after its connection_retry_interval, so a client
// with the right password recovers by itself once the lock expires. A 429 would surface in sushy as a
// generic HTTPError that Ironic does not retry (and a 401 tells an attacker nothing a 429 would not).
import { setTimeout as delay } from "node:timers/promises";
import { Log } from "../platform";
import { baseError, type RedfishError } from "../errors";
import { backoffKeys, LoginBackoff, type LockoutPolicy } from "./backoff";
import { BcryptPool } from "./bcrypt-pool";
import { SessionStore, type Session } from "./sessions";
import type { UserAccount, UserDirectory } from "./users";
import type { KubernetesIdentitiesConfig } from "../../capabilities/config/schema";
import { clusterReviews, type IdentityReviews } from "../kubevirt/driver";
import {
  identityUserName,
  KubernetesIdentities,
  SEE_SYSTEM,
  type KubernetesIdentity,
  type Permission,
} from "./kubernetes";

/** Longest username accepted (bytes); longer ones are refused before they are hashed, stored or logged. */
export const MAX_USERNAME_BYTES = 256;

export const AUTH_REALM = 'Basic realm="Redfish", charset="UTF-8"';

export interface AuthSettings {
  users: UserDirectory;
  sessionTimeoutSeconds: number;
  lockout: LockoutPolicy;
  /** Configured chassis by name (a Kubernetes identity sees those in namespaces where it may get VMs). */
  chassis: ReadonlyMap<string, { namespace: string }>;
  kubernetesIdentities: KubernetesIdentitiesConfig;
}

export interface Principal {
  account: UserAccount;
  /** Set when the request authenticated with X-Auth-Token. */
  session?: Session;
}

export interface Credentials {
  authorization?: string;
  token?: string;
  /** Asked only when a check needs it (back-off, logs): a request with known credentials never resolves it. */
  clientAddress(): string;
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
/** The token of a `Bearer` Authorization (RFC 6750: the scheme, white space, one token without white space). */
export function bearerToken(header: string): string | undefined {
  if (header.length < 8 || header.slice(0, 6).toLowerCase() !== "bearer" || (header[6] !== " " && header[6] !== "\t")) return undefined;
  const token = header.slice(7).trim();
  return token.length > 0 && !/\s/.test(token) ? token : undefined;
}

export function parseBasic(header: string): { username: string; password: string } | undefined {
  const match = /^basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(header);
  if (!match) return undefined;
  const decoded = Buffer.from(match[1], "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon <= 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export interface AuthenticatorOptions {
  now?: () => number;
  /** How a login is held back (tests pass one that advances their clock). */
  sleep?: (ms: number) => Promise<unknown>;
  /** Where Kubernetes tokens and access are reviewed (default: the cluster's API server). */
  reviews?: IdentityReviews;
}

/** An identity's account as of its cached decisions: rebuilt when they expire or the configuration changes. */
interface IdentityAccount {
  account: UserAccount;
  principal: Principal;
  settings: AuthSettings;
  expiresAt: number;
}

function insufficientPrivilege(): RedfishError {
  return baseError(403, "InsufficientPrivilege");
}

export class Authenticator {
  readonly sessions: SessionStore;
  readonly backoff: LoginBackoff;
  private readonly bcrypt: BcryptPool;
  private readonly sleep: (ms: number) => Promise<unknown>;
  /** Principals of live sessions, so a token request allocates nothing; rebuilt when the account object changes. */
  private readonly sessionPrincipals = new WeakMap<Session, Principal>();
  private readonly bcryptCompare = (password: string, hash: string) => this.bcrypt.compare(password, hash);
  readonly identities: KubernetesIdentities;
  /** Accounts of Kubernetes identities, per identity object of the token cache or of a session. */
  private readonly identityAccounts = new WeakMap<KubernetesIdentity, IdentityAccount>();
  private readonly now: () => number;

  constructor(
    private readonly settings: () => AuthSettings,
    options: AuthenticatorOptions = {},
  ) {
    const now = options.now ?? Date.now;
    this.now = now;
    this.identities = new KubernetesIdentities(options.reviews ?? clusterReviews, now);
    this.sessions = new SessionStore(now);
    this.backoff = new LoginBackoff(now);
    this.bcrypt = new BcryptPool();
    this.sleep = options.sleep ?? delay;
  }

  /** Stops the bcrypt workers. */
  close(): Promise<void> {
    return this.bcrypt.close();
  }

  /**
   * The principal of credentials this service has verified before — a remembered Basic header, a live session of a
   * configured user — found without waiting; undefined when authenticate() has to decide. The hot path of every
   * client that repeats its credentials: no hashing, no promise.
   */
  knownPrincipal(credentials: Credentials): Principal | undefined {
    const settings = this.settings();
    if (credentials.token !== undefined) {
      const session = this.sessions.authenticate(credentials.token, settings.sessionTimeoutSeconds);
      if (!session) return undefined;
      let account: UserAccount | undefined;
      if (session.identity) {
        account = settings.kubernetesIdentities.enabled ? this.knownIdentityAccount(session.identity, settings)?.account : undefined;
      } else {
        account = settings.users.account(session.username);
        if (account?.credentialFingerprint !== session.credentialFingerprint) account = undefined;
      }
      return account && this.sessionPrincipal(session, account);
    }
    const authorization = credentials.authorization;
    if (authorization === undefined) return undefined;
    const known = settings.users.verifiedHeader(authorization);
    if (known || !settings.kubernetesIdentities.enabled) return known;
    const token = this.identities.loginToken(authorization, settings.kubernetesIdentities.basicUserName) ?? this.kubernetesToken(authorization, settings);
    const identity = token === undefined ? undefined : this.identities.cachedToken(token);
    return identity ? this.knownIdentityAccount(identity, settings)?.principal : undefined;
  }

  /** The principal of a session for its account, made once per (session, account). */
  private sessionPrincipal(session: Session, account: UserAccount): Principal {
    const known = this.sessionPrincipals.get(session);
    if (known?.account === account) return known;
    const principal = { account, session };
    this.sessionPrincipals.set(session, principal);
    return principal;
  }

  /** The Kubernetes token of an Authorization header: a Bearer token, or the password of the token login user. */
  private kubernetesToken(authorization: string, settings: AuthSettings): string | undefined {
    const bearer = bearerToken(authorization);
    if (bearer !== undefined) return bearer;
    const basic = parseBasic(authorization);
    return basic && this.isTokenLogin(basic.username, settings) ? basic.password : undefined;
  }

  /** The principal of a request, or a 401 RedfishError. A present X-Auth-Token is never ignored. */
  async authenticate(credentials: Credentials): Promise<Principal> {
    const known = this.knownPrincipal(credentials);
    if (known) return known;
    const settings = this.settings();
    if (credentials.token !== undefined) {
      // An unknown token is not a failed login for back-off: 256-bit tokens cannot be guessed, and the
      // expired sessions of legitimate clients (sushy re-authenticates on 401) must not lock their address.
      const session = this.sessions.authenticate(credentials.token, settings.sessionTimeoutSeconds);
      if (!session) throw unauthorized();
      if (session.identity) {
        // Identities switched off end their sessions.
        if (!settings.kubernetesIdentities.enabled) {
          this.sessions.delete(session.id);
          throw unauthorized();
        }
        return this.sessionPrincipal(session, (await this.identityAccount(session.identity, settings)).account);
      }
      // Not known: the user was removed or its password changed, which ends the user's sessions.
      this.sessions.delete(session.id);
      throw unauthorized();
    }
    if (credentials.authorization !== undefined) {
      const token = settings.kubernetesIdentities.enabled ? this.kubernetesToken(credentials.authorization, settings) : undefined;
      if (token !== undefined) {
        const identity = await this.reviewToken(token, credentials.clientAddress());
        // A token login's header is remembered with its token, so repeating it costs no decoding (kubernetes.ts).
        if (bearerToken(credentials.authorization) === undefined) {
          this.identities.rememberLogin(credentials.authorization, settings.kubernetesIdentities.basicUserName, token, settings.kubernetesIdentities);
        }
        return (await this.identityAccount(identity, settings)).principal;
      }
      const basic = parseBasic(credentials.authorization);
      if (!basic) {
        this.backoff.recordFailure(backoffKeys(undefined, credentials.clientAddress()), settings.lockout);
        throw unauthorized();
      }
      const account = await this.verifyPassword(basic.username, basic.password, credentials.clientAddress());
      return settings.users.rememberHeader(credentials.authorization, account);
    }
    throw unauthorized();
  }

  /**
   * Checks a username and password under back-off; the account, or a 401 RedfishError. Credentials verified
   * before pass at once. Otherwise a username+address pair that failed too often is refused (Retry-After)
   * without a check, and failures of the username elsewhere or of the address with other usernames hold the
   * check back (at most MAX_LOGIN_DELAY_MS) but never refuse it.
   */
  async verifyPassword(username: string, password: string, clientAddress: string): Promise<UserAccount> {
    const settings = this.settings();
    if (this.isTokenLogin(username, settings)) return (await this.identityAccount(await this.reviewToken(password, clientAddress), settings)).account;
    if (Buffer.byteLength(username) > MAX_USERNAME_BYTES) {
      // Never a configured user (the schema allows 64 characters); counted against the address only.
      this.backoff.recordFailure(backoffKeys(undefined, clientAddress), settings.lockout);
      Log.info({ usernameBytes: Buffer.byteLength(username), clientAddress }, "Redfish login failed: username too long");
      throw unauthorized();
    }
    const known = settings.users.knownGood(username, password);
    if (known) return known;
    const keys = backoffKeys(username, clientAddress);
    const refused = this.backoff.refusedForSeconds(keys);
    if (refused > 0) throw unauthorized(refused);
    const delay = this.backoff.delayMs(keys);
    if (delay > 0) await this.sleep(delay);
    const account = await settings.users.verify(username, password, this.bcryptCompare);
    if (!account) {
      this.backoff.recordFailure(keys, settings.lockout);
      const locked = this.backoff.refusedForSeconds(keys);
      const fields = { username: loggableUsername(username), clientAddress };
      if (locked > 0) Log.warn({ ...fields, lockedForSeconds: locked }, "Redfish login failed; back-off engaged for this username at this address");
      else Log.info(fields, "Redfish login failed");
      throw unauthorized(locked);
    }
    this.backoff.recordSuccess(keys);
    return account;
  }

  /** The configured user name whose password is a Kubernetes token. */
  private isTokenLogin(username: string, settings: AuthSettings): boolean {
    return settings.kubernetesIdentities.enabled && username === settings.kubernetesIdentities.basicUserName;
  }

  /**
   * The identity of a Kubernetes token, or a 401. A token reviewed before costs a digest and a map lookup; a new one
   * a TokenReview, held back like a failed login when its address keeps sending tokens the API server rejects.
   */
  private async reviewToken(token: string, clientAddress: string): Promise<KubernetesIdentity> {
    const settings = this.settings();
    const cached = this.identities.cachedToken(token);
    if (cached) return cached;
    const keys = backoffKeys(undefined, clientAddress);
    const refused = this.backoff.refusedForSeconds(keys);
    if (refused > 0) throw unauthorized(refused);
    const identity = await this.identities.authenticate(token, settings.kubernetesIdentities);
    if (!identity) {
      this.backoff.recordFailure(keys, settings.lockout);
      Log.info({ clientAddress }, "Redfish login failed: the API server did not authenticate the Kubernetes token");
      throw unauthorized(this.backoff.refusedForSeconds(keys));
    }
    return identity;
  }

  /**
   * The account of a Kubernetes identity: the chassis in namespaces where it may get VirtualMachines. Reused until
   * the access decisions it was built from expire (accessReviewCacheSeconds) or the configuration changes.
   */
  private async identityAccount(identity: KubernetesIdentity, settings: AuthSettings): Promise<IdentityAccount> {
    const known = this.knownIdentityAccount(identity, settings);
    if (known) return known;
    const config = settings.kubernetesIdentities;
    const namespaces = await this.identities.visibleNamespaces(identity, [...settings.chassis.values()].map(c => c.namespace), config);
    const account: UserAccount = Object.freeze({
      username: identityUserName(identity),
      chassis: Object.freeze([...settings.chassis].filter(([, c]) => namespaces.has(c.namespace)).map(([name]) => name)),
      credentialFingerprint: "kubernetes",
      identity,
    });
    const entry = { account, principal: { account }, settings, expiresAt: this.now() + config.accessReviewCacheSeconds * 1000 };
    this.identityAccounts.set(identity, entry);
    return entry;
  }

  /** The identity's account while the access decisions it was built from hold (no review). */
  private knownIdentityAccount(identity: KubernetesIdentity, settings: AuthSettings): IdentityAccount | undefined {
    const known = this.identityAccounts.get(identity);
    return known && known.settings === settings && known.expiresAt > this.now() ? known : undefined;
  }

  /**
   * Authorizes an action on a system the principal can see: a Kubernetes identity needs every permission in the
   * system's namespace (403 InsufficientPrivilege otherwise); a configured user's chassis already decided.
   */
  async authorize(principal: Principal, namespace: string, permissions: readonly Permission[]): Promise<void> {
    const identity = principal.account.identity;
    if (!identity) return;
    const config = this.settings().kubernetesIdentities;
    for (const permission of permissions) {
      if (!(await this.identities.allowed(identity, namespace, permission, config))) throw insufficientPrivilege();
    }
  }

  /** Whether an identity may see systems of `namespace` now (EventService delivery): GET's check, one cached decision. */
  identitySees(identity: KubernetesIdentity, namespace: string): Promise<boolean> {
    const config = this.settings().kubernetesIdentities;
    if (!config.enabled) return Promise.resolve(false);
    return this.identities.allowed(identity, namespace, SEE_SYSTEM, config);
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
