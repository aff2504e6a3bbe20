// A keyed work queue like client-go's workqueue (util/workqueue, examples/workqueue): a key is queued at most
// once, never processed twice at once (a key added while it runs runs again afterwards), and a key whose
// processing throws is retried with a per-key exponential back-off (AddRateLimited). As in client-go the
// worker says when a key is done (`forget`), which resets its back-off.

export interface WorkQueueOptions {
  /** Keys processed at once. */
  concurrency?: number;
  /** First retry delay; doubles per failure of the same key up to `maxDelayMs`. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** A processing attempt failed (it is retried with back-off). */
  onError?: (key: string, error: unknown, failures: number) => void;
}

export class WorkQueue {
  readonly #process: (key: string) => Promise<void>;
  readonly #concurrency: number;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #onError?: WorkQueueOptions["onError"];
  /** Queued keys in order (a Set drops duplicates). */
  readonly #queue = new Set<string>();
  readonly #processing = new Set<string>();
  /** Keys added while processing: queued again when their run ends. */
  readonly #dirty = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #delayed = new Map<string, NodeJS.Timeout>();
  #idleWaiters: (() => void)[] = [];
  #held = false;
  #shutDown = false;

  constructor(process: (key: string) => Promise<void>, opts: WorkQueueOptions = {}) {
    this.#process = process;
    this.#concurrency = Math.max(1, opts.concurrency ?? 1);
    this.#baseDelayMs = opts.baseDelayMs ?? 500;
    this.#maxDelayMs = opts.maxDelayMs ?? 30_000;
    this.#onError = opts.onError;
  }

  /** Queues a key now (a pending delayed add of it still happens later, as in client-go). */
  add(key: string): void {
    if (this.#shutDown) return;
    if (this.#processing.has(key)) this.#dirty.add(key);
    else this.#queue.add(key);
    this.#pump();
  }

  /** Queues a key after its back-off (`nextDelay`), and counts one more failure of it. */
  addRateLimited(key: string): void {
    if (this.#shutDown) return;
    const delay = this.nextDelay(key);
    this.#failures.set(key, this.numRequeues(key) + 1);
    this.addAfter(key, delay);
  }

  /** The back-off the next addRateLimited of this key waits: base × 2^(failures so far), at most maxDelayMs. */
  nextDelay(key: string): number {
    return Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** this.numRequeues(key));
  }

  /** Queues a key after `delayMs` (an earlier pending delay of the same key wins). */
  addAfter(key: string, delayMs: number): void {
    if (this.#shutDown || this.#delayed.has(key)) return;
    const timer = setTimeout(() => {
      this.#delayed.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref?.();
    this.#delayed.set(key, timer);
  }

  /** Resets a key's back-off and drops a pending delayed retry (the key is done or gone). */
  forget(key: string): void {
    this.#failures.delete(key);
    const timer = this.#delayed.get(key);
    if (timer) clearTimeout(timer);
    this.#delayed.delete(key);
  }

  /** Failures of a key since it last succeeded. */
  numRequeues(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  /** While held, keys are queued but not processed (e.g. until what processing needs is known). */
  hold(held: boolean): void {
    this.#held = held;
    this.#pump();
  }

  /** Resolves once nothing is queued (or held) or running; delayed retries do not count. */
  whenIdle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise(resolve => this.#idleWaiters.push(resolve));
  }

  shutDown(): void {
    this.#shutDown = true;
    this.#queue.clear();
    this.#dirty.clear();
    for (const timer of this.#delayed.values()) clearTimeout(timer);
    this.#delayed.clear();
    this.#pump();
  }

  #isIdle(): boolean {
    return (this.#held || this.#queue.size === 0) && this.#processing.size === 0;
  }

  #pump(): void {
    while (!this.#held && this.#processing.size < this.#concurrency && this.#queue.size > 0) {
      const key = this.#queue.values().next().value as string;
      this.#queue.delete(key);
      this.#processing.add(key);
      void this.#run(key);
    }
    if (this.#isIdle()) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  async #run(key: string): Promise<void> {
    try {
      await this.#process(key);
    } catch (error) {
      this.#onError?.(key, error, (this.#failures.get(key) ?? 0) + 1);
      this.addRateLimited(key);
    } finally {
      this.#processing.delete(key);
      if (this.#dirty.delete(key) && !this.#shutDown) this.#queue.add(key);
      this.#pump();
    }
  }
}
