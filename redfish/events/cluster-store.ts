// Event subscriptions kept in the cluster: ONE Secret in the module namespace (HttpHeaders can carry
// credentials), data key = subscription id, read and written by name only, so the watcher needs no right on
// any other Secret. Only the watcher writes it, so what it read at start plus its own writes is the whole
// state: each change writes the whole set (server-side apply), one write at a time, in order.
import { Log } from "../platform";
import { readEventSubscriptions, writeEventSubscriptions } from "../../capabilities/common/gateway";
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
    async load() {
      for (let attempt = 0; ; attempt++) {
        try {
          const subs: Subscription[] = [];
          for (const [id, text] of Object.entries(await readEventSubscriptions(namespace))) {
            let value: unknown;
            try {
              value = JSON.parse(text);
            } catch {
              value = undefined;
            }
            const parsed = storedSubscriptionSchema.safeParse(value);
            // Never log the data: it holds the subscriber's headers.
            if (parsed.success && parsed.data.id === id) {
              subs.push(parsed.data);
              stored.set(id, text);
            } else Log.warn({ subscription: id.slice(0, 64) }, "a stored Redfish event subscription is not valid; ignored");
          }
          Log.info({ count: subs.length }, "Redfish event subscriptions loaded");
          return subs;
        } catch (err) {
          const delay = Math.min(30_000, 500 * 2 ** attempt);
          Log.warn({ err: err instanceof Error ? err.message : String(err), retryInMs: delay }, "cannot read the Redfish event subscriptions; retrying");
          await new Promise(resolve => setTimeout(resolve, delay));
        }
      }
    },
  };
}
