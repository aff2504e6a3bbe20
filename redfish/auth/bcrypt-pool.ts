// bcrypt checks on worker threads, so that a burst of logins against a bcrypt user (a cost-10 hash is ~70 ms of
// pure-JS CPU) does not stall every other request on the event loop. At most `size` hashes run at a time; the
// rest wait in order. Workers start on first use and do not keep the process alive.
import os from "node:os";
import { Worker } from "node:worker_threads";
import { BCRYPTJS_UMD_SOURCE } from "./bcryptjs-umd.generated";

const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const bcrypt = (() => {
  const module = { exports: {} };
  const exports = module.exports;
  ${BCRYPTJS_UMD_SOURCE}
  return module.exports;
})();
parentPort.on("message", ({ password, hash }) => {
  let match = false;
  try {
    match = bcrypt.compareSync(password, hash);
  } catch {
    // a malformed hash matches nothing
  }
  parentPort.postMessage(match);
});
`;

interface Job {
  password: string;
  hash: string;
  resolve: (match: boolean) => void;
  reject: (err: Error) => void;
}

/** A worker idle this long is stopped (a login burst is over; the next one pays ~50 ms to start a worker). */
const IDLE_WORKER_MS = 30_000;

/** One hash at a time per worker; the pool leaves a core to the event loop where there is more than one. */
export const DEFAULT_BCRYPT_WORKERS = Math.max(1, Math.min(2, os.availableParallelism() - 1));

export class BcryptPool {
  private readonly idle: Worker[] = [];
  private readonly busy = new Map<Worker, Job>();
  private readonly idleTimers = new Map<Worker, NodeJS.Timeout>();
  private readonly queue: Job[] = [];
  private started = 0;

  constructor(private readonly size: number = DEFAULT_BCRYPT_WORKERS) {}

  /** bcrypt.compare off the event loop. */
  compare(password: string, hash: string): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.queue.push({ password, hash, resolve, reject });
      this.dispatch();
    });
  }

  /** Stops the workers (tests; the watcher keeps its pool for its lifetime). */
  async close(): Promise<void> {
    const workers = [...this.idle, ...this.busy.keys()];
    this.idle.length = 0;
    for (const timer of this.idleTimers.values()) clearTimeout(timer);
    this.idleTimers.clear();
    await Promise.all(workers.map(w => w.terminate()));
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      const worker = this.idle.pop() ?? (this.started < this.size ? this.spawn() : undefined);
      if (!worker) return;
      clearTimeout(this.idleTimers.get(worker));
      this.idleTimers.delete(worker);
      const job = this.queue.shift()!;
      this.busy.set(worker, job);
      worker.postMessage({ password: job.password, hash: job.hash });
    }
  }

  private spawn(): Worker {
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.unref();
    this.started++;
    worker.on("message", (match: boolean) => {
      const job = this.busy.get(worker);
      this.busy.delete(worker);
      this.idle.push(worker);
      job?.resolve(match === true);
      this.dispatch();
      if (this.idle.includes(worker)) {
        const timer = setTimeout(() => void worker.terminate(), IDLE_WORKER_MS);
        timer.unref();
        this.idleTimers.set(worker, timer);
      }
    });
    // A worker that dies fails its job (a login failure, never a crash) and is replaced on the next dispatch.
    let gone = false;
    const lost = (err: Error) => {
      if (gone) return; // "error" is followed by "exit"
      gone = true;
      const job = this.busy.get(worker);
      this.busy.delete(worker);
      const idleAt = this.idle.indexOf(worker);
      if (idleAt >= 0) this.idle.splice(idleAt, 1);
      clearTimeout(this.idleTimers.get(worker));
      this.idleTimers.delete(worker);
      this.started--;
      job?.reject(err);
      this.dispatch();
    };
    worker.on("error", lost);
    worker.on("exit", code => lost(new Error(`bcrypt worker exited with code ${code}`)));
    return worker;
  }
}
