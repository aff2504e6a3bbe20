// Task monitors (DSP0266 "Asynchronous operations") of virtual-media imports: 202 with the Task while the import
// runs, then the operation's own result: 204 when it completed, the Redfish error when it failed.
// The Task resources themselves are served by task-service.ts from the same TaskSource.
import { baseError, notFound } from "../errors";
import { envelope, sendError, sendJson } from "../odata";
import { isFinished, TASK_MONITORS_URI, taskMonitorUri, taskUri, type TaskState } from "../tasks/derive";
import { resource, userChassis, type RedfishContext, type ServiceDeps, type TaskView, type ResourceRoutes } from "./context";

/** Seconds a client should wait between polls of a running import. */
export const RETRY_AFTER_SECONDS = 2;

/** The Task resource as the TaskService serves it. */
export function taskResource(task: TaskView): Record<string, unknown> {
  return { ...envelope("Task", taskUri(task.id)), ...task.body, Id: task.id };
}

/** 202 Accepted with the Task, `Location` of its monitor and when to ask again: the reply to an accepted InsertMedia. */
export function acceptedTaskResponse(c: RedfishContext, task: TaskView): Response {
  return sendJson(c, taskResource(task), {
    status: 202,
    headers: { Location: taskMonitorUri(task.id), "Retry-After": String(RETRY_AFTER_SECONDS) },
  });
}

export function registerTaskMonitors(routes: ResourceRoutes, deps: ServiceDeps): void {
  const visibleTask = (c: RedfishContext): TaskView => {
    const id = c.req.param("id") ?? "";
    const task = deps.tasks?.get(id);
    const mine = userChassis(c);
    if (!task || !deps.cache.chassisOf(task.namespace, task.vmName).some(ch => mine.includes(ch))) throw notFound("TaskMonitor", id);
    return task;
  };

  resource(
    routes,
    `${TASK_MONITORS_URI}/:id`,
    {
      GET: c => {
        const task = visibleTask(c);
        const state = task.body.TaskState as TaskState;
        if (!isFinished(state)) return acceptedTaskResponse(c, task);
        if (state === "Completed") return new Response(null, { status: 204 });
        const messages = Array.isArray(task.body.Messages) ? (task.body.Messages as { Resolution?: string }[]) : [];
        return sendError(
          baseError(400, "GeneralError", [], { resolution: messages[0]?.Resolution ?? `The task ended in state ${state}.` }),
        );
      },
    },
    visibleTask,
  );
}
