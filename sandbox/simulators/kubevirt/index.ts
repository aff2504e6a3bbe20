// The KubeVirt simulator: virt-controller (VM controller), virt-handler/VMI lifecycle and virt-api's
// subresources, running in-process against the sandbox API server's ObjectStore.
import { Log } from "pepr";
import { ApiError, type KubeObject, type ObjectStore, type SubresourceHandler, type SubresourceRequest } from "../../apiserver/types";
import { DV, type HandlerResult, ReconcileQueue, VM, VMI, guarded, httpErrors, isRecord, objectKey, serves } from "../common";
import { rawClaimNames } from "./model";
import { KubeVirtSubresources } from "./subresources";
import { VmController } from "./vm-controller";
import { VmiHandler } from "./vmi-handler";

export interface KubeVirtSimulatorOptions {
  /** Delay between VMI lifecycle steps (Pending -> Scheduling -> Scheduled -> Running), and before a soft reboot. Default 150 ms. */
  stepDelayMs?: number;
}

export type RegisterSubresource = (group: string, version: string, resource: string, subresource: string, handler: SubresourceHandler) => void;

export interface KubeVirtSimulator {
  stop(): void;
  /** The guest powers itself off (shutdown -h inside the VM). Throws when the VMI is not running. */
  guestPowerOff(namespace: string, vmiName: string): void;
  /** The guest reboots itself (reboot inside the VM). Throws when the VMI is not running. */
  guestReboot(namespace: string, vmiName: string): void;
}

const SUBRESOURCE_GROUP = "subresources.kubevirt.io";
const SUBRESOURCE_VERSION = "v1";

export function startKubeVirtSimulator(
  server: { store: ObjectStore; registerSubresource: RegisterSubresource },
  opts: KubeVirtSimulatorOptions = {},
): KubeVirtSimulator {
  const { store } = server;
  const stepDelayMs = opts.stepDelayMs ?? 150;
  let stopped = false;

  const vmController = new VmController(store);
  const vmQueue = new ReconcileQueue("kubevirt vm-controller", key => vmController.reconcile(key));
  const vmiQueue = new ReconcileQueue("kubevirt virt-handler", key => vmiHandler.reconcile(key));
  const vmiHandler = new VmiHandler(store, vmiQueue, stepDelayMs);
  const subresources = new KubeVirtSubresources(store, vmiHandler);

  const keyOf = (obj: KubeObject): string => objectKey(obj.metadata.namespace, obj.metadata.name!);
  /** Phase and error state of each DataVolume, so only changes that matter to a start requeue its users. */
  const dataVolumeState = new Map<string, string>();

  const unsubscribe: (() => void)[] = [];
  unsubscribe.push(
    store.watchStored(VM, undefined, ev => guarded("kubevirt vm watch", () => vmQueue.add(keyOf(ev.object)))),
    store.watchStored(VMI, undefined, ev =>
      guarded("kubevirt vmi watch", () => {
        vmiQueue.add(keyOf(ev.object));
        vmQueue.add(keyOf(ev.object)); // the owning VM has the VMI's name
      }),
    ),
  );
  if (serves(store, DV)) {
    unsubscribe.push(
      store.watchStored(DV, undefined, ev =>
        guarded("kubevirt datavolume watch", () => {
          const key = keyOf(ev.object);
          const status = isRecord(ev.object.status) ? ev.object.status : {};
          const state = ev.type === "DELETED" ? "deleted" : JSON.stringify([status.phase, status.conditions]);
          if (dataVolumeState.get(key) === state) return;
          if (ev.type === "DELETED") dataVolumeState.delete(key);
          else dataVolumeState.set(key, state);
          const namespace = ev.object.metadata.namespace;
          const dvName = ev.object.metadata.name!;
          for (const vm of store.list(VM, namespace)) {
            const template = isRecord(vm.spec) && isRecord(vm.spec.template) ? vm.spec.template.spec : undefined;
            if (rawClaimNames(template).includes(dvName)) vmQueue.add(keyOf(vm));
          }
          for (const vmi of store.list(VMI, namespace)) if (rawClaimNames(vmi.spec).includes(dvName)) vmiQueue.add(keyOf(vmi));
        }),
      ),
    );
  }

  // Resilience to restarts: whatever state the store holds is reconciled from scratch.
  for (const vm of store.list(VM)) vmQueue.add(keyOf(vm));
  for (const vmi of store.list(VMI)) vmiQueue.add(keyOf(vmi));

  const serve =
    (action: (req: SubresourceRequest) => Promise<HandlerResult>): SubresourceHandler =>
    async req => {
      if (stopped) return httpErrors.unavailable("the KubeVirt simulator (virt-api) is stopped");
      try {
        return await action(req);
      } catch (err) {
        if (err instanceof ApiError) return httpErrors.fromApiError(err);
        Log.error({ err: String(err instanceof Error ? err.message : err), name: req.name, namespace: req.namespace }, "kubevirt subresource failed");
        return httpErrors.internal(err instanceof Error ? err.message : String(err));
      }
    };
  const register = (resource: string, subresource: string, action: (req: SubresourceRequest) => Promise<HandlerResult>): void =>
    server.registerSubresource(SUBRESOURCE_GROUP, SUBRESOURCE_VERSION, resource, subresource, serve(action));
  register("virtualmachines", "start", req => subresources.start(req));
  register("virtualmachines", "stop", req => subresources.stop(req));
  register("virtualmachines", "restart", req => subresources.restart(req));
  register("virtualmachines", "addvolume", req => subresources.addVolume(req));
  register("virtualmachines", "removevolume", req => subresources.removeVolume(req));
  register("virtualmachineinstances", "pause", req => subresources.pause(req));
  register("virtualmachineinstances", "unpause", req => subresources.unpause(req));
  register("virtualmachineinstances", "softreboot", req => subresources.softReboot(req));
  register("virtualmachineinstances", "reset", req => subresources.reset(req));

  return {
    stop() {
      stopped = true;
      unsubscribe.forEach(fn => fn());
      vmQueue.stop();
      vmiQueue.stop();
      vmiHandler.stop();
    },
    guestPowerOff(namespace, vmiName) {
      vmiHandler.guestPowerOff(namespace, vmiName);
    },
    guestReboot(namespace, vmiName) {
      vmiHandler.guestReboot(namespace, vmiName);
    },
  };
}
