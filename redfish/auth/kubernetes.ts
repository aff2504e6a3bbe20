// Kubernetes identities as Redfish credentials (opt-in: redfish.kubernetesIdentities). A bearer token, sent as
// `Authorization: Bearer`, or as the password of Basic / session login under the configured user name, is validated
// by a TokenReview; what the identity may see and do is decided by SubjectAccessReviews in the VM's namespace, the
// same questions virt-api asks for kubectl/virtctl:
//   see a System                 get    virtualmachines            (kubevirt.io)
//   On                           update virtualmachines/start      (subresources.kubevirt.io)
//   ForceOff, GracefulShutdown   update virtualmachines/stop
//   ForceRestart, GracefulRestart update virtualmachines/restart
//   PushPowerButton              both start and stop (it does either, depending on the power state)
//   Pause / Resume               update virtualmachineinstances/pause / unpause
//   PATCH Boot                   patch  virtualmachines            (kubevirt.io)
//   InsertMedia / EjectMedia     create / delete datavolumes        (cdi.kubevirt.io)
// A system the identity may not `get` is not in its collections and is the same 404 as a foreign chassis.
//
// Both answers are cached for a short, bounded time (config), bounded in entries; decisions are keyed by (identity,
// namespace, attributes). A token is its own cache key (found by its last characters, compared whole), so that a
// request whose token was reviewed costs a short map lookup (a keyed digest per request cost more than the rest of
// authentication, and hashing a whole 1 KB token a fifth of that). The trade-off: the watcher holds
// the tokens it reviewed in memory for tokenReviewCacheSeconds (an expired one is dropped when it is next presented
// or when the next token is cached), as it holds the Basic headers it verified (users.ts). Tokens longer than
// MAX_TOKEN_KEY_LENGTH are keyed by a keyed digest, so that the cache's memory stays bounded. Tokens are never logged.
import { Log } from "../platform";
import { baseError, type RedfishError } from "../errors";
import type { AccessAttributes, IdentityReviews, ReviewedUser } from "../kubevirt/driver";
import type { KubernetesIdentitiesConfig } from "../../capabilities/config/schema";
import { keyedDigest } from "./users";

/** Prefix of an identity's Redfish user name: configured user names cannot contain ":", so the two never collide. */
export const IDENTITY_USER_PREFIX = "kubernetes:";

/** Entries at most in each cache (oldest dropped first). */
export const MAX_CACHED_TOKENS = 10_000;
export const MAX_CACHED_DECISIONS = 50_000;
/**
 * Longest token (characters) kept as its own cache key: a ServiceAccount token is about 1 KB, so the token cache holds
 * at most MAX_CACHED_TOKENS x 2 KB of tokens; longer ones (from other authenticators) are keyed by a digest instead.
 */
export const MAX_TOKEN_KEY_LENGTH = 2048;
const TOKEN_SLOT_LENGTH = 32;

/** Who a token belongs to, as the TokenReview said (kept with sessions and subscriptions; holds no secret). */
export interface KubernetesIdentity {
  username: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

/** A SubjectAccessReview question without its namespace. */
export type Permission = Omit<AccessAttributes, "namespace" | "name">;

const vmSubresource = (subresource: string): Permission => ({ verb: "update", group: "subresources.kubevirt.io", resource: "virtualmachines", subresource });
const vmiSubresource = (subresource: string): Permission => ({ verb: "update", group: "subresources.kubevirt.io", resource: "virtualmachineinstances", subresource });

export const SEE_SYSTEM: Permission = { verb: "get", group: "kubevirt.io", resource: "virtualmachines" };
export const PATCH_BOOT: Permission = { verb: "patch", group: "kubevirt.io", resource: "virtualmachines" };
export const INSERT_MEDIA: Permission = { verb: "create", group: "cdi.kubevirt.io", resource: "datavolumes" };
export const EJECT_MEDIA: Permission = { verb: "delete", group: "cdi.kubevirt.io", resource: "datavolumes" };

const RESET_PERMISSIONS: Record<string, readonly Permission[]> = {
  On: [vmSubresource("start")],
  ForceOff: [vmSubresource("stop")],
  GracefulShutdown: [vmSubresource("stop")],
  ForceRestart: [vmSubresource("restart")],
  GracefulRestart: [vmSubresource("restart")],
  PushPowerButton: [vmSubresource("start"), vmSubresource("stop")],
  Pause: [vmiSubresource("pause")],
  Resume: [vmiSubresource("unpause")],
};

/** What a ResetType needs; none for an unknown one (the Reset handler answers 400 for it). */
export function resetPermissions(resetType: string): readonly Permission[] {
  return Object.hasOwn(RESET_PERMISSIONS, resetType) ? RESET_PERMISSIONS[resetType] : [];
}

export function identityUserName(identity: KubernetesIdentity): string {
  return `${IDENTITY_USER_PREFIX}${identity.username}`;
}

/** The identity's decision-cache key: every field the authorizer sees. */
function identityKey(identity: KubernetesIdentity): string {
  return JSON.stringify([identity.username, identity.uid ?? "", [...identity.groups].sort(), identity.extra ?? {}]);
}

export function identityOf(user: ReviewedUser): KubernetesIdentity {
  return {
    username: user.username,
    ...(user.uid ? { uid: user.uid } : {}),
    groups: [...(user.groups ?? [])],
    ...(user.extra && Object.keys(user.extra).length > 0 ? { extra: user.extra } : {}),
  };
}

/**
 * A map of values that expire, bounded in entries (the oldest insertion goes first). An entry lives in the slot
 * `slotOf(key)` and answers only its own key: a slot shorter than the key makes a lookup cheaper (a Map hashes the
 * whole string, about 3 ns a character), and keys sharing a slot replace each other.
 */
class ExpiringCache<V> {
  readonly #entries = new Map<string, { key: string; value: V; expiresAt: number }>();
  constructor(
    readonly max: number,
    private readonly slotOf: (key: string) => string,
  ) {}

  get(key: string, now: number): V | undefined {
    const slot = this.slotOf(key);
    const entry = this.#entries.get(slot);
    if (entry?.key !== key) return undefined;
    if (entry.expiresAt <= now) {
      this.#entries.delete(slot);
      return undefined;
    }
    return entry.value;
  }

  /** Stores a value; expired entries at the old end go first (entries are kept in insertion order). */
  set(key: string, value: V, expiresAt: number, now: number): void {
    const slot = this.slotOf(key);
    this.#entries.delete(slot);
    for (const [oldest, entry] of this.#entries) {
      if (entry.expiresAt > now && this.#entries.size < this.max) break;
      this.#entries.delete(oldest);
    }
    this.#entries.set(slot, { key, value, expiresAt });
  }

  get size(): number {
    return this.#entries.size;
  }
}

/** The API server could not answer a review: the request cannot be decided either way (503, never cached). */
function reviewUnavailable(what: string, err: unknown): RedfishError {
  Log.warn({ err: err instanceof Error ? err.message : String(err) }, `Redfish Kubernetes identity: ${what} failed`);
  return baseError(503, "ServiceTemporarilyUnavailable", ["5"], { headers: { "Retry-After": "5" } });
}

/** Review answers cached until they expire; concurrent askers of one key share one review; a failure is not cached. */
class ReviewCache<T> {
  readonly #answers: ExpiringCache<T>;
  readonly #pending = new Map<string, Promise<T>>();

  constructor(
    max: number,
    private readonly what: string,
    private readonly now: () => number,
    slotOf: (key: string) => string = key => key,
  ) {
    this.#answers = new ExpiringCache<T>(max, slotOf);
  }

  cached(key: string): T | undefined {
    return this.#answers.get(key, this.now());
  }

  /** The cached answer, else the review's (kept for ttlMs). Throws a 503 RedfishError when the API server cannot answer. */
  answer(key: string, ttlMs: number, review: () => Promise<T>): Promise<T> {
    const cached = this.cached(key);
    if (cached !== undefined) return Promise.resolve(cached);
    const pending = this.#pending.get(key);
    if (pending) return pending;
    const answer = review()
      .then(value => {
        const now = this.now();
        this.#answers.set(key, value, now + ttlMs, now);
        return value;
      })
      .catch(err => {
        throw reviewUnavailable(this.what, err);
      })
      .finally(() => this.#pending.delete(key));
    this.#pending.set(key, answer);
    return answer;
  }

  get size(): number {
    return this.#answers.size;
  }
}

/** Token and access reviews with their caches. One per Redfish app; the settings come with each call. */
export class KubernetesIdentities {
  /** Tokens of at most MAX_TOKEN_KEY_LENGTH characters, keyed by themselves (in the slot of their last characters). */
  readonly #tokens: ReviewCache<KubernetesIdentity | null>;
  /** Longer tokens, keyed by their keyed digest (a separate map: no raw token can collide with a digest). */
  readonly #longTokens: ReviewCache<KubernetesIdentity | null>;
  readonly #decisions: ReviewCache<boolean>;
  /** Decision-key parts, computed once per identity object (those of the token cache and of sessions) and permission. */
  readonly #identityKeys = new WeakMap<KubernetesIdentity, string>();
  readonly #permissionKeys = new WeakMap<Permission, string>();

  /**
   * Authorization headers of token logins (Basic, the token as password) whose token was reviewed, to the token: a
   * repeated login is not decoded again. The token still has to be in the token cache: this saves decoding only.
   */
  readonly #loginHeaders = new ExpiringCache<{ token: string; userName: string }>(MAX_CACHED_TOKENS, tokenSlot);

  constructor(
    private readonly reviews: IdentityReviews,
    private readonly now: () => number = Date.now,
  ) {
    this.#tokens = new ReviewCache(MAX_CACHED_TOKENS, "TokenReview", now, tokenSlot);
    this.#longTokens = new ReviewCache(MAX_CACHED_TOKENS, "TokenReview", now);
    this.#decisions = new ReviewCache(MAX_CACHED_DECISIONS, "SubjectAccessReview", now);
  }

  /** Whether this token was reviewed recently (with its answer: an identity, or null when not authenticated). A map lookup. */
  cachedToken(token: string): KubernetesIdentity | null | undefined {
    return token.length <= MAX_TOKEN_KEY_LENGTH ? this.#tokens.cached(token) : this.#longTokens.cached(digestKey(token));
  }

  /** The token of a token login's Authorization header seen recently under the login user name `userName`. */
  loginToken(header: string, userName: string): string | undefined {
    const entry = this.#loginHeaders.get(header, this.now());
    return entry?.userName === userName ? entry.token : undefined;
  }

  /** Remembers a token login's header and its token for as long as a review of the token is cached. */
  rememberLogin(header: string, userName: string, token: string, config: KubernetesIdentitiesConfig): void {
    const now = this.now();
    this.#loginHeaders.set(header, { token, userName }, now + config.tokenReviewCacheSeconds * 1000, now);
  }

  /** Who the token belongs to, or null when the API server does not authenticate it. Throws a 503 RedfishError when it cannot answer. */
  authenticate(token: string, config: KubernetesIdentitiesConfig): Promise<KubernetesIdentity | null> {
    const [cache, key] = token.length <= MAX_TOKEN_KEY_LENGTH ? [this.#tokens, token] : [this.#longTokens, digestKey(token)];
    return cache.answer(key, config.tokenReviewCacheSeconds * 1000, async () => {
      const status = await this.reviews.reviewToken(token, config.audiences);
      return status.authenticated === true && status.user?.username ? identityOf(status.user) : null;
    });
  }

  /** The cached decision, if any (no review). */
  cachedDecision(identity: KubernetesIdentity, namespace: string, permission: Permission): boolean | undefined {
    return this.#decisions.cached(this.#decisionKey(identity, namespace, permission));
  }

  /** Whether the identity may do `permission` in `namespace`. Throws a 503 RedfishError when the API server cannot answer. */
  allowed(identity: KubernetesIdentity, namespace: string, permission: Permission, config: KubernetesIdentitiesConfig): Promise<boolean> {
    return this.#decisions.answer(this.#decisionKey(identity, namespace, permission), config.accessReviewCacheSeconds * 1000, () =>
      this.reviews.reviewAccess(identity, { namespace, ...permission }),
    );
  }

  /** The namespaces (of those given) where the identity may see VirtualMachines. */
  async visibleNamespaces(identity: KubernetesIdentity, namespaces: Iterable<string>, config: KubernetesIdentitiesConfig): Promise<Set<string>> {
    const list = [...new Set(namespaces)];
    const decisions = await Promise.all(list.map(ns => this.allowed(identity, ns, SEE_SYSTEM, config)));
    return new Set(list.filter((_, i) => decisions[i]));
  }

  get cacheSizes(): { tokens: number; decisions: number } {
    return { tokens: this.#tokens.size + this.#longTokens.size, decisions: this.#decisions.size };
  }

  /** Every field the authorizer sees: the identity's, the namespace and the permission's. */
  #decisionKey(identity: KubernetesIdentity, namespace: string, permission: Permission): string {
    let identityPart = this.#identityKeys.get(identity);
    if (identityPart === undefined) this.#identityKeys.set(identity, (identityPart = identityKey(identity)));
    let permissionPart = this.#permissionKeys.get(permission);
    if (permissionPart === undefined) this.#permissionKeys.set(permission, (permissionPart = permissionKey(permission)));
    return `${identityPart}\0${namespace}\0${permissionPart}`;
  }
}

/**
 * A token's slot in the cache: its last TOKEN_SLOT_LENGTH characters, the random signature of a JWT (ServiceAccount
 * and OIDC tokens), so that a lookup hashes those rather than about 1 KB. The cache compares the whole token before it
 * answers; an attacker cannot get that far without the victim's signature.
 */
function tokenSlot(token: string): string {
  return token.length <= TOKEN_SLOT_LENGTH ? token : token.slice(-TOKEN_SLOT_LENGTH);
}

function digestKey(token: string): string {
  return keyedDigest("kubernetes-token", token).toString("base64");
}

function permissionKey(p: Permission): string {
  return `${p.verb}\0${p.group}\0${p.resource}\0${p.subresource ?? ""}`;
}
