// The one conflict-retry loop of the Redfish writes (client-go's retry.RetryOnConflict, with the re-read made
// explicit): a write is planned from a read (first the watch cache), and when the object changed meanwhile
// (./failures.ts isWriteConflict) it is planned again from a fresh read of the API server.

/** Thrown by an attempt whose decision was made from the cache and must be confirmed by a fresh read. */
export class NeedsFreshRead extends Error {
  constructor() {
    super("decision made from the cache needs a fresh read");
    this.name = "NeedsFreshRead";
  }
}

export interface ConflictRetry<S, T> {
  /** The state to plan the first attempt from (the cache's); undefined = read fresh first. */
  initial: S | undefined;
  /** A fresh read of the state from the API server; throws when the object is gone. */
  readFresh: () => Promise<S>;
  /** Plans and writes from `state`; `fresh` says whether the state came from the API server. */
  attempt: (state: S, fresh: boolean) => Promise<T>;
  isConflict: (err: unknown) => boolean;
  /** Attempts in all, the first included. */
  maxAttempts: number;
}

export async function retryOnConflict<S, T>(opts: ConflictRetry<S, T>): Promise<T> {
  let state = opts.initial;
  let fresh = false;
  for (let attempt = 1; ; attempt++) {
    if (state === undefined) {
      state = await opts.readFresh();
      fresh = true;
    }
    try {
      return await opts.attempt(state, fresh);
    } catch (e) {
      const retry = (e instanceof NeedsFreshRead && !fresh) || opts.isConflict(e);
      if (!retry || attempt >= opts.maxAttempts) throw e;
      state = undefined;
    }
  }
}
