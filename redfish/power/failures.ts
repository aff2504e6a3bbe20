// Cluster failures on the write path, as Redfish errors: the client learns what went wrong and whether to
// retry, and no Kubernetes error ever escapes as an unhandled 500.
import { Log } from "pepr";
import { KubeApiError } from "../../capabilities/common/gateway";
import type { VmRecord } from "../cache/types";
import { BASE_REGISTRY, MessageId, RedfishError, notFound } from "../errors";

export function kubeFailure(err: unknown, rec: VmRecord): RedfishError {
  if (err instanceof RedfishError) return err;
  const { namespace, name } = rec.vm.metadata;
  if (!(err instanceof KubeApiError)) {
    Log.error({ namespace, name, err: err instanceof Error ? err.message : String(err) }, "unexpected failure writing to the VM");
    return new RedfishError(500, MessageId.GeneralError, "The request could not be completed because of an internal error.");
  }
  Log.warn({ namespace, name, status: err.status, reason: err.reason, message: err.message }, "Kubernetes API write failed");
  if (err.status === 404) return notFound("ComputerSystem", `${namespace}.${name}`);
  // 409, or a JSON patch whose `test` failed again after a fresh read: the VM keeps changing under us.
  if (err.status === 409 || (err.status === 422 && /test(ing value .*)? failed/.test(err.message))) {
    return new RedfishError(
      409,
      `${BASE_REGISTRY}.ResourceInUse`,
      `VirtualMachine ${namespace}/${name} changed state while the request was processed (${err.message}). Retry the request.`,
    );
  }
  if (err.status === 0 || err.status === 429 || err.status >= 500) {
    return new RedfishError(
      503,
      MessageId.ServiceTemporarilyUnavailable,
      "The Kubernetes API server is not reachable right now. Retry the request.",
      ["5"],
      { headers: { "Retry-After": "5" } },
    );
  }
  // 400/403/422 and the like: the cluster refused the write (RBAC, admission): our problem, not the client's.
  return new RedfishError(500, MessageId.GeneralError, `The cluster refused the change to VirtualMachine ${namespace}/${name}: ${err.message}`);
}
