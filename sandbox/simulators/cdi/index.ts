// The CDI simulator: the DataVolume controller and its importer "pods". A DataVolume gets a PVC of its name,
// waits for a consumer on the wait-for-first-consumer storage class, and is populated: http(s) sources are
// really downloaded (progress from Content-Length), other sources succeed after a step. Phases, conditions,
// progress and restartCount follow CDI. Deleting a DataVolume aborts its download; on start, unfinished imports
// are restarted like a new importer pod would.
import { Log } from "pepr";
import { z } from "zod";
import type { KubeObject, ObjectStore } from "../../apiserver/types";
import {
  CONFIGMAP,
  DV,
  PVC,
  ReconcileQueue,
  SECRET,
  VMI,
  type Condition,
  conditionsOf,
  guarded,
  isRecord,
  objectKey,
  serves,
  setCondition,
  splitKey,
  statusOf,
  writeStatus,
} from "../common";
import { isFinal, phaseOf, rawClaimNames } from "../kubevirt/model";
import { ImportError, formatProgress, httpImport } from "./http-import";

export interface CdiSimulatorOptions {
  /** How often a running import writes status.progress. Default 500 ms. */
  progressIntervalMs?: number;
  /** Delay between phases that involve no transfer (binding, scheduling, non-http sources). Default 100 ms. */
  stepDelayMs?: number;
}

export interface CdiSimulator {
  /** Stops the controller and aborts every running import. */
  stop(): Promise<void>;
}

/** The storage class name the sandbox treats as volumeBindingMode: WaitForFirstConsumer. */
export const WFFC_STORAGE_CLASS = "wffc";
export const BIND_IMMEDIATE_ANNOTATION = "cdi.kubevirt.io/storage.bind.immediate.requested";

const claimSpec = z
  .object({
    storageClassName: z.string().nullish(),
    accessModes: z.array(z.string()).nullish(),
    volumeMode: z.string().nullish(),
    resources: z.object({ requests: z.record(z.string(), z.union([z.string(), z.number()])).nullish() }).nullish(),
  })
  .nullish();

const dataVolumeSpec = z.object({
  source: z
    .object({
      http: z
        .object({
          url: z.string().min(1),
          secretRef: z.string().nullish(),
          certConfigMap: z.string().nullish(),
          extraHeaders: z.array(z.string()).nullish(),
        })
        .nullish(),
    })
    .catchall(z.unknown())
    .nullish(),
  sourceRef: z.unknown().optional(),
  pvc: claimSpec,
  storage: claimSpec,
});
type DataVolumeSpec = z.infer<typeof dataVolumeSpec>;
type HttpSource = NonNullable<NonNullable<DataVolumeSpec["source"]>["http"]>;

type SourceKind = "http" | "import" | "clone" | "upload";

/** What a source does in CDI: an import (importer pod), a clone, or an upload (waits for a client). */
function sourceKind(spec: DataVolumeSpec): SourceKind | undefined {
  const source = spec.source ?? {};
  if (source.http) return "http";
  if (["pvc", "snapshot"].some(k => source[k] !== undefined && source[k] !== null) || (spec.sourceRef !== undefined && spec.sourceRef !== null)) return "clone";
  if (source.upload !== undefined && source.upload !== null) return "upload";
  if (Object.values(source).some(v => v !== undefined && v !== null)) return "import"; // blank, registry, s3, gcs, imageio, vddk
  return undefined;
}

const SCHEDULED: Record<SourceKind, string> = { http: "ImportScheduled", import: "ImportScheduled", clone: "CloneScheduled", upload: "UploadScheduled" };
const IN_PROGRESS: Record<SourceKind, string> = { http: "ImportInProgress", import: "ImportInProgress", clone: "CloneInProgress", upload: "UploadReady" };

interface RunningImport {
  key: string;
  abort: AbortController;
  done: Promise<void>;
  progressTimer: NodeJS.Timeout;
}

function secretValue(secret: KubeObject, key: string): string | undefined {
  const stringData = isRecord(secret.stringData) ? secret.stringData[key] : undefined;
  if (typeof stringData === "string") return stringData;
  const data = isRecord(secret.data) ? secret.data[key] : undefined;
  return typeof data === "string" ? Buffer.from(data, "base64").toString("utf8") : undefined;
}

export function startCdiSimulator(server: { store: ObjectStore }, opts: CdiSimulatorOptions = {}): CdiSimulator {
  const { store } = server;
  const progressIntervalMs = opts.progressIntervalMs ?? 500;
  const stepDelayMs = opts.stepDelayMs ?? 100;
  const imports = new Map<string, RunningImport>(); // by DataVolume uid
  const phaseSince = new Map<string, { phase: string; since: number }>();
  const pvcServed = serves(store, PVC);
  const keyOf = (obj: KubeObject): string => objectKey(obj.metadata.namespace, obj.metadata.name!);

  const queue = new ReconcileQueue("cdi datavolume-controller", key => reconcile(key));

  function abortImports(key: string, keepUid?: string): void {
    for (const [uid, running] of imports) {
      if (running.key !== key || uid === keepUid) continue;
      running.abort.abort();
      imports.delete(uid);
    }
  }

  /** Writes the DataVolume status only while it is still the same object (not a re-created namesake). */
  function updateStatus(dv: KubeObject, change: (status: Record<string, unknown>, conditions: Condition[]) => Record<string, unknown>): void {
    writeStatus(store, DV, dv.metadata.namespace!, dv.metadata.name!, current => {
      if (current.metadata.uid !== dv.metadata.uid) return undefined;
      return change({ ...statusOf(current) }, conditionsOf(current));
    });
  }

  function setPhase(dv: KubeObject, phase: string, conditions: (c: Condition[]) => Condition[], extra: Record<string, unknown> = {}): void {
    updateStatus(dv, (status, current) => ({ ...status, phase, conditions: conditions(current), ...extra }));
  }

  const bound = (name: string) => (c: Condition[]) => setCondition(c, { type: "Bound", status: "True", reason: "Bound", message: `PVC ${name} Bound` });
  const pending = (name: string) => (c: Condition[]) => setCondition(c, { type: "Bound", status: "False", reason: "Pending", message: `PVC ${name} Pending` });
  const notRunning = (reason = "", message = "") => (c: Condition[]) => setCondition(c, { type: "Running", status: "False", reason, message });
  const notReady = (reason = "") => (c: Condition[]) => setCondition(c, { type: "Ready", status: "False", reason, message: "" });
  const all =
    (...fns: ((c: Condition[]) => Condition[])[]) =>
    (c: Condition[]) =>
      fns.reduce((acc, fn) => fn(acc), c);

  function succeed(dv: KubeObject): void {
    setPhase(
      dv,
      "Succeeded",
      all(bound(dv.metadata.name!), notRunning("Completed", "Import Complete"), c => setCondition(c, { type: "Ready", status: "True", reason: "", message: "" })),
      { progress: "100.0%" },
    );
    bindClaim(dv);
  }

  function fail(dv: KubeObject, message: string): void {
    setPhase(dv, "Failed", all(notRunning("Error", message), notReady()));
  }

  function claimSpecOf(spec: DataVolumeSpec): NonNullable<z.infer<typeof claimSpec>> {
    return spec.pvc ?? spec.storage ?? {};
  }

  /** The PVC CDI creates for the DataVolume (same name, owned by it), Pending until the volume is bound. */
  function ensureClaim(dv: KubeObject, spec: DataVolumeSpec): void {
    if (!pvcServed || store.get(PVC, dv.metadata.namespace, dv.metadata.name!)) return;
    const claim = claimSpecOf(spec);
    const annotations: Record<string, string> = { "cdi.kubevirt.io/storage.contentType": "kubevirt" };
    if (spec.source?.http) Object.assign(annotations, { "cdi.kubevirt.io/storage.import.endpoint": spec.source.http.url, "cdi.kubevirt.io/storage.import.source": "http" });
    store.create(PVC, {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: {
        name: dv.metadata.name,
        namespace: dv.metadata.namespace,
        labels: { app: "containerized-data-importer", "app.kubernetes.io/component": "storage", "app.kubernetes.io/managed-by": "cdi-controller" },
        annotations,
        ownerReferences: [
          { apiVersion: "cdi.kubevirt.io/v1beta1", kind: "DataVolume", name: dv.metadata.name!, uid: dv.metadata.uid!, controller: true, blockOwnerDeletion: true },
        ],
      },
      spec: {
        accessModes: claim.accessModes ?? ["ReadWriteOnce"],
        resources: { requests: { storage: String(claim.resources?.requests?.storage ?? "1Gi") } },
        storageClassName: claim.storageClassName ?? "standard",
        volumeMode: claim.volumeMode ?? "Filesystem",
      },
    });
    writeStatus(store, PVC, dv.metadata.namespace!, dv.metadata.name!, () => ({ phase: "Pending" }));
  }

  function bindClaim(dv: KubeObject): void {
    if (!pvcServed) return;
    writeStatus(store, PVC, dv.metadata.namespace!, dv.metadata.name!, pvc => {
      const spec = isRecord(pvc.spec) ? pvc.spec : {};
      const requests = isRecord(spec.resources) && isRecord(spec.resources.requests) ? spec.resources.requests : {};
      return { phase: "Bound", accessModes: spec.accessModes, capacity: { storage: requests.storage ?? "1Gi" } };
    });
  }

  /** A VMI that is not finished and uses the DataVolume is the first consumer that binds a WFFC volume. */
  function hasConsumer(dv: KubeObject): boolean {
    return store.list(VMI, dv.metadata.namespace).some(vmi => !isFinal(phaseOf(vmi)) && rawClaimNames(vmi.spec).includes(dv.metadata.name!));
  }

  /** Step timing: how long the DataVolume has been in its phase (restarts count from when they see it). */
  function dueIn(dv: KubeObject, phase: string): number {
    const uid = dv.metadata.uid!;
    const tracked = phaseSince.get(uid);
    if (!tracked || tracked.phase !== phase) phaseSince.set(uid, { phase, since: Date.now() });
    return phaseSince.get(uid)!.since + stepDelayMs - Date.now();
  }

  /** Secret and CA ConfigMap the importer pod mounts; a missing one keeps the pod from starting, like kubelet. */
  function importerInputs(dv: KubeObject, source: HttpSource): { missing: string } | { basicAuth?: { username: string; password: string }; caPems?: string[] } {
    const namespace = dv.metadata.namespace;
    let basicAuth: { username: string; password: string } | undefined;
    if (source.secretRef) {
      const secret = store.get(SECRET, namespace, source.secretRef);
      if (!secret) return { missing: `secret "${source.secretRef}" not found` };
      const username = secretValue(secret, "accessKeyId");
      const password = secretValue(secret, "secretKey");
      if (username && password) basicAuth = { username, password };
    }
    let caPems: string[] | undefined;
    if (source.certConfigMap) {
      const configMap = store.get(CONFIGMAP, namespace, source.certConfigMap);
      if (!configMap) return { missing: `configmap "${source.certConfigMap}" not found` };
      caPems = Object.values(isRecord(configMap.data) ? configMap.data : {}).filter((v): v is string => typeof v === "string");
    }
    return { basicAuth, caPems };
  }

  function startImport(dv: KubeObject, source: HttpSource, inputs: { basicAuth?: { username: string; password: string }; caPems?: string[] }, restart: boolean): void {
    const uid = dv.metadata.uid!;
    const key = keyOf(dv);
    const abort = new AbortController();
    let received = 0;
    let total: number | undefined;
    let reported = "";
    const reportProgress = (): void => {
      const progress = formatProgress(received, total);
      if (progress === reported || abort.signal.aborted) return;
      reported = progress;
      updateStatus(dv, status => ({ ...status, progress }));
    };
    setPhase(dv, "ImportInProgress", all(bound(dv.metadata.name!), c => setCondition(c, { type: "Running", status: "True", reason: "Pod is running", message: "" }), notReady("TransferRunning")), {
      progress: "N/A",
      ...(restart ? { restartCount: Number(statusOf(dv).restartCount ?? 0) + 1 } : {}),
    });
    const progressTimer = setInterval(() => guarded("cdi progress update", reportProgress), progressIntervalMs);
    const done = httpImport({
      url: source.url,
      basicAuth: inputs.basicAuth,
      caPems: inputs.caPems,
      extraHeaders: source.extraHeaders ?? undefined,
      signal: abort.signal,
      onProgress(bytes, size) {
        received = bytes;
        total = size;
      },
    })
      .then(
        () => {
          if (!abort.signal.aborted) guarded("cdi import completion", () => succeed(dv));
        },
        err => {
          if (abort.signal.aborted) return;
          const message = err instanceof ImportError ? err.message : `Unable to process data: ${(err as Error).message}`;
          Log.info({ dataVolume: key, reason: message }, "cdi import failed");
          guarded("cdi import failure", () => fail(dv, message));
        },
      )
      .finally(() => {
        clearInterval(progressTimer);
        if (imports.get(uid)?.abort === abort) imports.delete(uid);
      });
    imports.set(uid, { key, abort, done, progressTimer });
  }

  function reconcile(key: string): void {
    const { namespace, name } = splitKey(key);
    const dv = store.get(DV, namespace, name);
    if (!dv) return abortImports(key);
    const uid = dv.metadata.uid!;
    abortImports(key, uid); // a namesake that was deleted and re-created
    if (dv.metadata.deletionTimestamp) return abortImports(key);

    const phase = String(statusOf(dv).phase ?? "");
    if (phase === "Succeeded" || phase === "Failed") return;
    const parsed = dataVolumeSpec.safeParse(dv.spec);
    if (!parsed.success) return fail(dv, `invalid DataVolume spec: ${parsed.error.issues.map(i => `spec.${i.path.join(".")}: ${i.message}`).join("; ")}`);
    const spec = parsed.data;
    const kind = sourceKind(spec);
    if (!kind) return fail(dv, "Data volume should have either Source or SourceRef");
    ensureClaim(dv, spec);

    const waitsForConsumer =
      claimSpecOf(spec).storageClassName === WFFC_STORAGE_CLASS && dv.metadata.annotations?.[BIND_IMMEDIATE_ANNOTATION] !== "true";
    switch (phase) {
      case "":
        setPhase(dv, "Pending", all(pending(name), notReady(), notRunning()), { progress: "N/A", restartCount: 0, claimName: name });
        return;
      case "Pending":
      case "WaitForFirstConsumer": {
        if (waitsForConsumer && !hasConsumer(dv)) {
          if (phase !== "WaitForFirstConsumer") setPhase(dv, "WaitForFirstConsumer", all(pending(name), notReady(), notRunning()));
          return;
        }
        const wait = dueIn(dv, phase);
        if (wait > 0) return queue.addAfter(key, wait);
        setPhase(dv, SCHEDULED[kind], all(bound(name), notRunning(), notReady()));
        bindClaim(dv);
        return;
      }
      case "ImportScheduled":
      case "ImportInProgress": {
        if (kind !== "http") {
          const wait = dueIn(dv, phase);
          if (wait > 0) return queue.addAfter(key, wait);
          if (phase === "ImportScheduled") setPhase(dv, "ImportInProgress", all(bound(name), c => setCondition(c, { type: "Running", status: "True", reason: "Pod is running", message: "" })));
          else succeed(dv);
          return;
        }
        if (imports.has(uid)) return;
        const inputs = importerInputs(dv, spec.source!.http!);
        if ("missing" in inputs) {
          // Secret/ConfigMap events requeue the DataVolume once the missing object appears.
          updateStatus(dv, (status, c) => ({ ...status, conditions: notRunning("CreateContainerConfigError", inputs.missing)(c) }));
          return;
        }
        if (phase === "ImportScheduled") {
          const wait = dueIn(dv, phase);
          if (wait > 0) return queue.addAfter(key, wait);
        }
        // An import in progress without a running importer is one a previous simulator left: a new pod restarts it.
        startImport(dv, spec.source!.http!, inputs, phase === "ImportInProgress");
        return;
      }
      case "CloneScheduled":
      case "CloneInProgress":
      case "UploadScheduled": {
        const wait = dueIn(dv, phase);
        if (wait > 0) return queue.addAfter(key, wait);
        if (phase === "CloneInProgress") succeed(dv);
        else setPhase(dv, IN_PROGRESS[kind], all(bound(name), c => setCondition(c, { type: "Running", status: "True", reason: "Pod is running", message: "" })));
        return;
      }
      default:
        return; // UploadReady waits for an upload client, which the sandbox does not have
    }
  }

  const unsubscribe: (() => void)[] = [];
  unsubscribe.push(
    store.watchStored(DV, undefined, ev =>
      guarded("cdi datavolume watch", () => {
        if (ev.type === "DELETED") abortImports(keyOf(ev.object));
        queue.add(keyOf(ev.object));
      }),
    ),
    store.watchStored(VMI, undefined, ev =>
      guarded("cdi vmi watch", () => {
        if (ev.type === "DELETED") return;
        for (const claim of rawClaimNames(ev.object.spec)) queue.add(objectKey(ev.object.metadata.namespace, claim));
      }),
    ),
  );
  for (const kind of [SECRET, CONFIGMAP]) {
    unsubscribe.push(
      store.watchStored(kind, undefined, ev =>
        guarded("cdi importer input watch", () => {
          if (ev.type === "DELETED") return;
          const field = kind === SECRET ? "secretRef" : "certConfigMap";
          for (const dv of store.list(DV, ev.object.metadata.namespace)) {
            const source = isRecord(dv.spec) && isRecord(dv.spec.source) && isRecord(dv.spec.source.http) ? dv.spec.source.http : undefined;
            if (source?.[field] === ev.object.metadata.name) queue.add(keyOf(dv));
          }
        }),
      ),
    );
  }
  for (const dv of store.list(DV)) queue.add(keyOf(dv));

  return {
    async stop() {
      unsubscribe.forEach(fn => fn());
      queue.stop();
      const running = [...imports.values()];
      imports.clear();
      for (const r of running) {
        clearInterval(r.progressTimer);
        r.abort.abort();
      }
      await Promise.allSettled(running.map(r => r.done));
    },
  };
}
