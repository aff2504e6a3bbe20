// The event hub: derives Redfish events from the watch cache (one snapshot per system, diffed on every change
// of its record), and hands each event to the SSE streams and subscriptions whose user may see its system.
// Subscriptions live here; their persistence and HTTP delivery are injected.
import { Log } from "../platform";
import type { ClusterCache, VmRecord } from "../cache/types";
import { RESOURCE_SCHEMAS } from "../odata";
import type { TaskSource } from "../resources/context";
import type { ServiceSettings } from "../settings";
import {
  diffSnapshots,
  messageIdOf,
  messageTextOf,
  registryPrefixOf,
  severityOf,
  snapshotOf,
  type DerivedEvent,
  type SystemSnapshot,
} from "./derive";
import type { KubernetesIdentity } from "../auth/kubernetes";
import type { SseFilterSubject } from "./sse-filter";
import { subscriptionWants, type Subscription, type SubscriptionPersistence } from "./subscriptions";

export const EVENT_SCHEMA = `#Event.${RESOURCE_SCHEMAS.Event}.Event`;

/** An event with its id and time: the Events[] member of an Event body. */
export interface EventRecord {
  id: string;
  /** What an SSE `$filter` sees of it. */
  subject: SseFilterSubject;
  record: Record<string, unknown>;
}

/** Events kept for `Last-Event-ID` replay (only while someone listens). */
export const REPLAYABLE_EVENTS = 1000;

/** SubmitTestEvent's parameters, checked by the EventService resource. */
export interface TestEventRequest {
  messageId: string;
  message?: string;
  messageArgs?: string[];
  messageSeverity?: string;
  eventType?: string;
  origin?: string;
  eventGroupId?: number;
}

/** The Event resource body sent to one receiver (Context is the receiver's). */
export function eventBody(records: readonly EventRecord[], context: string): Record<string, unknown> {
  return {
    "@odata.type": EVENT_SCHEMA,
    Id: records[0]?.id ?? "0",
    Name: "Redfish Event",
    Context: context,
    Events: records.map((r, i) => ({ ...r.record, MemberId: String(i) })),
  };
}

/** A live receiver of events (an SSE stream): who it belongs to, and what to do with an event it may see. */
export interface EventListener {
  owner: string;
  /** Set when a Kubernetes identity listens: what it may see is asked of the API server (cached). */
  identity?: KubernetesIdentity;
  wants?: (subject: SseFilterSubject) => boolean;
  send: (record: EventRecord) => void;
}

export interface EventDelivery {
  enqueue(sub: Subscription, record: EventRecord): void;
  forget(subscriptionId: string): void;
}

export interface EventHubOptions {
  cache: ClusterCache;
  settings: () => ServiceSettings;
  tasks?: TaskSource;
  now: () => number;
  persistence?: SubscriptionPersistence;
  delivery?: EventDelivery;
  /** Whether a Kubernetes identity may see the systems of a namespace now (Authenticator.identitySees). */
  identitySees?: (identity: KubernetesIdentity, namespace: string) => Promise<boolean>;
  /** Subscriptions at most per user, and in all. */
  maxSubscriptionsPerUser?: number;
  maxSubscriptions?: number;
}

export class SubscriptionLimitError extends Error {}

export class EventHub {
  readonly #options: EventHubOptions;
  readonly #snapshots = new Map<string, { rec: VmRecord; snapshot: SystemSnapshot; chassis: readonly string[] }>();
  readonly #subscriptions = new Map<string, Subscription>();
  readonly #listeners = new Set<EventListener>();
  readonly #unsubscribe: () => void;
  /** Per receiver of a Kubernetes identity: its events in order while their access checks run. */
  readonly #identityQueues = new WeakMap<object, Promise<void>>();
  /** The latest events with the system they belong to, oldest first, for Last-Event-ID replay. */
  readonly #recent: { record: EventRecord; namespace: string; chassis: readonly string[] }[] = [];
  #sequence = 0;
  /** Whether the snapshots were taken from a cache holding the whole cluster (after the initial lists). */
  #baselined = false;

  constructor(options: EventHubOptions) {
    this.#options = options;
    this.#unsubscribe = options.cache.onChange(ev => {
      // Nobody listens: derive nothing and keep no snapshots (10,000 systems would cost a rendered snapshot each).
      if (!this.#active()) return;
      if (!this.#baselined && options.cache.synced()) this.#rebaseline(ev.kind === "DataVolume" ? undefined : `${ev.namespace}/${ev.name}`);
      if (ev.kind !== "DataVolume") {
        this.#observe(ev.namespace, ev.name);
      } else if (this.#baselined) {
        // A DataVolume belongs to the VMs of its namespace whose records changed with it (records are replaced on
        // change, so unchanged ones are skipped by identity). During the initial lists the rebaseline covers them.
        for (const rec of options.cache.listVms(ev.namespace)) this.#observe(ev.namespace, rec.vm.metadata.name!);
      }
    });
  }

  close(): void {
    this.#unsubscribe();
    this.#listeners.clear();
  }

  // ---- subscriptions ----

  /** Subscriptions read back at start (no persistence write). */
  load(subs: readonly Subscription[]): void {
    this.#whileListened(() => {
      for (const sub of subs) this.#subscriptions.set(sub.id, sub);
    });
  }

  async addSubscription(sub: Subscription): Promise<void> {
    const perUser = this.#options.maxSubscriptionsPerUser ?? 20;
    const total = this.#options.maxSubscriptions ?? 500;
    const owned = [...this.#subscriptions.values()].filter(s => s.owner === sub.owner).length;
    if (owned >= perUser) throw new SubscriptionLimitError(`at most ${perUser} subscriptions per user`);
    if (this.#subscriptions.size >= total) throw new SubscriptionLimitError(`at most ${total} subscriptions in all`);
    await this.#options.persistence?.save(sub);
    this.#whileListened(() => this.#subscriptions.set(sub.id, sub));
  }

  async removeSubscription(id: string): Promise<void> {
    await this.#options.persistence?.remove(id);
    this.#whileListened(() => this.#subscriptions.delete(id));
    this.#options.delivery?.forget(id);
  }

  /** A subscription as its owner sees it; undefined for anyone else (a 404, like a foreign system). */
  subscription(id: string, owner: string): Subscription | undefined {
    const sub = this.#subscriptions.get(id);
    return sub?.owner === owner ? sub : undefined;
  }

  subscriptionsOf(owner: string): Subscription[] {
    return [...this.#subscriptions.values()].filter(s => s.owner === owner).sort((a, b) => a.id.localeCompare(b.id));
  }

  /**
   * Adds an SSE stream; returns its removal. With `lastEventId` (the client's Last-Event-ID), the kept events after it
   * that the listener may see are sent first (ids are per watcher process; at most REPLAYABLE_EVENTS are kept).
   */
  listen(listener: EventListener, lastEventId?: number): () => void {
    if (lastEventId !== undefined) {
      for (const { record, namespace, chassis } of this.#recent) {
        if (Number(record.id) <= lastEventId || (listener.wants && !listener.wants(record.subject))) continue;
        this.#whenVisible(listener, listener, namespace, chassis, () => listener.send(record));
      }
    }
    this.#whileListened(() => this.#listeners.add(listener));
    return () => this.#whileListened(() => this.#listeners.delete(listener));
  }

  /** SubmitTestEvent: one event to the owner's own subscriptions and streams, whatever their filters. */
  submitTestEvent(owner: string, request: TestEventRequest): EventRecord {
    const id = String(++this.#sequence);
    const eventType = request.eventType ?? "Other";
    const origin = request.origin ?? "/redfish/v1/EventService";
    const record: EventRecord = {
      id,
      subject: {
        EventFormatType: "Event",
        EventType: eventType,
        MessageId: request.messageId,
        OriginResource: origin,
        RegistryPrefix: request.messageId.split(".")[0],
        ResourceType: "",
      },
      record: {
        EventId: id,
        EventTimestamp: new Date(this.#options.now()).toISOString(),
        EventType: eventType,
        MessageId: request.messageId,
        Message: request.message ?? "Test event.",
        MessageArgs: request.messageArgs ?? [],
        MessageSeverity: request.messageSeverity ?? "OK",
        OriginOfCondition: { "@odata.id": origin },
        ...(request.eventGroupId !== undefined ? { EventGroupId: request.eventGroupId } : {}),
      },
    };
    for (const listener of this.#listeners) if (listener.owner === owner) this.#inOrder(listener, listener.identity, () => listener.send(record));
    for (const sub of this.#subscriptions.values()) if (sub.owner === owner) this.#inOrder(sub, sub.identity, () => this.#options.delivery?.enqueue(sub, record));
    return record;
  }

  /** Events are derived only while a subscription or an SSE stream exists. */
  #active(): boolean {
    return this.#subscriptions.size > 0 || this.#listeners.size > 0;
  }

  /**
   * Applies a change of who listens: the first listener takes the starting snapshots (what the cache holds now is
   * the starting point, not news), the last one going drops them.
   */
  #whileListened(change: () => void): void {
    const wasActive = this.#active();
    change();
    const active = this.#active();
    if (active && !wasActive && this.#options.cache.synced()) this.#rebaseline();
    if (!active && wasActive) {
      this.#snapshots.clear();
      this.#recent.length = 0;
      this.#baselined = false;
    }
  }

  // ---- derivation ----

  #observe(namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    const rec = this.#options.cache.getVm(namespace, name);
    const previous = this.#snapshots.get(key);
    if (rec && previous?.rec === rec) return;
    let snapshot: SystemSnapshot | undefined;
    if (rec) snapshot = this.#remember(namespace, name, rec);
    else this.#snapshots.delete(key);
    // The initial lists replay every object: no events until the cache holds the cluster.
    if (!this.#options.cache.synced()) return;
    // A removed system's events go to who could see it until then.
    const chassis = rec ? this.#options.cache.chassisOf(namespace, name) : (previous?.chassis ?? []);
    for (const event of diffSnapshots(namespace, name, previous?.snapshot, snapshot)) this.#publish(event, namespace, chassis);
  }

  /**
   * Once the initial lists are in: snapshots of every system of the configured chassis whose record changed since
   * its snapshot (e.g. its DataVolumes were listed after it), except the system whose change is being handled.
   */
  #rebaseline(except?: string): void {
    this.#baselined = true;
    const namespaces = new Set([...this.#options.settings().chassis.values()].map(c => c.namespace));
    for (const namespace of namespaces) {
      for (const rec of this.#options.cache.listVms(namespace)) {
        const key = `${namespace}/${rec.vm.metadata.name}`;
        if (key !== except && this.#snapshots.get(key)?.rec !== rec) this.#remember(namespace, rec.vm.metadata.name!, rec);
      }
    }
  }

  #remember(namespace: string, name: string, rec: VmRecord): SystemSnapshot {
    const tasks = this.#options.tasks?.ofSystem?.(rec) ?? (this.#options.tasks?.list() ?? []).filter(t => t.namespace === namespace && t.vmName === name);
    const snapshot = snapshotOf(rec, tasks);
    this.#snapshots.set(`${namespace}/${name}`, { rec, snapshot, chassis: this.#options.cache.chassisOf(namespace, name) });
    return snapshot;
  }

  #publish(event: DerivedEvent, namespace: string, chassis: readonly string[]): void {
    const id = String(++this.#sequence);
    const record: EventRecord = {
      id,
      subject: {
        EventFormatType: "Event",
        EventType: event.eventType,
        MessageId: messageIdOf(event.messageKey),
        OriginResource: event.origin,
        RegistryPrefix: registryPrefixOf(event.messageKey),
        ResourceType: event.resourceType,
      },
      record: {
        EventId: id,
        EventTimestamp: new Date(this.#options.now()).toISOString(),
        EventType: event.eventType,
        MessageId: messageIdOf(event.messageKey),
        Message: messageTextOf(event.messageKey, event.messageArgs),
        MessageArgs: event.messageArgs,
        MessageSeverity: severityOf(event.messageKey),
        OriginOfCondition: { "@odata.id": event.origin },
      },
    };
    this.#recent.push({ record, namespace, chassis });
    if (this.#recent.length > REPLAYABLE_EVENTS) this.#recent.shift();
    for (const listener of this.#listeners) {
      if (listener.wants && !listener.wants(record.subject)) continue;
      this.#whenVisible(listener, listener, namespace, chassis, () => {
        try {
          listener.send(record);
        } catch (err) {
          Log.warn({ err: err instanceof Error ? err.message : String(err) }, "Redfish event stream: send failed");
        }
      });
    }
    for (const sub of this.#subscriptions.values()) {
      if (subscriptionWants(sub, event)) this.#whenVisible(sub, sub, namespace, chassis, () => this.#options.delivery?.enqueue(sub, record));
    }
  }

  /**
   * Runs `deliver` if the receiver may see the event's system: a configured user at once (its chassis); a Kubernetes
   * identity once its access decision is in (usually cached), its events kept in order.
   */
  #whenVisible(receiver: object, who: { owner: string; identity?: KubernetesIdentity }, namespace: string, chassis: readonly string[], deliver: () => void): void {
    const { identity } = who;
    if (!identity) {
      if (this.#visibleTo(who.owner, chassis)) deliver();
      return;
    }
    const sees = this.#options.identitySees;
    if (!sees || chassis.length === 0) return;
    this.#inOrder(receiver, identity, async () => {
      if (await sees(identity, namespace).catch(() => false)) deliver();
    });
  }

  /** Runs `step` now for a configured user's receiver; after the receiver's pending steps for a Kubernetes identity's. */
  #inOrder(receiver: object, identity: KubernetesIdentity | undefined, step: () => unknown): void {
    if (!identity) {
      step();
      return;
    }
    const previous = this.#identityQueues.get(receiver) ?? Promise.resolve();
    this.#identityQueues.set(receiver, previous.then(step).then(() => undefined));
  }

  /**
   * Whether a user may see the event's system now: the user's configured chassis (read at publication, so a
   * changed or removed user stops receiving at once) against the chassis that contain the system.
   */
  #visibleTo(owner: string, chassis: readonly string[]): boolean {
    const settings = this.#options.settings();
    const mine = (settings.users.account(owner)?.chassis ?? []).filter(name => settings.chassis.has(name));
    return chassis.some(ch => mine.includes(ch));
  }
}
