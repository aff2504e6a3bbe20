import { Capability, K8s, Log, a, kind } from "pepr";
import { setPeprStoreData } from "../common/gateway";
import {
  CONFIG_MAP_NAME,
  CONFIG_NAMESPACE,
  USERS_SECRET_NAME,
  configMapSourceSchema,
  secretSourceSchema,
  type ConfigMapSource,
  type SecretSource,
} from "./load";
import { PEPR_STORE, STORE_CONFIG_DATA_KEY, STORE_CONFIG_KEY, createStorePublisher, describeError } from "./publish";
import { applyConfigSource, applyPublishedConfig, moduleConfigRuntime } from "./runtime";

// Watcher: the ConfigMap and the users Secret feed the runtime, which publishes the non-secret part to
// the Store. Admission pods never see Watch callbacks; they read that Store key (see ./publish.ts).
export const ModuleConfig = new Capability({
  name: "module-config",
  description: "Loads, validates and hot-reloads the kubevirt-infra configuration",
});

const { When, Store } = ModuleConfig;

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

When(a.ConfigMap)
  .IsCreatedOrUpdated()
  .InNamespace(CONFIG_NAMESPACE)
  .WithName(CONFIG_MAP_NAME)
  .Watch(async obj => {
    const configMap = parseConfigMap(obj);
    if (configMap) await applyConfigSource({ configMap });
  });
When(a.ConfigMap)
  .IsDeleted()
  .InNamespace(CONFIG_NAMESPACE)
  .WithName(CONFIG_MAP_NAME)
  .Watch(async () => {
    await applyConfigSource({ configMap: null });
  });
When(a.Secret)
  .IsCreatedOrUpdated()
  .InNamespace(CONFIG_NAMESPACE)
  .WithName(USERS_SECRET_NAME)
  .Watch(async obj => {
    const usersSecret = parseSecret(obj);
    if (usersSecret) await applyConfigSource({ usersSecret });
  });
When(a.Secret)
  .IsDeleted()
  .InNamespace(CONFIG_NAMESPACE)
  .WithName(USERS_SECRET_NAME)
  .Watch(async () => {
    await applyConfigSource({ usersSecret: null });
  });

async function getOrNull<T>(read: () => Promise<T>): Promise<T | null> {
  try {
    return await read();
  } catch (e) {
    if ((e as { status?: number }).status === 404) return null;
    throw e;
  }
}

// Watch events never say "this object does not exist", so the watcher reads both objects once at start:
// a ConfigMap deleted while the watcher was down must still switch the capabilities (and the Store) off.
async function readSourcesAtStart(): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      const [configMap, usersSecret] = await Promise.all([
        getOrNull(() => K8s(kind.ConfigMap).InNamespace(CONFIG_NAMESPACE).Get(CONFIG_MAP_NAME)),
        getOrNull(() => K8s(kind.Secret).InNamespace(CONFIG_NAMESPACE).Get(USERS_SECRET_NAME)),
      ]);
      await applyConfigSource(
        {
          configMap: configMap === null ? null : parseConfigMap(configMap),
          usersSecret: usersSecret === null ? null : parseSecret(usersSecret),
        },
        { onlyIfUnseen: true },
      );
      return;
    } catch (e) {
      Log.warn({ attempt, error: describeError(e) }, "could not read the kubevirt-infra configuration yet; retrying");
      await new Promise(resolve => setTimeout(resolve, Math.min(5000, 250 * 2 ** attempt)).unref());
    }
  }
}

const isBuild = process.env.PEPR_MODE === "build";
const isDev = process.env.PEPR_MODE === "dev";
const isWatcher = process.env.PEPR_WATCH_MODE === "true";

if (isWatcher && !isBuild) {
  const runtime = moduleConfigRuntime();
  runtime.expectSources();
  runtime.setPublisher(createStorePublisher(value => setPeprStoreData(PEPR_STORE, STORE_CONFIG_DATA_KEY, value), Log));
  void readSourcesAtStart();
} else if (!isBuild && !isDev) {
  // Admission pod: Pepr delivers the Store before it serves the first webhook request.
  Store.subscribe(() => applyPublishedConfig(Store.getItem(STORE_CONFIG_KEY)));
}
