// Redfish sessions (X-Auth-Token). Tokens are 256-bit random values, looked up as they are sent: a request with
// a token costs one map lookup, no hashing (a guess is as hopeless as against a digest; the map's own string
// hashing leaks nothing usable about a 256-bit value). Sessions live in memory only: after a restart clients
// log in again (sushy does so on a 401).
import { randomBytes } from "node:crypto";
import type { KubernetesIdentity } from "./kubernetes";
import type { UserAccount } from "./users";

export interface Session {
  readonly id: string;
  readonly username: string;
  /** The user's credential when the session was opened; a password change ends the session. */
  readonly credentialFingerprint: string;
  readonly createdAt: number;
  lastUsedAt: number;
  readonly clientAddress: string;
  readonly context?: string;
  /** A session opened with a Kubernetes token keeps the token's identity (never the token). */
  readonly identity?: KubernetesIdentity;
}

/** Sessions per user; the least recently used one is closed when a user opens more. */
export const MAX_SESSIONS_PER_USER = 64;

export class SessionStore {
  private readonly byToken = new Map<string, Session>();
  private readonly byId = new Map<string, { session: Session; token: string }>();

  constructor(private readonly now: () => number = Date.now) {}

  create(account: UserAccount, clientAddress: string, context?: string): { session: Session; token: string } {
    const token = randomBytes(32).toString("base64url");
    const now = this.now();
    const session: Session = {
      id: randomBytes(12).toString("hex"),
      username: account.username,
      credentialFingerprint: account.credentialFingerprint,
      createdAt: now,
      lastUsedAt: now,
      clientAddress,
      ...(context !== undefined ? { context } : {}),
      ...(account.identity ? { identity: account.identity } : {}),
    };
    this.byToken.set(token, session);
    this.byId.set(session.id, { session, token });
    const own = this.listFor(account.username);
    if (own.length > MAX_SESSIONS_PER_USER) {
      const leastRecent = own.reduce((a, b) => (b.lastUsedAt < a.lastUsedAt ? b : a));
      this.delete(leastRecent.id);
    }
    return { session, token };
  }

  /** The live session of a token (its idle timer restarts), or undefined when unknown or timed out. */
  authenticate(token: string, timeoutSeconds: number): Session | undefined {
    const session = this.byToken.get(token);
    if (!session) return undefined;
    const now = this.now();
    if (now - session.lastUsedAt >= timeoutSeconds * 1000) {
      this.delete(session.id);
      return undefined;
    }
    session.lastUsedAt = now;
    return session;
  }

  get(id: string): Session | undefined {
    return this.byId.get(id)?.session;
  }

  /** A user's sessions, oldest first; timed-out ones are removed on the way. */
  listFor(username: string, timeoutSeconds?: number): Session[] {
    const now = this.now();
    const out: Session[] = [];
    for (const { session } of this.byId.values()) {
      if (session.username !== username) continue;
      if (timeoutSeconds !== undefined && now - session.lastUsedAt >= timeoutSeconds * 1000) {
        this.delete(session.id);
        continue;
      }
      out.push(session);
    }
    return out;
  }

  delete(id: string): boolean {
    const entry = this.byId.get(id);
    if (!entry) return false;
    this.byId.delete(id);
    this.byToken.delete(entry.token);
    return true;
  }

  /** Removes every timed-out session (called from time to time so abandoned sessions do not pile up). */
  sweep(timeoutSeconds: number): void {
    const now = this.now();
    for (const { session } of [...this.byId.values()]) {
      if (now - session.lastUsedAt >= timeoutSeconds * 1000) this.delete(session.id);
    }
  }

  get size(): number {
    return this.byId.size;
  }
}
