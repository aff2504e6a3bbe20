// The TaskService's tasks: one per virtual-media DataVolume in the watch cache (see derive.ts).
import type { ClusterCache, KubeObject, VmRecord } from "../cache/types";
import { isMediaDataVolumeOf } from "../media/model";
import type { TaskSource, TaskView } from "../resources/context";
import { mediaTaskBody, parseTaskId, taskIdOf } from "./derive";

export interface MediaTaskSourceOptions {
  cache: ClusterCache;
  /** Namespaces whose VMs can have tasks (the configured chassis'); the TaskService filters by user after. */
  namespaces: () => Iterable<string>;
  importTimeoutSeconds: () => number | undefined;
  /** The InsertMedia action URI of a system (Payload.TargetUri). */
  insertTarget: (namespace: string, vmName: string) => string;
  now: () => number;
}

export function mediaTaskView(opts: MediaTaskSourceOptions, rec: VmRecord, dv: Readonly<KubeObject>): TaskView {
  const namespace = rec.vm.metadata.namespace!;
  const vmName = rec.vm.metadata.name!;
  const timeout = opts.importTimeoutSeconds();
  return {
    id: taskIdOf(namespace, dv.metadata.name!),
    namespace,
    vmName,
    body: mediaTaskBody(dv, {
      insertTarget: opts.insertTarget(namespace, vmName),
      now: opts.now(),
      ...(timeout !== undefined ? { importTimeoutSeconds: timeout } : {}),
    }),
  };
}

export function mediaTaskSource(opts: MediaTaskSourceOptions): TaskSource {
  return {
    ofSystem(rec: VmRecord): readonly TaskView[] {
      return rec.dataVolumes.filter(dv => isMediaDataVolumeOf(dv, rec.vm)).map(dv => mediaTaskView(opts, rec, dv));
    },
    list(): readonly TaskView[] {
      const views: TaskView[] = [];
      for (const namespace of new Set(opts.namespaces())) {
        for (const rec of opts.cache.listVms(namespace)) {
          for (const dv of rec.dataVolumes) if (isMediaDataVolumeOf(dv, rec.vm)) views.push(mediaTaskView(opts, rec, dv));
        }
      }
      return views.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    },
    get(id: string): TaskView | undefined {
      const parsed = parseTaskId(id);
      if (!parsed) return undefined;
      const rec = opts.cache.getVm(parsed.namespace, parsed.vmName);
      const dv = rec?.dataVolumes.find(d => d.metadata.name === parsed.dataVolumeName && isMediaDataVolumeOf(d, rec.vm));
      return rec && dv ? mediaTaskView(opts, rec, dv) : undefined;
    },
  };
}
