// The objects and patches of an insert or eject, computed from plain data (no I/O here).
import type { JsonPatchOp } from "../kubevirt/driver";
import { devicesOf, templateSpecOf } from "../kubevirt/objects";
import type { KubeObject } from "../cache/types";
import { pendingVirtualDriveOrder } from "../boot/override";
import { resourceVersionTest } from "../power/patch-ops";
import {
  BIND_IMMEDIATE_ANNOTATION,
  CD_DRIVE,
  CD_VOLUME,
  DELETE_AFTER_COMPLETION_ANNOTATION,
  MANAGED_BY_LABEL,
  MEDIA_DRIVE_LABEL,
  MEDIA_FOR_LABEL,
  cdDiskOf,
  cdVolumeOf,
} from "./model";
import type { InsertRequest } from "./request";
import type { MediaSettings } from "./settings";

/** The VM as the owner of what an insert creates. */
export interface OwnerVm {
  namespace: string;
  name: string;
  uid: string;
}

export function mediaLabels(vm: OwnerVm): Record<string, string> {
  return { [MANAGED_BY_LABEL.key]: MANAGED_BY_LABEL.value, [MEDIA_FOR_LABEL]: vm.name, [MEDIA_DRIVE_LABEL]: CD_DRIVE };
}

/** Secret name for the image credentials of a DataVolume. */
export function credentialsSecretName(dataVolumeName: string): string {
  return `${dataVolumeName}-auth`;
}

/**
 * The DataVolume of one insert: an http(s) import (the URL as a field, credentials by Secret reference, CAs by
 * ConfigMap reference), owned by the VM so it goes with it, sized and placed from the settings, bound at once.
 */
export function mediaDataVolume(vm: OwnerVm, name: string, request: InsertRequest, settings: MediaSettings): KubeObject {
  const http: Record<string, unknown> = { url: request.image };
  if (request.credentials) http.secretRef = credentialsSecretName(name);
  if (settings.certConfigMap && request.protocol === "HTTPS") http.certConfigMap = settings.certConfigMap;
  return {
    apiVersion: "cdi.kubevirt.io/v1beta1",
    kind: "DataVolume",
    metadata: {
      name,
      namespace: vm.namespace,
      labels: mediaLabels(vm),
      annotations: { [BIND_IMMEDIATE_ANNOTATION]: "true", [DELETE_AFTER_COMPLETION_ANNOTATION]: "false" },
      // Not a controller reference: KubeVirt treats controller-owned DataVolumes as its dataVolumeTemplates'.
      ownerReferences: [{ apiVersion: "kubevirt.io/v1", kind: "VirtualMachine", name: vm.name, uid: vm.uid }],
    },
    spec: {
      source: { http },
      storage: {
        accessModes: [...settings.accessModes],
        resources: { requests: { storage: settings.storageRequest } },
        ...(settings.storageClassName ? { storageClassName: settings.storageClassName } : {}),
      },
    },
  };
}

/** The Secret CDI's importer reads basic-auth credentials from (keys accessKeyId/secretKey), owned by the DataVolume. */
export function credentialsSecret(
  vm: OwnerVm,
  dataVolume: { name: string; uid: string },
  credentials: NonNullable<InsertRequest["credentials"]>,
): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      name: credentialsSecretName(dataVolume.name),
      namespace: vm.namespace,
      labels: mediaLabels(vm),
      ownerReferences: [
        { apiVersion: "cdi.kubevirt.io/v1beta1", kind: "DataVolume", name: dataVolume.name, uid: dataVolume.uid },
      ],
    },
    type: "Opaque",
    data: {
      accessKeyId: Buffer.from(credentials.username, "utf8").toString("base64"),
      secretKey: Buffer.from(credentials.password, "utf8").toString("base64"),
    },
  };
}

const DEVICES_PATH = "/spec/template/spec/domain/devices";
const VOLUMES_PATH = "/spec/template/spec/volumes";

function list(v: unknown): unknown[] | undefined {
  return Array.isArray(v) ? v : undefined;
}

/** Guards every media patch: it applies only to the VM revision it was computed from (409/422 otherwise). */
function setList(ops: JsonPatchOp[], path: string, current: unknown[] | undefined, next: unknown[]): void {
  ops.push(current ? { op: "replace", path, value: next } : { op: "add", path, value: next });
}

/**
 * Patch that makes the virtual CD drive refer to `dataVolumeName`: an existing drive keeps its disk entry (and
 * its bootOrder, which the boot override may have set) and only switches the volume's DataVolume; a new drive
 * gets a SATA CD-ROM disk at the end (first in the boot order when a Cd override waits for it). A template change,
 * applied by KubeVirt at the next start.
 */
export function attachOps(vm: Readonly<KubeObject>, dataVolumeName: string): JsonPatchOp[] {
  const spec = templateSpecOf(vm);
  if (!spec || typeof spec.domain !== "object" || spec.domain === null) throw new Error("the VM has no spec.template.spec.domain");
  const ops: JsonPatchOp[] = [resourceVersionTest(vm)];
  const devices = devicesOf(templateSpecOf(vm));
  const disks = list(devices?.disks);
  if (!cdDiskOf(vm)) {
    // A boot override to Cd set while the drive was empty takes effect now.
    const bootOrder = pendingVirtualDriveOrder(vm);
    const disk = { name: CD_VOLUME, cdrom: { bus: "sata", readonly: true }, ...(bootOrder !== undefined ? { bootOrder } : {}) };
    if (!devices) ops.push({ op: "add", path: DEVICES_PATH, value: { disks: [disk] } });
    else setList(ops, `${DEVICES_PATH}/disks`, disks, [...(disks ?? []), disk]);
  }
  const volumes = list(spec.volumes);
  const volume = { name: CD_VOLUME, dataVolume: { name: dataVolumeName } };
  const next = cdVolumeOf(vm)
    ? (volumes ?? []).map(v => ((v as { name?: unknown } | null)?.name === CD_VOLUME ? volume : v))
    : [...(volumes ?? []), volume];
  setList(ops, VOLUMES_PATH, volumes, next);
  return ops;
}

/** Patch that removes the virtual CD drive (disk and volume); empty when there is none. Other entries are kept as they are. */
export function detachOps(vm: Readonly<KubeObject>): JsonPatchOp[] {
  if (!cdDiskOf(vm) && !cdVolumeOf(vm)) return [];
  const ops: JsonPatchOp[] = [resourceVersionTest(vm)];
  const notCd = (v: unknown) => (v as { name?: unknown } | null)?.name !== CD_VOLUME;
  const disks = list(devicesOf(templateSpecOf(vm))?.disks);
  if (disks && !disks.every(notCd)) ops.push({ op: "replace", path: `${DEVICES_PATH}/disks`, value: disks.filter(notCd) });
  const volumes = list(templateSpecOf(vm)?.volumes);
  if (volumes && !volumes.every(notCd)) ops.push({ op: "replace", path: VOLUMES_PATH, value: volumes.filter(notCd) });
  return ops;
}
