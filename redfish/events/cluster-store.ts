// Event subscriptions kept in the cluster: one Secret per subscription in the module namespace (HttpHeaders can
// carry credentials), written through the gateway and read back once when the watcher starts. Only the watcher
// writes them, so a list at start is the whole state.
import { Log } from "../platform";
import { createEventSubscriptionSecret, deleteEventSubscriptionSecret, listEventSubscriptionSecrets } from "../../capabilities/common/gateway";
import type { SubscriptionStore } from "./index";
import { storedSubscriptionSchema, type Subscription } from "./subscriptions";

const DATA_KEY = "subscription";
const secretName = (id: string) => `redfish-subscription-${id}`;

export function clusterSubscriptionStore(namespace: string): SubscriptionStore {
  return {
    save: (sub: Subscription) => createEventSubscriptionSecret(namespace, secretName(sub.id), { [DATA_KEY]: JSON.stringify(sub) }),
    remove: (id: string) => deleteEventSubscriptionSecret(namespace, secretName(id)),
    async load() {
      for (let attempt = 0; ; attempt++) {
        try {
          const subs: Subscription[] = [];
          for (const [name, data] of await listEventSubscriptionSecrets(namespace)) {
            let stored: unknown;
            try {
              stored = JSON.parse(data[DATA_KEY] ?? "null");
            } catch {
              stored = undefined;
            }
            const parsed = storedSubscriptionSchema.safeParse(stored);
            // Never log the data: it holds the subscriber's headers.
            if (parsed.success && secretName(parsed.data.id) === name) subs.push(parsed.data);
            else Log.warn({ secret: name }, "Redfish event subscription Secret is not valid; ignored");
          }
          Log.info({ count: subs.length }, "Redfish event subscriptions loaded");
          return subs;
        } catch (err) {
          const delay = Math.min(30_000, 500 * 2 ** attempt);
          Log.warn({ err: err instanceof Error ? err.message : String(err), retryInMs: delay }, "cannot list the Redfish event subscriptions; retrying");
          await new Promise(resolve => setTimeout(resolve, delay));
        }
      }
    },
  };
}
