// Redfish Tasks of virtual-media imports, derived from the DataVolume of each insert: nothing is kept in
// memory, so a restarted watcher shows the same tasks. Task id = `<namespace>.<DataVolume name>`.
import type { KubeObject } from "../cache/types";
import { baseError, errorBody, type RedfishMessage } from "../errors";
import { imageUrlOf, importPhase, vmNameOfMediaDataVolume } from "../media/model";
import { SERVICE_ROOT } from "../odata";
import { conditionOf, statusOf } from "../kubevirt/objects";

export type TaskState = "New" | "Pending" | "Running" | "Completed" | "Exception" | "Cancelled";
export type TaskStatus = "OK" | "Warning" | "Critical";

export const TASKS_URI = `${SERVICE_ROOT}/TaskService/Tasks`;
export const TASK_MONITORS_URI = `${SERVICE_ROOT}/TaskService/TaskMonitors`;

export const taskUri = (id: string) => `${TASKS_URI}/${encodeURIComponent(id)}`;
export const taskMonitorUri = (id: string) => `${TASK_MONITORS_URI}/${encodeURIComponent(id)}`;

export function taskIdOf(namespace: string, dataVolumeName: string): string {
  return `${namespace}.${dataVolumeName}`;
}

/** The DataVolume (and its VM) a task id names; undefined for ids that cannot be ours. */
export function parseTaskId(id: string): { namespace: string; dataVolumeName: string; vmName: string } | undefined {
  const dot = id.indexOf(".");
  if (dot <= 0) return undefined;
  const dataVolumeName = id.slice(dot + 1);
  const vmName = vmNameOfMediaDataVolume(dataVolumeName);
  return vmName ? { namespace: id.slice(0, dot), dataVolumeName, vmName } : undefined;
}

/** CDI's `status.progress` ("42.10%") as whole percent; undefined for "N/A" or garbage. */
export function percentOf(progress: unknown): number | undefined {
  if (typeof progress !== "string") return undefined;
  const match = /^(\d+(?:\.\d+)?)%$/.exec(progress.trim());
  if (!match) return undefined;
  return Math.min(100, Math.max(0, Math.floor(Number(match[1]))));
}

export interface ImportProgress {
  state: TaskState;
  status: TaskStatus;
  percent?: number;
  /** Why the import failed or is stuck, as tenants may read it (a failure never says what the target answered). */
  reason?: string;
  /** A failure in CDI's (or our) words: for the log and a Kubernetes Event, never for Redfish clients. */
  detail?: string;
  endTime?: string;
}

function timeOf(c: Record<string, unknown> | undefined): string | undefined {
  return typeof c?.lastTransitionTime === "string" ? c.lastTransitionTime : undefined;
}

/**
 * What a tenant is told about any failed import. CDI's words (404, connection refused, a timeout) would tell
 * whether an address answers: with InsertMedia that is a port scanner.
 */
export const IMPORT_FAILED_REASON = "The image could not be downloaded.";

/**
 * Where an import stands. Completed only when CDI reports Succeeded; Exception when CDI failed (phase Failed, or
 * the importer exited with an error: KubeVirt will not start the VM from it) or the import outlived
 * `importTimeoutSeconds`. A DataVolume being deleted (replaced or ejected) is Cancelled.
 */
export function importProgress(dv: Readonly<KubeObject>, now: number, importTimeoutSeconds?: number): ImportProgress {
  const status = statusOf(dv);
  const percent = percentOf(status.progress);
  const running = conditionOf(dv, "Running");
  if (dv.metadata.deletionTimestamp) {
    return { state: "Cancelled", status: "Warning", reason: "The media was ejected or replaced before the import completed.", endTime: dv.metadata.deletionTimestamp };
  }
  switch (importPhase(dv)) {
    case "ready":
      return { state: "Completed", status: "OK", percent: 100, endTime: timeOf(conditionOf(dv, "Ready")) ?? timeOf(running) };
    case "failed": {
      const detail = typeof running?.message === "string" && running.message !== "" ? running.message : `DataVolume phase ${String(status.phase ?? "")}`;
      return { state: "Exception", status: "Critical", ...(percent !== undefined ? { percent } : {}), reason: IMPORT_FAILED_REASON, detail, endTime: timeOf(running) };
    }
    case "importing":
      break;
  }
  const created = Date.parse(dv.metadata.creationTimestamp ?? "");
  if (importTimeoutSeconds !== undefined && Number.isFinite(created) && now - created > importTimeoutSeconds * 1000) {
    return {
      state: "Exception",
      status: "Critical",
      ...(percent !== undefined ? { percent } : {}),
      reason: IMPORT_FAILED_REASON,
      detail: `The import did not complete within ${importTimeoutSeconds} seconds (datavolume.importTimeoutSeconds); DataVolume phase ${String(status.phase ?? "none")}.`,
    };
  }
  // The importer cannot start (missing Secret or CA ConfigMap): still pending, but say why.
  const blocked = running?.status === "False" && running.reason === "CreateContainerConfigError" && typeof running.message === "string" ? running.message : undefined;
  const phase = typeof status.phase === "string" ? status.phase : "";
  const state: TaskState = phase === "" ? "New" : phase === "ImportInProgress" ? "Running" : "Pending";
  return {
    state,
    status: blocked ? "Warning" : "OK",
    ...(percent !== undefined ? { percent } : state === "Pending" || state === "New" ? { percent: 0 } : {}),
    ...(blocked ? { reason: `The importer cannot start: ${blocked}` } : {}),
  };
}

export function isFinished(state: TaskState): boolean {
  return state === "Completed" || state === "Exception" || state === "Cancelled";
}

function message(progress: ImportProgress): RedfishMessage | undefined {
  switch (progress.state) {
    case "Completed":
      return errorBody(baseError(200, "Success")).error["@Message.ExtendedInfo"][0];
    case "Exception":
    case "Cancelled":
      return errorBody(
        baseError(400, "GeneralError", [], {
          resolution: `${progress.reason ?? "The import failed."} Check that the image URL is reachable from the cluster, then insert the media again.`,
        }),
      ).error["@Message.ExtendedInfo"][0];
    default:
      if (!progress.reason) return undefined;
      return errorBody(baseError(400, "GeneralError", [], { resolution: progress.reason })).error["@Message.ExtendedInfo"][0];
  }
}

export interface MediaTaskContext {
  /** The InsertMedia action URI the task came from (Payload.TargetUri). */
  insertTarget: string;
  now: number;
  importTimeoutSeconds?: number;
}

/** The Task resource of an import, without @odata.id/@odata.type/@odata.context. */
export function mediaTaskBody(dv: Readonly<KubeObject>, ctx: MediaTaskContext): Record<string, unknown> {
  const id = taskIdOf(dv.metadata.namespace!, dv.metadata.name!);
  const progress = importProgress(dv, ctx.now, ctx.importTimeoutSeconds);
  const msg = message(progress);
  const image = imageUrlOf(dv) ?? "";
  return {
    Id: id,
    Name: "Virtual media import",
    Description: `Import of the InsertMedia image into DataVolume ${dv.metadata.namespace}/${dv.metadata.name}`,
    TaskState: progress.state,
    TaskStatus: progress.status,
    StartTime: dv.metadata.creationTimestamp ?? new Date(ctx.now).toISOString(),
    ...(isFinished(progress.state) && progress.endTime ? { EndTime: progress.endTime } : {}),
    ...(progress.percent !== undefined ? { PercentComplete: progress.percent } : {}),
    TaskMonitor: taskMonitorUri(id),
    Messages: msg ? [msg] : [],
    // What was asked for; credentials are never part of it.
    Payload: { TargetUri: ctx.insertTarget, HttpOperation: "POST", HttpHeaders: [], JsonBody: JSON.stringify({ Image: image }) },
  };
}
