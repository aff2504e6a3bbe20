// A read-only mirror of the infra cluster's VirtualMachines and VirtualMachineInstances (list + watch per
// namespace, re-listed periodically and after any error), reduced to what discovery and verification need.
// Runs in the watcher only; admission pods get the result through the Pepr Store. Uses the infra kubeconfig
// (the CSI driver kind: usually a namespace-scoped service account), never the nested cluster's credentials.
import { CustomObjectsApi, KubeConfig, Watch } from "@kubernetes/client-node";
import { z } from "zod";
import { sameContent, type InfraSnapshot, type InfraVm } from "./infra-index";

const KUBEVIRT_GROUP = "kubevirt.io";
const KUBEVIRT_VERSION = "v1";

const VmSchema = z.object({
  metadata: z.object({ name: z.string().min(1) }),
  spec: z
    .object({
      template: z
        .object({
          spec: z
            .object({
              hostname: z.string().nullish(),
              domain: z.object({ firmware: z.object({ uuid: z.string().nullish() }).nullish() }).nullish(),
            })
            .nullish(),
        })
        .nullish(),
    })
    .nullish(),
});

const VmiSchema = z.object({
  metadata: z.object({ name: z.string().min(1) }),
  spec: z
    .object({
      hostname: z.string().nullish(),
      domain: z.object({ firmware: z.object({ uuid: z.string().nullish() }).nullish() }).nullish(),
    })
    .nullish(),
});

const ListSchema = z.object({
  metadata: z.object({ resourceVersion: z.string().optional() }).optional(),
  items: z.array(z.unknown()).nullish(),
});

interface VmFacts {
  firmwareUUID?: string;
  hostname?: string;
}

function vmFacts(obj: unknown): { name: string; facts: VmFacts } | undefined {
  const parsed = VmSchema.safeParse(obj);
  if (!parsed.success) return undefined;
  const spec = parsed.data.spec?.template?.spec;
  return {
    name: parsed.data.metadata.name,
    facts: { firmwareUUID: spec?.domain?.firmware?.uuid || undefined, hostname: spec?.hostname || undefined },
  };
}

function vmiFacts(obj: unknown): { name: string; facts: VmFacts } | undefined {
  const parsed = VmiSchema.safeParse(obj);
  if (!parsed.success) return undefined;
  const spec = parsed.data.spec;
  return {
    name: parsed.data.metadata.name,
    facts: { firmwareUUID: spec?.domain?.firmware?.uuid || undefined, hostname: spec?.hostname || undefined },
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function statusCode(error: unknown): number | undefined {
  const e = error as { code?: unknown; statusCode?: unknown } | undefined;
  const code = e?.code ?? e?.statusCode;
  return typeof code === "number" ? code : undefined;
}

/** Error text without response bodies or headers (they could carry credentials). */
function describe(error: unknown): string {
  const code = statusCode(error);
  const message = error instanceof Error ? error.message.split("\n")[0].slice(0, 200) : String(error).slice(0, 200);
  return code ? `HTTP ${code}: ${message}` : message;
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms).unref?.());

/** One list+watch loop for one resource in one namespace. */
class ResourceLoop {
  readonly items = new Map<string, VmFacts>();
  synced = false;
  /** Consecutive failed attempts (0 after a successful list). */
  failures = 0;
  #stopped = false;
  #abort?: AbortController;
  #wake?: () => void;

  constructor(
    private readonly kc: KubeConfig,
    private readonly namespace: string,
    private readonly plural: "virtualmachines" | "virtualmachineinstances",
    private readonly parse: (obj: unknown) => { name: string; facts: VmFacts } | undefined,
    private readonly opts: { relistIntervalMs: number; requestTimeoutMs: number },
    private readonly onChange: () => void,
    private readonly onError: (message: string) => void,
  ) {}

  stop(): void {
    this.#stopped = true;
    this.#abort?.abort();
    this.#wake?.();
  }

  async run(): Promise<void> {
    let backoffMs = 500;
    while (!this.#stopped) {
      try {
        const resourceVersion = await this.#list();
        backoffMs = 500;
        this.failures = 0;
        await this.#watchUntilRelist(resourceVersion);
      } catch (error) {
        if (this.#stopped) return;
        this.failures++;
        // A lasting failure (e.g. no RBAC for VMIs) is retried forever: say so now and then, not every time.
        if (this.failures === 1 || this.failures % 10 === 0) {
          this.onError(`infra ${this.plural} in ${this.namespace}: ${describe(error)} (attempt ${this.failures})`);
        }
        this.onChange();
        await Promise.race([sleep(backoffMs), new Promise<void>(resolve => (this.#wake = resolve))]);
        backoffMs = Math.min(backoffMs * 2, 30_000);
      }
    }
  }

  async #list(): Promise<string | undefined> {
    const api = this.kc.makeApiClient(CustomObjectsApi);
    const raw: unknown = await withTimeout(
      api.listNamespacedCustomObject({ group: KUBEVIRT_GROUP, version: KUBEVIRT_VERSION, namespace: this.namespace, plural: this.plural }),
      this.opts.requestTimeoutMs,
      `list ${this.plural}`,
    );
    const list = ListSchema.parse(raw);
    this.items.clear();
    for (const item of list.items ?? []) {
      const parsed = this.parse(item);
      if (parsed) this.items.set(parsed.name, parsed.facts);
    }
    this.synced = true;
    this.onChange();
    return list.metadata?.resourceVersion;
  }

  /** Watches from resourceVersion, reconnecting, until the relist interval is over or the watch expires. */
  async #watchUntilRelist(initialVersion: string | undefined): Promise<void> {
    const relistAt = Date.now() + this.opts.relistIntervalMs;
    let resourceVersion = initialVersion;
    const path = `/apis/${KUBEVIRT_GROUP}/${KUBEVIRT_VERSION}/namespaces/${this.namespace}/${this.plural}`;
    while (!this.#stopped && Date.now() < relistAt) {
      let expired = false;
      const remainingSeconds = Math.max(1, Math.ceil((relistAt - Date.now()) / 1000));
      const ended = new Promise<unknown>(resolve => {
        void new Watch(this.kc)
          .watch(
            path,
            { resourceVersion, allowWatchBookmarks: true, timeoutSeconds: remainingSeconds },
            (type: string, obj: unknown) => {
              const meta = (obj as { metadata?: { resourceVersion?: string } } | undefined)?.metadata;
              if (type === "ERROR") {
                expired = statusCode(obj) === 410;
                return;
              }
              if (meta?.resourceVersion) resourceVersion = meta.resourceVersion;
              if (type === "BOOKMARK") return;
              const parsed = this.parse(obj);
              if (!parsed) return;
              if (type === "DELETED") this.items.delete(parsed.name);
              else this.items.set(parsed.name, parsed.facts);
              this.onChange();
            },
            resolve,
          )
          .then(controller => (this.#abort = controller), resolve);
      });
      // A watch that goes silent (dead connection) is cut at the relist deadline.
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>(resolve => (timer = setTimeout(resolve, relistAt - Date.now() + 1_000)));
      const error = await Promise.race([ended, deadline]);
      clearTimeout(timer);
      this.#abort?.abort();
      if (statusCode(error) === 410) expired = true;
      if (expired) return; // re-list
      if (error) throw error;
    }
  }
}

export interface InfraMirrorOptions {
  /** The infra kubeconfig (YAML text from the Secret). */
  kubeconfig: string;
  namespaces: readonly string[];
  /** Called with the first complete view and after every change of content. */
  onSnapshot(snapshot: InfraSnapshot): void;
  onError?(message: string): void;
  relistIntervalMs?: number;
  requestTimeoutMs?: number;
  /** Coalesces bursts of watch events into one snapshot. */
  debounceMs?: number;
}

export class InfraMirror {
  readonly #loops: { namespace: string; vms: ResourceLoop; vmis: ResourceLoop }[] = [];
  readonly #opts: InfraMirrorOptions;
  #last?: InfraSnapshot;
  #timer?: NodeJS.Timeout;
  #stopped = false;

  constructor(opts: InfraMirrorOptions) {
    this.#opts = opts;
    const kc = new KubeConfig();
    kc.loadFromString(opts.kubeconfig);
    const loopOpts = { relistIntervalMs: opts.relistIntervalMs ?? 300_000, requestTimeoutMs: opts.requestTimeoutMs ?? 10_000 };
    const onChange = (): void => this.#schedule();
    const onError = (message: string): void => opts.onError?.(message);
    for (const namespace of opts.namespaces) {
      this.#loops.push({
        namespace,
        vms: new ResourceLoop(kc, namespace, "virtualmachines", vmFacts, loopOpts, onChange, onError),
        vmis: new ResourceLoop(kc, namespace, "virtualmachineinstances", vmiFacts, loopOpts, onChange, onError),
      });
    }
  }

  start(): void {
    for (const loop of this.#loops) {
      void loop.vms.run();
      void loop.vmis.run();
    }
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    for (const loop of this.#loops) {
      loop.vms.stop();
      loop.vmis.stop();
    }
  }

  /** The last published view, if any namespace has been listed. */
  get snapshot(): InfraSnapshot | undefined {
    return this.#last;
  }

  #schedule(): void {
    if (this.#stopped || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#publish();
    }, this.#opts.debounceMs ?? 50);
  }

  #publish(): void {
    if (this.#stopped) return;
    const snapshot = this.#build();
    if (!snapshot) return;
    if (this.#last && sameContent(this.#last, snapshot)) return;
    this.#last = snapshot;
    this.#opts.onSnapshot(snapshot);
  }

  #build(): InfraSnapshot | undefined {
    // Hostnames come from VMIs: wait for their list too, unless it keeps failing (e.g. no RBAC for VMIs).
    const listed = this.#loops
      .filter(({ vms, vmis }) => vms.synced && (vmis.synced || vmis.failures > 0))
      .map(({ namespace, vms, vmis }) => ({ namespace, vms: vms.items, vmis: vmis.items }));
    return listed.length > 0 ? mergeSnapshot(listed) : undefined;
  }
}

/** One view of the listed namespaces: a VM's UUID from its template, its hostname from its running VMI. */
function mergeSnapshot(listed: { namespace: string; vms: ReadonlyMap<string, VmFacts>; vmis: ReadonlyMap<string, VmFacts> }[]): InfraSnapshot {
  const vms: InfraVm[] = [];
  for (const { namespace, vms: vmFacts, vmis: vmiFacts } of listed) {
    for (const name of new Set([...vmFacts.keys(), ...vmiFacts.keys()])) {
      const vm = vmFacts.get(name);
      const vmi = vmiFacts.get(name);
      const firmwareUUID = vm?.firmwareUUID ?? vmi?.firmwareUUID;
      const hostname = vmi?.hostname ?? vm?.hostname;
      vms.push({ namespace, name, ...(firmwareUUID ? { firmwareUUID } : {}), ...(hostname ? { hostname } : {}) });
    }
  }
  return { namespaces: listed.map(l => l.namespace), vms, syncedAt: new Date().toISOString() };
}

/**
 * A one-shot list of the infra VMs and VMIs (the dry-run CLI). Throws when a namespace's VMs cannot be
 * listed; VMIs are optional (without them there are no hostnames).
 */
export async function listInfraSnapshot(kubeconfig: string, namespaces: readonly string[], requestTimeoutMs = 10_000): Promise<InfraSnapshot> {
  const kc = new KubeConfig();
  kc.loadFromString(kubeconfig);
  const api = kc.makeApiClient(CustomObjectsApi);
  const list = async (namespace: string, plural: "virtualmachines" | "virtualmachineinstances", parse: typeof vmFacts) => {
    const raw: unknown = await withTimeout(
      api.listNamespacedCustomObject({ group: KUBEVIRT_GROUP, version: KUBEVIRT_VERSION, namespace, plural }),
      requestTimeoutMs,
      `list ${plural} in ${namespace}`,
    );
    const items = new Map<string, VmFacts>();
    for (const item of ListSchema.parse(raw).items ?? []) {
      const parsed = parse(item);
      if (parsed) items.set(parsed.name, parsed.facts);
    }
    return items;
  };
  const listed = await Promise.all(
    namespaces.map(async namespace => ({
      namespace,
      vms: await list(namespace, "virtualmachines", vmFacts),
      vmis: await list(namespace, "virtualmachineinstances", vmiFacts).catch(() => new Map<string, VmFacts>()),
    })),
  );
  return mergeSnapshot(listed);
}
