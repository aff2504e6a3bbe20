// The unauthenticated entry points: /redfish, the ServiceRoot, the OData service document and $metadata.
import cfg from "../../package.json";
import {
  COLLECTION_TYPES,
  envelope,
  link,
  REDFISH_VERSION,
  RESOURCE_SCHEMAS,
  sendJson,
  SERVICE_ROOT,
} from "../odata";
import { resource, type ServiceDeps, type ResourceRoutes } from "./context";
import { uuidV5 } from "./hardware";
import { SESSIONS_URI } from "./session-service";

/** Namespace for ServiceRoot UUIDs derived from an installation id (fixed: the same id gives the same UUID). */
const SERVICE_UUID_NAMESPACE = "8f0c5d3e-2b7a-4e61-9c4d-6a1f0e9b7c25";

export function serviceUuid(configured: string | undefined, installationId: string | undefined): string {
  if (configured) return configured.toLowerCase();
  return uuidV5(SERVICE_UUID_NAMESPACE, installationId ?? cfg.pepr.uuid);
}

const TOP_LEVEL = {
  Systems: `${SERVICE_ROOT}/Systems`,
  Chassis: `${SERVICE_ROOT}/Chassis`,
  Managers: `${SERVICE_ROOT}/Managers`,
  SessionService: `${SERVICE_ROOT}/SessionService`,
  AccountService: `${SERVICE_ROOT}/AccountService`,
  Tasks: `${SERVICE_ROOT}/TaskService`,
  EventService: `${SERVICE_ROOT}/EventService`,
};

/** CSDL: every DMTF schema (and version) whose types the service returns, so validators can resolve them. */
export function metadataDocument(): string {
  const refs: string[] = [];
  const ref = (file: string, namespaces: string[]) =>
    refs.push(
      `  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/${file}">\n` +
        namespaces.map(ns => `    <edmx:Include Namespace="${ns}"/>\n`).join("") +
        `  </edmx:Reference>`,
    );
  for (const [type, version] of Object.entries(RESOURCE_SCHEMAS)) ref(`${type}_v1.xml`, [type, `${type}.${version}`]);
  for (const type of Object.values(COLLECTION_TYPES)) ref(`${type}_v1.xml`, [type]);
  ref("Resource_v1.xml", ["Resource", "Resource.v1_0_0"]);
  ref("Message_v1.xml", ["Message", "Message.v1_1_1"]);
  ref("Settings_v1.xml", ["Settings", "Settings.v1_3_5"]); // Bios @Redfish.Settings
  refs.push(
    `  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/RedfishExtensions_v1.xml">\n` +
      `    <edmx:Include Namespace="RedfishExtensions.v1_0_0" Alias="Redfish"/>\n` +
      `  </edmx:Reference>`,
  );
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">`,
    ...refs,
    `  <edmx:DataServices>`,
    `    <Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="Service">`,
    `      <EntityContainer Name="Service" Extends="ServiceRoot.${RESOURCE_SCHEMAS.ServiceRoot}.ServiceContainer"/>`,
    `    </Schema>`,
    `  </edmx:DataServices>`,
    `</edmx:Edmx>`,
    ``,
  ].join("\n");
}

export function registerServiceRoot(routes: ResourceRoutes, deps: ServiceDeps): void {
  resource(routes, "/redfish", { GET: c => sendJson(c, { v1: `${SERVICE_ROOT}/` }, { conditional: true }) });

  resource(routes, SERVICE_ROOT, {
    GET: c =>
      sendJson(
        c,
        {
          ...envelope("ServiceRoot", `${SERVICE_ROOT}/`),
          Id: "RootService",
          Name: "Root Service",
          RedfishVersion: REDFISH_VERSION,
          UUID: serviceUuid(c.get("settings").serviceUUID, deps.installationId()),
          Product: "kubevirt-infra",
          Vendor: "kubevirt-infra",
          ProtocolFeaturesSupported: {
            ExcerptQuery: false,
            ExpandQuery: { ExpandAll: false, Levels: false, Links: false, NoLinks: false },
            FilterQuery: false,
            OnlyMemberQuery: false,
            SelectQuery: false,
          },
          ...Object.fromEntries(Object.entries(TOP_LEVEL).map(([name, uri]) => [name, link(uri)])),
          Links: { Sessions: link(SESSIONS_URI) },
        },
        { conditional: true },
      ),
  });

  resource(routes, `${SERVICE_ROOT}/odata`, {
    GET: c =>
      sendJson(
        c,
        {
          "@odata.context": `${SERVICE_ROOT}/$metadata`,
          value: [
            { name: "Service", kind: "Singleton", url: `${SERVICE_ROOT}/` },
            ...Object.entries(TOP_LEVEL).map(([name, url]) => ({ name, kind: "Singleton", url })),
          ],
        },
        { conditional: true },
      ),
  });

  const metadata = metadataDocument();
  resource(routes, `${SERVICE_ROOT}/$metadata`, {
    GET: () => new Response(metadata, { headers: { "Content-Type": "application/xml; charset=utf-8" } }),
  });
}
