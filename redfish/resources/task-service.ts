// TaskService: tasks of long operations (virtual-media imports). A task is visible with its system.
import { notFound } from "../errors";
import { collection, envelope, link, sendJson, SERVICE_ROOT } from "../odata";
import { resource, userChassis, type RedfishContext, type ServiceDeps, type TaskView, type ResourceRoutes } from "./context";

const TASKS_URI = `${SERVICE_ROOT}/TaskService/Tasks`;
const taskUri = (id: string) => `${TASKS_URI}/${encodeURIComponent(id)}`;

export function registerTaskService(routes: ResourceRoutes, deps: ServiceDeps): void {
  const visibleTo = (c: RedfishContext, task: TaskView) => {
    const mine = userChassis(c);
    return deps.cache.chassisOf(task.namespace, task.vmName).some(ch => mine.includes(ch));
  };

  resource(routes, `${SERVICE_ROOT}/TaskService`, {
    GET: c =>
      sendJson(
        c,
        {
          ...envelope("TaskService", `${SERVICE_ROOT}/TaskService`),
          Id: "TaskService",
          Name: "Task Service",
          Description: "Tasks of long-running operations",
          ServiceEnabled: true,
          CompletedTaskOverWritePolicy: "Oldest",
          LifeCycleEventOnTaskStateChange: false,
          DateTime: new Date(deps.now()).toISOString(),
          Tasks: link(TASKS_URI),
          Status: { State: "Enabled", Health: "OK" },
        },
        { conditional: true },
      ),
  });

  resource(routes, TASKS_URI, {
    GET: c => {
      const ids = (deps.tasks?.list() ?? []).filter(t => visibleTo(c, t)).map(t => taskUri(t.id));
      return sendJson(c, collection("TaskCollection", TASKS_URI, "Task Collection", ids), { conditional: true });
    },
  });

  const visibleTask = (c: RedfishContext) => {
    const id = c.req.param("id") ?? "";
    const task = deps.tasks?.get(id);
    if (!task || !visibleTo(c, task)) throw notFound("Task", id);
    return task;
  };
  resource(routes, `${TASKS_URI}/:id`, {
    GET: c => {
      const task = visibleTask(c);
      return sendJson(c, { ...envelope("Task", taskUri(task.id)), ...task.body, Id: task.id }, { conditional: true });
    },
  }, visibleTask);
}
