// The EventService's parts put together for the Redfish app: the hub (derivation, subscriptions, SSE fan-out)
// and push delivery, with the retry settings the EventService resource advertises.
import type { ModuleConfig } from "../../capabilities/config/schema";
import type { KubernetesIdentity } from "../auth/kubernetes";
import type { ClusterCache } from "../cache/types";
import type { EventServiceOptions } from "../resources/event-service";
import type { TaskSource } from "../resources/context";
import { serviceSettings } from "../settings";
import { imageUrlPolicySchema, type Resolver } from "../url-policy";
import { HttpEventDelivery } from "./delivery";
import { EventHub } from "./hub";
import type { Subscription, SubscriptionPersistence } from "./subscriptions";

export const DEFAULT_RETRY_ATTEMPTS = 3;
export const DEFAULT_RETRY_INTERVAL_SECONDS = 5;

/** How subscriptions are kept across restarts: written on change, read back once at start. */
export interface SubscriptionStore extends SubscriptionPersistence {
  load(): Promise<Subscription[]>;
}

export interface EventSetup {
  store?: SubscriptionStore;
  retryAttempts?: number;
  retryIntervalSeconds?: number;
  /** Resolver for destination checks (tests). */
  resolver?: Resolver;
  keepAliveMs?: number;
}

const DEFAULT_POLICY = imageUrlPolicySchema.parse({});

export interface EventService extends EventServiceOptions {
  delivery: HttpEventDelivery;
  /** Resolves once the stored subscriptions are loaded. */
  loaded: Promise<void>;
}

export function createEventService(
  options: {
    cache: ClusterCache;
    config: () => ModuleConfig | undefined;
    tasks?: TaskSource;
    now: () => number;
    identitySees?: (identity: KubernetesIdentity, namespace: string) => Promise<boolean>;
  } & EventSetup,
): EventService {
  const retryAttempts = options.retryAttempts ?? DEFAULT_RETRY_ATTEMPTS;
  const retryIntervalSeconds = options.retryIntervalSeconds ?? DEFAULT_RETRY_INTERVAL_SECONDS;
  const policy = () => options.config()?.redfish.imageUrlPolicy ?? DEFAULT_POLICY;
  const delivery = new HttpEventDelivery({
    policy,
    retryAttempts,
    retryIntervalMs: retryIntervalSeconds * 1000,
    ...(options.resolver ? { resolver: options.resolver } : {}),
  });
  const hub = new EventHub({
    cache: options.cache,
    settings: () => serviceSettings(options.config()),
    ...(options.tasks ? { tasks: options.tasks } : {}),
    now: options.now,
    delivery,
    ...(options.identitySees ? { identitySees: options.identitySees } : {}),
    ...(options.store ? { persistence: options.store } : {}),
  });
  const loaded = options.store ? options.store.load().then(subs => hub.load(subs)) : Promise.resolve();
  return {
    hub,
    delivery,
    loaded,
    policy,
    retryAttempts,
    retryIntervalSeconds,
    ...(options.keepAliveMs ? { keepAliveMs: options.keepAliveMs } : {}),
  };
}
