import { Capability, Log } from "pepr";
import { setPeprStoreData } from "../common/gateway";
import type { SharedInformers } from "../common/informers";
import {
  CONFIG_MAP_NAME,
  CONFIG_NAMESPACE,
  USERS_SECRET_NAME,
  configMapSourceSchema,
  secretSourceSchema,
  type ConfigMapSource,
  type SecretSource,
} from "./load";
import { PEPR_STORE, STORE_CONFIG_DATA_KEY, STORE_CONFIG_KEY, createStorePublisher } from "./publish";
import { applyConfigSource, applyPublishedConfig, moduleConfigRuntime } from "./runtime";

// Watcher: the ConfigMap and the users Secret feed the runtime (startConfigWatch), which publishes the
// non-secret part to the Store. Admission pods read that Store key (see ./publish.ts).
export const ModuleConfig = new Capability({
  name: "module-config",
  description: "Loads, validates and hot-reloads the kubevirt-infra configuration",
});

const { Store } = ModuleConfig;

function parseConfigMap(obj: unknown): ConfigMapSource | undefined {
  const parsed = configMapSourceSchema.safeParse(obj);
  if (!parsed.success) Log.error({ issues: parsed.error.issues.length }, `ignoring a malformed ConfigMap ${CONFIG_NAMESPACE}/${CONFIG_MAP_NAME} event`);
  return parsed.success ? parsed.data : undefined;
}

function parseSecret(obj: unknown): SecretSource | undefined {
  const parsed = secretSourceSchema.safeParse(obj);
  if (!parsed.success) Log.error({ issues: parsed.error.issues.length }, `ignoring a malformed Secret ${CONFIG_NAMESPACE}/${USERS_SECRET_NAME} event`);
  return parsed.success ? parsed.data : undefined;
}

/**
 * Watcher: the shared informers of the ConfigMap and the users Secret (each watches that ONE object in
 * pepr-system) feed the runtime. A complete list that does not hold the object says it does not exist, so a
 * ConfigMap deleted while the watcher was down still switches the capabilities (and the Store) off.
 * Secret content is never logged: the runtime logs only field names and counts.
 */
export function startConfigWatch(informers: SharedInformers): () => void {
  const configMaps = informers.informer("ConfigMap");
  const secrets = informers.informer("UsersSecret");
  const fromConfigMap = (obj: unknown) => {
    const configMap = parseConfigMap(obj);
    if (configMap) void applyConfigSource({ configMap });
  };
  const fromSecret = (obj: unknown) => {
    const usersSecret = parseSecret(obj);
    if (usersSecret) void applyConfigSource({ usersSecret });
  };
  const stops = [
    configMaps.addHandlers({
      onAdd: fromConfigMap,
      onUpdate: fromConfigMap,
      onDelete: () => void applyConfigSource({ configMap: null }),
      onSynced: () => {
        if (!configMaps.get(CONFIG_NAMESPACE, CONFIG_MAP_NAME)) void applyConfigSource({ configMap: null }, { onlyIfUnseen: true });
      },
    }),
    secrets.addHandlers({
      onAdd: fromSecret,
      onUpdate: fromSecret,
      onDelete: () => void applyConfigSource({ usersSecret: null }),
      onSynced: () => {
        if (!secrets.get(CONFIG_NAMESPACE, USERS_SECRET_NAME)) void applyConfigSource({ usersSecret: null }, { onlyIfUnseen: true });
      },
    }),
  ];
  return () => stops.forEach(stop => stop());
}

const isBuild = process.env.PEPR_MODE === "build";
const isDev = process.env.PEPR_MODE === "dev";
const isWatcher = process.env.PEPR_WATCH_MODE === "true";

if (isWatcher && !isBuild) {
  const runtime = moduleConfigRuntime();
  runtime.expectSources();
  runtime.setPublisher(createStorePublisher(value => setPeprStoreData(PEPR_STORE, STORE_CONFIG_DATA_KEY, value), Log));
} else if (!isBuild && !isDev) {
  // Admission pod: Pepr delivers the Store before it serves the first webhook request.
  Store.subscribe(() => applyPublishedConfig(Store.getItem(STORE_CONFIG_KEY)));
}
