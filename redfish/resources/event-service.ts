// EventService: the service description, the Subscriptions collection (push-style EventDestinations, per user)
// and the ServerSentEventUri stream. Events come from redfish/events (derived from the watch cache); a user only
// sees, deletes and receives through their own subscriptions, and only events of systems they may see.
import { z } from "zod";
import { streamSSE } from "hono/streaming";
import { baseError, notFound } from "../errors";
import { EVENT_TYPES, REGISTRY_PREFIXES, RESOURCE_TYPES } from "../events/derive";
import { eventBody, SubscriptionLimitError, type EventHub } from "../events/hub";
import { parseSseFilter, SseFilterError, type SseFilter } from "../events/sse-filter";
import { newSubscription, parseHttpHeaders, subscriptionRequestSchema, type Subscription } from "../events/subscriptions";
import { collection, envelope, link, parseBody, readJsonObject, requestHeader, sendJson, SERVICE_ROOT } from "../odata";
import { checkImageUrl, type ImageUrlPolicyConfig } from "../url-policy";
import { resource, type RedfishContext, type ResourceRoutes } from "./context";

export const EVENT_SERVICE_URI = `${SERVICE_ROOT}/EventService`;
export const SUBSCRIPTIONS_URI = `${EVENT_SERVICE_URI}/Subscriptions`;
export const SSE_URI = `${EVENT_SERVICE_URI}/SSE`;
const TEST_EVENT_ACTION = "EventService.SubmitTestEvent";
export const SUBMIT_TEST_EVENT_URI = `${EVENT_SERVICE_URI}/Actions/${TEST_EVENT_ACTION}`;

/** SubmitTestEvent's parameters (EventService v1_10_0; MessageId is required, EventId/EventTimestamp are the service's). */
const testEventSchema = z.strictObject({
  MessageId: z.string().min(1).max(256),
  Message: z.string().max(1024).optional(),
  MessageArgs: z.array(z.string().max(256)).max(16).optional(),
  MessageSeverity: z.enum(["OK", "Warning", "Critical"]).optional(),
  Severity: z.string().max(64).optional(),
  EventType: z.enum(EVENT_TYPES).optional(),
  EventGroupId: z.int().optional(),
  EventId: z.string().max(256).optional(),
  EventTimestamp: z.string().max(64).optional(),
  OriginOfCondition: z.string().max(1024).optional(),
});
/** Events written to an SSE stream and not yet taken by the client; beyond this the stream is closed. */
const MAX_UNSENT_SSE_EVENTS = 1000;
const subscriptionUri = (id: string) => `${SUBSCRIPTIONS_URI}/${encodeURIComponent(id)}`;

export interface EventServiceOptions {
  hub: EventHub;
  policy: () => ImageUrlPolicyConfig;
  retryAttempts: number;
  retryIntervalSeconds: number;
  /** SSE keep-alive comment period. */
  keepAliveMs?: number;
}

function renderSubscription(sub: Subscription): Record<string, unknown> {
  return {
    ...envelope("EventDestination", subscriptionUri(sub.id)),
    Id: sub.id,
    Name: "Event Subscription",
    Destination: sub.destination,
    Protocol: "Redfish",
    SubscriptionType: "RedfishEvent",
    EventFormatType: "Event",
    Context: sub.context,
    EventTypes: sub.eventTypes,
    RegistryPrefixes: sub.registryPrefixes,
    ResourceTypes: sub.resourceTypes,
    // DSP0266: HttpHeaders are never returned (they may carry credentials).
    HttpHeaders: [],
    Status: { State: "Enabled", Health: "OK" },
  };
}

export function registerEventService(routes: ResourceRoutes, options: EventServiceOptions): void {
  const { hub } = options;
  const owner = (c: RedfishContext) => c.get("principal").account.username;

  resource(routes, EVENT_SERVICE_URI, {
    GET: c =>
      sendJson(
        c,
        {
          ...envelope("EventService", EVENT_SERVICE_URI),
          Id: "EventService",
          Name: "Event Service",
          Description: "Events derived from the VirtualMachines, VirtualMachineInstances and DataVolumes of the user's chassis",
          ServiceEnabled: true,
          DeliveryRetryAttempts: options.retryAttempts,
          DeliveryRetryIntervalSeconds: options.retryIntervalSeconds,
          EventFormatTypes: ["Event"],
          EventTypesForSubscription: [...EVENT_TYPES],
          RegistryPrefixes: [...REGISTRY_PREFIXES],
          ResourceTypes: [...RESOURCE_TYPES],
          ServerSentEventUri: SSE_URI,
          SSEFilterPropertiesSupported: {
            EventFormatType: true,
            EventType: true,
            MessageId: true,
            MetricReportDefinition: false,
            OriginResource: true,
            RegistryPrefix: true,
            ResourceType: true,
            SubordinateResources: false,
          },
          SubordinateResourcesSupported: false,
          IncludeOriginOfConditionSupported: false,
          Subscriptions: link(SUBSCRIPTIONS_URI),
          Actions: { [`#${TEST_EVENT_ACTION}`]: { target: SUBMIT_TEST_EVENT_URI } },
          Status: { State: "Enabled", Health: "OK" },
        },
        { conditional: true },
      ),
  });

  resource(routes, SUBSCRIPTIONS_URI, {
    GET: c =>
      sendJson(
        c,
        collection("EventDestinationCollection", SUBSCRIPTIONS_URI, "Event Subscriptions", hub.subscriptionsOf(owner(c)).map(s => subscriptionUri(s.id))),
        { conditional: true },
      ),
    POST: async c => {
      const raw = readJsonObject(c);
      const request = parseBody(subscriptionRequestSchema, raw);
      const headers = parseHttpHeaders(request.HttpHeaders);
      const check = await checkImageUrl(request.Destination, options.policy());
      if (!check.ok) {
        throw baseError(400, "PropertyValueFormatError", [request.Destination.slice(0, 256), "Destination"], {
          resolution: `The destination is not allowed: ${check.message}.`,
          relatedProperties: ["#/Destination"],
        });
      }
      if (new URL(check.url).username || new URL(check.url).password) {
        throw baseError(400, "PropertyValueFormatError", ["(hidden)", "Destination"], {
          resolution: "Give credentials in HttpHeaders, not in the Destination URL.",
          relatedProperties: ["#/Destination"],
        });
      }
      const sub = newSubscription(owner(c), check.url, request, headers, c.get("principal").account.identity);
      try {
        await hub.addSubscription(sub);
      } catch (err) {
        if (err instanceof SubscriptionLimitError) {
          throw baseError(400, "GeneralError", [], { resolution: `Delete a subscription first: ${err.message}.` });
        }
        throw err;
      }
      return sendJson(c, renderSubscription(sub), { status: 201, headers: { Location: subscriptionUri(sub.id) } });
    },
  });

  const ownSubscription = (c: RedfishContext) => {
    const id = c.req.param("id") ?? "";
    const sub = hub.subscription(id, owner(c));
    if (!sub) throw notFound("EventDestination", id);
    return sub;
  };
  resource(
    routes,
    `${SUBSCRIPTIONS_URI}/:id`,
    {
      GET: c => sendJson(c, renderSubscription(ownSubscription(c)), { conditional: true }),
      DELETE: async c => {
        const sub = ownSubscription(c);
        await hub.removeSubscription(sub.id);
        return new Response(null, { status: 204 });
      },
    },
    ownSubscription,
  );

  resource(routes, SUBMIT_TEST_EVENT_URI, {
    POST: async c => {
      const body = parseBody(testEventSchema, readJsonObject(c), TEST_EVENT_ACTION);
      hub.submitTestEvent(owner(c), {
        messageId: body.MessageId,
        ...(body.Message !== undefined ? { message: body.Message } : {}),
        ...(body.MessageArgs ? { messageArgs: body.MessageArgs } : {}),
        ...(body.MessageSeverity ? { messageSeverity: body.MessageSeverity } : {}),
        ...(body.EventType ? { eventType: body.EventType } : {}),
        ...(body.OriginOfCondition !== undefined ? { origin: body.OriginOfCondition } : {}),
        ...(body.EventGroupId !== undefined ? { eventGroupId: body.EventGroupId } : {}),
      });
      return new Response(null, { status: 204 });
    },
  });

  resource(routes, SSE_URI, {
    GET: c => {
      const username = owner(c);
      const identity = c.get("principal").account.identity;
      const filterText = c.req.query("$filter");
      let wants: SseFilter | undefined;
      try {
        wants = filterText === undefined ? undefined : parseSseFilter(filterText);
      } catch (err) {
        if (!(err instanceof SseFilterError)) throw err;
        throw baseError(400, "GeneralError", [], { resolution: `Correct the $filter query parameter: ${err.message}.` });
      }
      // Last-Event-ID (the EventSource reconnect header): replay what was kept after it; anything but an id is ignored.
      const lastEventHeader = requestHeader(c, "last-event-id");
      const lastEventId = lastEventHeader !== undefined && /^\d{1,15}$/.test(lastEventHeader.trim()) ? Number(lastEventHeader.trim()) : undefined;
      return streamSSE(c, async stream => {
        // A client that stops reading is disconnected rather than buffered for without bound.
        let unsent = 0;
        const stop = hub.listen({
          owner: username,
          ...(identity ? { identity } : {}),
          ...(wants ? { wants } : {}),
          send: record => {
            if (++unsent > MAX_UNSENT_SSE_EVENTS) return void stream.abort();
            void stream.writeSSE({ id: record.id, data: JSON.stringify(eventBody([record], "")) }).finally(() => unsent--);
          },
        }, lastEventId);
        const keepAlive = setInterval(() => void stream.write(": keep-alive\n\n"), options.keepAliveMs ?? 15_000);
        await new Promise<void>(resolve => stream.onAbort(resolve));
        clearInterval(keepAlive);
        stop();
      });
    },
  });
}
