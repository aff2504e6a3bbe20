// Event subscriptions kept in the cluster: ONE Secret in the module namespace (HttpHeaders can carry
// credentials), data key = subscription id, read and written by name only, so the watcher needs no right on
// any other Secret. Only the watcher writes it, so what it read at start plus its own writes is the whole
// state: each change writes the whole set (server-side apply), one write at a time, in order.
import { Log } from "../platform";
import { readEventSubscriptions, writeEventSubscriptions } from "../../capabilities/common/gateway";
import { parseJsonAs } from "../../capabilities/common/json";
import { WorkQueue } from "../../capabilities/common/work-queue";
import type { SubscriptionStore } from "./index";
import { storedSubscriptionSchema, type Subscription } from "./subscriptions";

export function clusterSubscriptionStore(namespace: string): SubscriptionStore {
  const stored = new Map<string, string>();
  let writes: Promise<void> = Promise.resolve();
  const write = (change: () => void): Promise<void> => {
    const next = writes.then(async () => {
      const before = new Map(stored);
      change();
      try {
        await writeEventSubscriptions(namespace, Object.fromEntries(stored));
      } catch (err) {
        stored.clear();
        for (const [id, text] of before) stored.set(id, text);
        throw err;
      }
    });
    writes = next.catch(() => undefined);
    return next;
  };
  return {
    save: (sub: Subscription) => write(() => stored.set(sub.id, JSON.stringify(sub))),
    remove: (id: string) => write(() => stored.delete(id)),
    // Read until it succeeds (the API server may not answer yet), with the work queue's back-off.
    load: () =>
      new Promise<Subscription[]>(resolve => {
        const queue = new WorkQueue(
          async () => {
            resolve(parseStored(await readEventSubscriptions(namespace), stored));
            queue.shutDown();
          },
          {
            onError: (_key, err, failures) =>
              Log.warn({ err: err instanceof Error ? err.message : String(err), failures }, "cannot read the Redfish event subscriptions; retrying"),
          },
        );
        queue.add("load");
      }),
  };
}

/** The valid stored subscriptions; each one's text is kept in `stored` (the set the next write starts from). */
function parseStored(data: Record<string, string>, stored: Map<string, string>): Subscription[] {
  const subs: Subscription[] = [];
  for (const [id, text] of Object.entries(data)) {
    const subscription = parseJsonAs(storedSubscriptionSchema, text);
    // Never log the data: it holds the subscriber's headers.
    if (subscription?.id === id) {
      subs.push(subscription);
      stored.set(id, text);
    } else Log.warn({ subscription: id.slice(0, 64) }, "a stored Redfish event subscription is not valid; ignored");
  }
  Log.info({ count: subs.length }, "Redfish event subscriptions loaded");
  return subs;
}
