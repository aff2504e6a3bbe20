// The process's shared informers: at most ONE informer per kind, whatever the number of consumers (Redfish
// cache, DataVolume audit, node-identity back-fill, config). What each kind watches, where, and which deployment
// role needs it, is data here; scripts/deploy/permissions.ts derives the list/watch RBAC from it.
// VMs, VMIs and DataVolumes are watched in the namespaces the configuration names (chassis, policed DataVolume
// namespaces), one stream per namespace behind the kind's one informer, and never cluster-wide: the schema has no
// "every namespace" chassis, so with nothing configured nothing of those kinds is watched.
import { CONFIG_MAP_NAME, CONFIG_NAMESPACE, USERS_SECRET_NAME } from "../config/load";
import { datavolumePolicyActive, redfishActive, type ModuleConfig } from "../config/schema";
import { DATAVOLUME_BY_VM_INDEX, owningVmKeys } from "./indexer";
import { Informer, ListGate, type InformerLog, type NamespaceScope } from "./informer";
import type { KubeClient } from "./kube-client";
import type { KubeObject, ObjectMeta } from "./kube-types";

/** Namespaces the configuration names: the chassis' (Redfish) and the policed DataVolume namespaces (the audit). */
export type ConfiguredNamespaces = "chassis" | "policed";

export interface InformedKind {
  kind: string;
  group: string;
  version: string;
  plural: string;
  /** Watched in this namespace only. */
  namespace?: string;
  /** Watched in the namespaces the configuration names for these (one stream each); neither field = cluster-wide. */
  namespacesFrom?: readonly ConfiguredNamespaces[];
  /** Only this object (a metadata.name field selector, which RBAC authorizes against resourceNames). */
  name?: string;
  /** Deployment role that needs the watch (see capabilities/config/schema.ts `role`). */
  role: "infra" | "nested" | "any";
  /** Content is secret: never logged, not even object names. */
  secret?: boolean;
  why: string;
}

export const INFORMED_KINDS = {
  VirtualMachine: {
    kind: "VirtualMachine",
    group: "kubevirt.io",
    version: "v1",
    plural: "virtualmachines",
    namespacesFrom: ["chassis"],
    role: "infra",
    why: "Redfish systems (watch cache)",
  },
  VirtualMachineInstance: {
    kind: "VirtualMachineInstance",
    group: "kubevirt.io",
    version: "v1",
    plural: "virtualmachineinstances",
    namespacesFrom: ["chassis"],
    role: "infra",
    why: "Redfish power state (watch cache)",
  },
  DataVolume: {
    kind: "DataVolume",
    group: "cdi.kubevirt.io",
    version: "v1beta1",
    plural: "datavolumes",
    namespacesFrom: ["chassis", "policed"],
    role: "infra",
    why: "Redfish virtual media (watch cache) and the datavolume-policy audit",
  },
  Node: { kind: "Node", group: "", version: "v1", plural: "nodes", role: "nested", why: "node-identity back-fill" },
  ConfigMap: {
    kind: "ConfigMap",
    group: "",
    version: "v1",
    plural: "configmaps",
    namespace: CONFIG_NAMESPACE,
    name: CONFIG_MAP_NAME,
    role: "any",
    why: "the module configuration (hot reload)",
  },
  UsersSecret: {
    kind: "Secret",
    group: "",
    version: "v1",
    plural: "secrets",
    namespace: CONFIG_NAMESPACE,
    name: USERS_SECRET_NAME,
    role: "any",
    secret: true,
    why: "the Redfish users (hot reload); this one Secret only, never listed cluster-wide",
  },
} as const satisfies Record<string, InformedKind>;

export type InformedKindName = keyof typeof INFORMED_KINDS;

/** The kind's collection path in `namespace` (its fixed one when it has one), or cluster-wide. */
export function collectionPath(def: InformedKind, namespace = def.namespace): string {
  const prefix = def.group === "" ? `/api/${def.version}` : `/apis/${def.group}/${def.version}`;
  return namespace ? `${prefix}/namespaces/${encodeURIComponent(namespace)}/${def.plural}` : `${prefix}/${def.plural}`;
}

/** The namespaces of one kind of configured namespace (none while that capability is inactive). */
export function configuredNamespaces(config: ModuleConfig | undefined, from: ConfiguredNamespaces): string[] {
  if (from === "chassis") return redfishActive(config) ? config!.chassis.map(c => c.namespace) : [];
  return datavolumePolicyActive(config) ? config!.datavolumePolicy.namespaces : [];
}

/** Where the informer of `def` lists and watches under `config`. */
export function watchedNamespaces(def: InformedKind, config: ModuleConfig | undefined): NamespaceScope {
  if (def.namespace) return [def.namespace];
  if (!def.namespacesFrom) return "all";
  return [...new Set(def.namespacesFrom.flatMap(from => configuredNamespaces(config, from)))].sort();
}

const LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration";

/**
 * What no consumer reads and every object carries: managedFields and kubectl's last-applied copy of the object
 * (often as large as the object itself). Dropped before an object is stored. The object is the informer's own
 * (just parsed): its metadata is replaced in place, because a copy by object spread (`{ ...obj, metadata }`)
 * gave every stored VM a hidden class of its own once frozen (~230 bytes per VM in V8 maps and descriptors).
 */
export function withoutBookkeeping<T extends KubeObject>(obj: T): T {
  const { managedFields: _managed, ...metadata }: ObjectMeta = obj.metadata;
  if (metadata.annotations && LAST_APPLIED in metadata.annotations) {
    const { [LAST_APPLIED]: _lastApplied, ...rest } = metadata.annotations;
    metadata.annotations = rest;
  }
  obj.metadata = metadata;
  return obj;
}

/** The configuration as the informers follow it (capabilities/config/runtime.ts in the watcher). */
export interface ConfigFeed {
  current(): ModuleConfig | undefined;
  onChange(fn: (config: ModuleConfig) => void): () => void;
}

export interface SharedInformersOptions {
  log: InformerLog;
  /** Decides the namespaces of the kinds watched where the configuration says. */
  config: ConfigFeed;
  watchTimeoutSeconds?: number;
  backoff?: { initialMs: number; maxMs: number };
}

/** Creates each kind's informer on first request and hands the same one to every later consumer. */
export class SharedInformers {
  readonly #client: KubeClient;
  readonly #opts: SharedInformersOptions;
  readonly #informers = new Map<InformedKindName, Informer<KubeObject>>();
  readonly #unsubscribe: () => void;
  /** One bound on lists in flight for the whole process (e.g. 300 namespace streams starting together). */
  readonly #listGate = new ListGate(4);

  constructor(client: KubeClient, opts: SharedInformersOptions) {
    this.#client = client;
    this.#opts = opts;
    // A config change moves each configured kind to its new namespaces (streams start and stop per namespace).
    this.#unsubscribe = opts.config.onChange(config => {
      for (const [name, informer] of this.#informers) void informer.setNamespaces(watchedNamespaces(INFORMED_KINDS[name], config));
    });
  }

  /** The kind's informer, started. */
  informer(name: InformedKindName): Informer<KubeObject> {
    let informer = this.#informers.get(name);
    if (!informer) {
      const def: InformedKind = INFORMED_KINDS[name];
      informer = new Informer(
        this.#client,
        {
          kind: def.name ? `${def.kind} ${def.namespace}/${def.name}` : def.kind,
          path: namespace => collectionPath(def, namespace),
          fieldSelector: def.name ? `metadata.name=${def.name}` : undefined,
        },
        {
          log: this.#opts.log,
          namespaces: watchedNamespaces(def, this.#opts.config.current()),
          watchTimeoutSeconds: this.#opts.watchTimeoutSeconds,
          backoff: this.#opts.backoff,
          quiet: def.secret,
          listGate: this.#listGate,
          transform: withoutBookkeeping,
        },
      );
      if (name === "DataVolume") informer.addIndexer(DATAVOLUME_BY_VM_INDEX, owningVmKeys);
      this.#informers.set(name, informer);
      informer.start();
    }
    return informer;
  }

  /** The informers created so far, by kind name (for stats). */
  started(): ReadonlyMap<InformedKindName, Informer<KubeObject>> {
    return this.#informers;
  }

  async stop(): Promise<void> {
    this.#unsubscribe();
    await Promise.all([...this.#informers.values()].map(i => i.stop()));
  }
}
