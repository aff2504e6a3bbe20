// Pushes events to subscription destinations (DSP0266 "push style" eventing): one bounded queue per
// subscription (drop-oldest when full, counted and logged), sent in order through the project's keyed work queue
// (its per-key exponential back-off is the retry policy), the destination re-checked against the image URL policy
// before every attempt (DNS may have changed since the POST) and the connection pinned to the addresses that check
// approved. HTTPS verifies against Node's trust store (plus NODE_EXTRA_CA_CERTS); redirects are not followed.
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import { Log } from "../platform";
import { WorkQueue } from "../../capabilities/common/work-queue";
import { checkImageUrl, systemResolver, type ImageUrlPolicyConfig, type Resolver } from "../url-policy";
import { eventBody, type EventDelivery, type EventRecord } from "./hub";
import type { Subscription } from "./subscriptions";

export interface DeliveryOptions {
  policy: () => ImageUrlPolicyConfig;
  /** Retries of one event after its first attempt (EventService.DeliveryRetryAttempts). */
  retryAttempts: number;
  /** First retry delay (EventService.DeliveryRetryIntervalSeconds); doubles per failure up to maxRetryDelayMs. */
  retryIntervalMs: number;
  maxRetryDelayMs?: number;
  /** Events waiting per subscription; the oldest is dropped when full. */
  queueLength?: number;
  timeoutMs?: number;
  resolver?: Resolver;
}

interface Outbox {
  sub: Subscription;
  events: EventRecord[];
  dropped: number;
}

export class DeliveryFailure extends Error {}

export class HttpEventDelivery implements EventDelivery {
  readonly #options: DeliveryOptions;
  readonly #outboxes = new Map<string, Outbox>();
  readonly #queue: WorkQueue;
  /** Events sent, and events given up (after the retries, or dropped from a full queue). */
  readonly stats = { delivered: 0, failedAttempts: 0, abandoned: 0, dropped: 0 };

  constructor(options: DeliveryOptions) {
    this.#options = options;
    this.#queue = new WorkQueue(id => this.#deliverNext(id), {
      concurrency: 4,
      baseDelayMs: options.retryIntervalMs,
      maxDelayMs: options.maxRetryDelayMs ?? Math.max(options.retryIntervalMs, 60_000),
      onError: (id, error, failures) => {
        this.stats.failedAttempts++;
        Log.warn({ subscription: id, failures, err: error instanceof Error ? error.message : String(error) }, "Redfish event delivery failed; retrying");
      },
    });
  }

  enqueue(sub: Subscription, record: EventRecord): void {
    let outbox = this.#outboxes.get(sub.id);
    if (!outbox) {
      outbox = { sub, events: [], dropped: 0 };
      this.#outboxes.set(sub.id, outbox);
    }
    outbox.sub = sub;
    outbox.events.push(record);
    const limit = this.#options.queueLength ?? 100;
    if (outbox.events.length > limit) {
      outbox.events.shift();
      outbox.dropped++;
      this.stats.dropped++;
      Log.warn({ subscription: sub.id, dropped: outbox.dropped, limit }, "Redfish event queue of a subscription is full; dropped its oldest event");
    }
    // A subscription in back-off waits for its retry; adding it now would cut the back-off short.
    if (this.#queue.numRequeues(sub.id) === 0) this.#queue.add(sub.id);
  }

  forget(subscriptionId: string): void {
    this.#outboxes.delete(subscriptionId);
    this.#queue.forget(subscriptionId);
  }

  /** Events waiting for a subscription. */
  pending(subscriptionId: string): number {
    return this.#outboxes.get(subscriptionId)?.events.length ?? 0;
  }

  shutDown(): void {
    this.#queue.shutDown();
  }

  async #deliverNext(id: string): Promise<void> {
    const outbox = this.#outboxes.get(id);
    const record = outbox?.events[0];
    if (!outbox || !record) return;
    try {
      await this.#send(outbox.sub, record);
      this.stats.delivered++;
      // Delivered: the back-off starts over (client-go's Forget), so the next event is sent when it is raised.
      this.#queue.forget(id);
    } catch (error) {
      if (this.#queue.numRequeues(id) < this.#options.retryAttempts) throw error;
      this.stats.abandoned++;
      Log.warn(
        { subscription: id, eventId: record.id, attempts: this.#options.retryAttempts + 1, err: error instanceof Error ? error.message : String(error) },
        "Redfish event not delivered after its retries; dropped",
      );
      this.#queue.forget(id);
    }
    outbox.events.shift();
    if (outbox.events.length > 0) this.#queue.add(id);
  }

  async #send(sub: Subscription, record: EventRecord): Promise<void> {
    const resolved = new Map<string, string[]>();
    const resolver = this.#options.resolver ?? systemResolver;
    const check = await checkImageUrl(sub.destination, this.#options.policy(), async host => {
      const addresses = await resolver(host);
      resolved.set(host, addresses);
      return addresses;
    });
    if (!check.ok) throw new DeliveryFailure(`destination refused by redfish.imageUrlPolicy (${check.rule})`);
    const url = new URL(check.url);
    const body = JSON.stringify(eventBody([record], sub.context));
    const client = url.protocol === "https:" ? https : http;
    const status = await new Promise<number>((resolve, reject) => {
      const req = client.request(
        url,
        {
          method: "POST",
          headers: { ...sub.httpHeaders, "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) },
          timeout: this.#options.timeoutMs ?? 10_000,
          // Connect to the addresses the policy approved, not to a second, possibly different, DNS answer.
          lookup: (hostname, options, callback) => {
            const pinned = resolved.get(hostname);
            if (!pinned) return dnsLookup(hostname, options, callback);
            if (options.all) return (callback as (e: null, a: LookupAddress[]) => void)(null, pinned.map(address => ({ address, family: isIP(address) })));
            callback(null, pinned[0], isIP(pinned[0]));
          },
        },
        res => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new DeliveryFailure("the destination did not answer in time")));
      req.on("error", reject);
      req.end(body);
    });
    if (status < 200 || status > 299) throw new DeliveryFailure(`the destination answered HTTP ${status}`);
  }
}
