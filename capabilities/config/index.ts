import { Capability, Log } from "pepr";
import { setPeprStoreData } from "../common/gateway";
import { MODULE_PEPR_STORE } from "../common/pepr-store";
import type { Informer } from "../common/informer";
import type { SharedInformers } from "../common/informers";
import type { KubeObject } from "../common/kube-types";
import {
  CONFIG_MAP_NAME,
  CONFIG_NAMESPACE,
  USERS_SECRET_NAME,
  configMapSourceSchema,
  secretSourceSchema,
  type ConfigMapSource,
  type SecretSource,
} from "./load";
import { CONFIG_CAPABILITY_NAME, STORE_CONFIG_DATA_KEY, STORE_CONFIG_KEY, createStorePublisher } from "./publish";
import { applyConfigSource, applyPublishedConfig, moduleConfigRuntime } from "./runtime";

// Watcher: the ConfigMap and the users Secret feed the runtime (startConfigWatch), which publishes the
// non-secret part to the Store. Admission pods read that Store key (see ./publish.ts).
export const ModuleConfig = new Capability({
  name: CONFIG_CAPABILITY_NAME,
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
  const stops = [
    watchSource(informers.informer("ConfigMap"), CONFIG_MAP_NAME, obj => {
      const configMap = obj === null ? null : parseConfigMap(obj);
      return configMap === undefined ? undefined : { configMap };
    }),
    watchSource(informers.informer("UsersSecret"), USERS_SECRET_NAME, obj => {
      const usersSecret = obj === null ? null : parseSecret(obj);
      return usersSecret === undefined ? undefined : { usersSecret };
    }),
  ];
  return () => stops.forEach(stop => stop());
}

/** Feeds one named source object to the runtime: its states, null when deleted or absent from a complete list. */
function watchSource(
  informer: Informer<KubeObject>,
  name: string,
  toChange: (obj: unknown | null) => { configMap?: ConfigMapSource | null; usersSecret?: SecretSource | null } | undefined,
): () => void {
  const apply = (obj: unknown | null, opts?: { onlyIfUnseen: boolean }) => {
    const change = toChange(obj);
    if (change) void applyConfigSource(change, opts);
  };
  return informer.addHandlers({
    onAdd: obj => apply(obj),
    onUpdate: obj => apply(obj),
    onDelete: () => apply(null),
    onSynced: () => {
      if (!informer.get(CONFIG_NAMESPACE, name)) apply(null, { onlyIfUnseen: true });
    },
  });
}

const isBuild = process.env.PEPR_MODE === "build";
const isDev = process.env.PEPR_MODE === "dev";
const isWatcher = process.env.PEPR_WATCH_MODE === "true";

if (isWatcher && !isBuild) {
  const runtime = moduleConfigRuntime();
  runtime.expectSources();
  runtime.setPublisher(createStorePublisher(value => setPeprStoreData(MODULE_PEPR_STORE, STORE_CONFIG_DATA_KEY, value), Log));
} else if (!isBuild && !isDev) {
  // Admission pod: Pepr delivers the Store before it serves the first webhook request.
  Store.subscribe(() => applyPublishedConfig(Store.getItem(STORE_CONFIG_KEY)));
}
