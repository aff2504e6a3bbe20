// The process's shared informers: at most ONE list+watch per kind, whatever the number of consumers
// (Redfish cache, DataVolume audit, node-identity back-fill, config). What each kind watches, and which
// deployment role needs it, is data here; scripts/deploy/permissions.ts derives the list/watch RBAC from it.
import { CONFIG_MAP_NAME, CONFIG_NAMESPACE, USERS_SECRET_NAME } from "../config/load";
import { Informer, type InformerLog } from "./informer";
import type { KubeClient } from "./kube-client";
import type { KubeObject } from "./kube-types";

export interface InformedKind {
  kind: string;
  group: string;
  version: string;
  plural: string;
  /** Watched in this namespace only (else cluster-wide). */
  namespace?: string;
  /** Only this object (a metadata.name field selector, which RBAC authorizes against resourceNames). */
  name?: string;
  /** Deployment role that needs the watch (see capabilities/config/schema.ts `role`). */
  role: "infra" | "nested" | "any";
  /** Content is secret: never logged, not even object names. */
  secret?: boolean;
  why: string;
}

export const INFORMED_KINDS = {
  VirtualMachine: { kind: "VirtualMachine", group: "kubevirt.io", version: "v1", plural: "virtualmachines", role: "infra", why: "Redfish systems (watch cache)" },
  VirtualMachineInstance: {
    kind: "VirtualMachineInstance",
    group: "kubevirt.io",
    version: "v1",
    plural: "virtualmachineinstances",
    role: "infra",
    why: "Redfish power state (watch cache)",
  },
  DataVolume: {
    kind: "DataVolume",
    group: "cdi.kubevirt.io",
    version: "v1beta1",
    plural: "datavolumes",
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

export function collectionPath(def: InformedKind): string {
  const prefix = def.group === "" ? `/api/${def.version}` : `/apis/${def.group}/${def.version}`;
  return def.namespace ? `${prefix}/namespaces/${encodeURIComponent(def.namespace)}/${def.plural}` : `${prefix}/${def.plural}`;
}

export interface SharedInformersOptions {
  log: InformerLog;
  watchTimeoutSeconds?: number;
  backoff?: { initialMs: number; maxMs: number };
}

/** Creates each kind's informer on first request and hands the same one to every later consumer. */
export class SharedInformers {
  readonly #client: KubeClient;
  readonly #opts: SharedInformersOptions;
  readonly #informers = new Map<InformedKindName, Informer<KubeObject>>();

  constructor(client: KubeClient, opts: SharedInformersOptions) {
    this.#client = client;
    this.#opts = opts;
  }

  /** The kind's informer, started. */
  informer(name: InformedKindName): Informer<KubeObject> {
    let informer = this.#informers.get(name);
    if (!informer) {
      const def: InformedKind = INFORMED_KINDS[name];
      informer = new Informer(
        this.#client,
        { kind: def.name ? `${def.kind} ${def.namespace}/${def.name}` : def.kind, path: collectionPath(def), fieldSelector: def.name ? `metadata.name=${def.name}` : undefined },
        { log: this.#opts.log, watchTimeoutSeconds: this.#opts.watchTimeoutSeconds, backoff: this.#opts.backoff, quiet: def.secret },
      );
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
    await Promise.all([...this.#informers.values()].map(i => i.stop()));
  }
}
