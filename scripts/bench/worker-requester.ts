// A Requester whose requests are made and timed on a worker thread. The bench's own event loop also runs the
// sandbox API server and simulators: the work a request sets off there (a Reset: the VMI created, statuses
// written, watch events sent) would delay the moment the bench reads the reply, and be timed as the reply's.
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { requester, type Requester, type TimedResponse } from "./client";

interface Job {
  id: number;
  method: string;
  path: string;
  opts: { headers?: Record<string, string>; body?: string };
}

type Outcome = { id: number; response: TimedResponse } | { id: number; error: string };

if (!isMainThread && (workerData as { role?: string } | undefined)?.role === "timed-requester") {
  const { baseUrl, tls } = workerData as { baseUrl: string; tls?: { ca: string; servername?: string } };
  const send = requester(baseUrl, tls);
  parentPort!.on("message", (job: Job | "close") => {
    if (job === "close") {
      send.close();
      parentPort!.close();
      return;
    }
    send(job.method, job.path, job.opts).then(
      response => parentPort!.postMessage({ id: job.id, response } satisfies Outcome),
      (e: unknown) => parentPort!.postMessage({ id: job.id, error: e instanceof Error ? e.message : String(e) } satisfies Outcome),
    );
  });
}

/** `requester` (./client.ts), run on a worker thread of its own. */
export function workerRequester(baseUrl: string, tls?: { ca: string; servername?: string }): Requester {
  // The bench runs under tsx: the worker registers tsx's require hook before it loads this file.
  const worker = new Worker(`require("tsx/cjs/api").register(); require(${JSON.stringify(__filename)});`, {
    eval: true,
    workerData: { role: "timed-requester", baseUrl, tls },
  });
  const pending = new Map<number, { resolve: (r: TimedResponse) => void; reject: (e: Error) => void }>();
  let nextId = 0;
  worker.on("message", (outcome: Outcome) => {
    const waiting = pending.get(outcome.id);
    pending.delete(outcome.id);
    if ("error" in outcome) waiting?.reject(new Error(outcome.error));
    else waiting?.resolve(outcome.response);
  });
  worker.on("error", e => {
    for (const waiting of pending.values()) waiting.reject(e);
    pending.clear();
  });
  const send: Requester = (method, path, opts = {}) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      worker.postMessage({ id, method, path, opts } satisfies Job);
    });
  send.close = () => worker.postMessage("close");
  return send;
}
