// VirtualMedia: the virtual CD drive `Cd` of each System, with InsertMedia/EjectMedia. The Manager of a System
// (its BMC) serves the same collection under its own URI, as physical BMCs do (Ironic looks there).
import type { ModuleConfig } from "../../capabilities/config/schema";
import type { ClusterCache } from "../cache/types";
import type { KubeVirtDriver } from "../kubevirt/driver";
import { MediaService } from "../media/service";
import { mediaView } from "../media/model";
import {
  EJECT_ACTION,
  INSERT_ACTION,
  MEDIA_TYPES,
  TRANSFER_METHODS,
  TRANSFER_PROTOCOLS,
  parseEjectMedia,
  parseInsertMedia,
  type InsertRequest,
} from "../media/request";
import { mediaSettingsOf } from "../media/settings";
import { InsertRateLimiter, admitImage } from "../media/image-policy";
import type { Resolver } from "../url-policy";
import { mediaTaskSource, mediaTaskView, type MediaTaskSourceOptions } from "../tasks/source";
import { checkIfMatch, collection, envelope, readJsonObject, readRequestText, requestHeader, sendJson } from "../odata";
import {
  managerUri,
  resolveSystem,
  resource,
  systemUri,
  type RedfishContext,
  type ServiceDeps,
  type TaskSource,
  type VisibleSystem,
  type ResourceRoutes,
} from "./context";
import { acceptedTaskResponse, registerTaskMonitors } from "./tasks";
import { EJECT_MEDIA, INSERT_MEDIA } from "../auth/kubernetes";

export const CD_ID = "Cd";

export const systemVirtualMediaUri = (systemId: string) => `${systemUri(systemId)}/VirtualMedia`;
export const managerVirtualMediaUri = (systemId: string) => `${managerUri(systemId)}/VirtualMedia`;

export interface VirtualMedia {
  service: MediaService;
  tasks: TaskSource;
  taskOptions: MediaTaskSourceOptions;
  /** InsertMedia's checks before any write: the image URL policy and the per-user rate. */
  admit(user: string, request: InsertRequest): Promise<InsertRequest>;
}

/** The virtual-media service of an app: its writes, and its tasks for the TaskService. */
export function createVirtualMedia(options: {
  cache: ClusterCache;
  config: () => ModuleConfig | undefined;
  now: () => number;
  driver: KubeVirtDriver;
  /** How long a request waits for the cache to show its own writes (default 2 s). */
  cacheWaitMs?: number;
  /** How long InsertMedia waits at most for the import's first result (default media/service.ts FIRST_RESULT_WAIT_MS). */
  firstResultWaitMs?: number;
  /** Host name resolution for the image URL policy (default: the system's). */
  resolver?: Resolver;
}): VirtualMedia {
  const limiter = new InsertRateLimiter(options.now);
  const settings = () => mediaSettingsOf(options.config());
  const taskOptions: MediaTaskSourceOptions = {
    cache: options.cache,
    namespaces: () => (options.config()?.chassis ?? []).map(c => c.namespace),
    importTimeoutSeconds: () => settings()?.importTimeoutSeconds,
    insertTarget: (namespace, vmName) => `${systemVirtualMediaUri(`${namespace}.${vmName}`)}/${CD_ID}/Actions/${INSERT_ACTION}`,
    now: options.now,
  };
  return {
    service: new MediaService({
      cache: options.cache,
      driver: options.driver,
      settings,
      ...(options.cacheWaitMs !== undefined ? { cacheWaitMs: options.cacheWaitMs } : {}),
      ...(options.firstResultWaitMs !== undefined ? { firstResultWaitMs: options.firstResultWaitMs } : {}),
    }),
    tasks: mediaTaskSource(taskOptions),
    taskOptions,
    admit: async (user, request) => {
      const config = options.config();
      if (!config) return request; // the service answers 503 before writing anything
      limiter.take(user, config.redfish.insertMediaRate);
      return admitImage(request, config.redfish.imageUrlPolicy, options.resolver);
    },
  };
}

function imageName(image: string): string | null {
  try {
    const segments = new URL(image).pathname.split("/").filter(s => s !== "");
    const last = segments[segments.length - 1];
    return last ? decodeURIComponent(last) : null;
  } catch {
    return null;
  }
}

/** The `Cd` VirtualMedia resource at `uri` (under the System or its Manager). */
export function renderCd(system: VisibleSystem, uri: string): Record<string, unknown> {
  const view = mediaView(system.rec);
  const image = view.image;
  return {
    ...envelope("VirtualMedia", uri),
    Id: CD_ID,
    Name: "Virtual CD",
    Description: "Virtual CD/DVD drive: the image is imported into a CDI DataVolume and attached as a CD-ROM, used from the next start",
    MediaTypes: [...MEDIA_TYPES],
    Image: image ?? null,
    ImageName: image ? imageName(image) : null,
    Inserted: view.inserted,
    WriteProtected: true,
    ConnectedVia: image ? "URI" : "NotConnected",
    TransferProtocolType: image ? (image.startsWith("https:") ? "HTTPS" : "HTTP") : null,
    // The image is copied into the cluster (a DataVolume) rather than streamed from the URL.
    TransferMethod: "Upload",
    // CDI always verifies https certificates (against the system CAs and datavolume.certConfigMap).
    VerifyCertificate: true,
    Status: { State: "Enabled", Health: view.import === "failed" ? "Warning" : "OK" },
    Actions: {
      [`#${INSERT_ACTION}`]: {
        target: `${uri}/Actions/${INSERT_ACTION}`,
        "TransferProtocolType@Redfish.AllowableValues": [...TRANSFER_PROTOCOLS],
        "TransferMethod@Redfish.AllowableValues": [...TRANSFER_METHODS],
      },
      [`#${EJECT_ACTION}`]: { target: `${uri}/Actions/${EJECT_ACTION}` },
    },
  };
}

export function registerVirtualMedia(routes: ResourceRoutes, deps: ServiceDeps, media: VirtualMedia): void {
  const { cache } = deps;
  const bases: { path: string; resourceType: string; collectionUri: (id: string) => string }[] = [
    { path: "Systems", resourceType: "ComputerSystem", collectionUri: systemVirtualMediaUri },
    { path: "Managers", resourceType: "Manager", collectionUri: managerVirtualMediaUri },
  ];
  for (const base of bases) {
    const system = (c: RedfishContext) => resolveSystem(c, cache, c.req.param("id") ?? "", base.resourceType);
    const prefix = `/redfish/v1/${base.path}/:id/VirtualMedia`;
    const cdUri = (target: VisibleSystem) => `${base.collectionUri(target.id)}/${CD_ID}`;

    resource(routes, prefix, {
      GET: c => {
        const target = system(c);
        const uri = base.collectionUri(target.id);
        return sendJson(c, collection("VirtualMediaCollection", uri, "Virtual Media Collection", [`${uri}/${CD_ID}`]), { conditional: true });
      },
    }, system);

    resource(routes, `${prefix}/${CD_ID}`, { GET: c => {
      const target = system(c);
      return sendJson(c, renderCd(target, cdUri(target)), { conditional: true });
    } }, system);

    resource(routes, `${prefix}/${CD_ID}/Actions/${INSERT_ACTION}`, {
      POST: async c => {
        const target = system(c);
        const request = parseInsertMedia(readJsonObject(c));
        checkIfMatch(requestHeader(c, "if-match"), renderCd(target, cdUri(target)));
        await deps.auth.authorize(c.get("principal"), target.rec.vm.metadata.namespace!, [INSERT_MEDIA]);
        const admitted = await media.admit(c.get("principal").account.username, request);
        const outcome = await media.service.insert(target.rec, admitted);
        if (outcome.kind === "unchanged") return new Response(null, { status: 204 });
        const rec = cache.getVm(target.rec.vm.metadata.namespace!, target.rec.vm.metadata.name!) ?? target.rec;
        return acceptedTaskResponse(c, mediaTaskView(media.taskOptions, rec, outcome.dataVolume));
      },
    }, system);

    resource(routes, `${prefix}/${CD_ID}/Actions/${EJECT_ACTION}`, {
      POST: async c => {
        const target = system(c);
        parseEjectMedia(readRequestText(c));
        checkIfMatch(requestHeader(c, "if-match"), renderCd(target, cdUri(target)));
        await deps.auth.authorize(c.get("principal"), target.rec.vm.metadata.namespace!, [EJECT_MEDIA]);
        await media.service.eject(target.rec);
        return new Response(null, { status: 204 });
      },
    }, system);
  }
  registerTaskMonitors(routes, deps);
}
