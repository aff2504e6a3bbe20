// The one translation of Kubernetes API failures into Redfish errors, for every write Redfish makes. It knows
// what a real kube-apiserver answers, not only the sandbox:
//   - an API group the server does not serve (KubeVirt's aggregated subresources.kubevirt.io without virt-api,
//     CDI not installed): 404 with the plain-text body "404 page not found", not a metav1.Status with reason
//     NotFound. That is "the KubeVirt API is unavailable" (503 naming the group), never "system not found".
//   - a JSON patch that does not apply (a `test` op failed, a path is gone): 422 reason Invalid, message
//     "the server rejected our request due to an error in our request", `details: {}` and no causes
//     (apiserver's NewGenericServerResponse drops the patch library's text). Like a 409, it means the object
//     changed since it was read.
import { Log } from "../platform";
import { KubeApiError } from "../../capabilities/common/gateway";
import { BASE_REGISTRY, MessageId, RedfishError, notFound } from "../errors";

export const KUBEVIRT_API = "the KubeVirt API kubevirt.io/v1";
export const KUBEVIRT_SUBRESOURCE_API = "the KubeVirt subresource API subresources.kubevirt.io/v1";
export const CDI_API = "the CDI API cdi.kubevirt.io/v1beta1";
/** For a 404 page-not-found whose request did not say which API it was for. */
const SOME_KUBEVIRT_API = "a KubeVirt or CDI API this request needs";

/** kube-apiserver's message for a JSON patch that did not apply to the stored object. */
const PATCH_NOT_APPLICABLE = "the server rejected our request due to an error in our request";
/** Seconds a client should wait before retrying when the cluster could not take the request. */
const RETRY_AFTER_SECONDS = "5";
/** An API that is not served is a configuration or installation matter: retrying soon rarely helps. */
const API_RETRY_AFTER_SECONDS = "30";

/** An API group the API server does not serve (404 without a Status body). `api` names it for people. */
export class KubeVirtApiUnavailable extends Error {
  constructor(
    readonly api: string,
    readonly detail: string,
  ) {
    super(`the API server does not serve ${api}: ${detail}`);
    this.name = "KubeVirtApiUnavailable";
  }
}

/** A 404 for the API path itself, not for an object: the body was no metav1.Status with reason NotFound. */
export function isApiNotServed(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 404 && err.reason !== "NotFound";
}

/** Runs one request against `api`, reporting a 404 for the API itself as KubeVirtApiUnavailable. */
export async function whenServed<T>(api: string, request: () => Promise<T>): Promise<T> {
  try {
    return await request();
  } catch (e) {
    if (isApiNotServed(e)) throw new KubeVirtApiUnavailable(api, (e as KubeApiError).message);
    throw e;
  }
}

/** The object changed since the write was planned from it: a 409, or a JSON patch that no longer applies. */
export function isWriteConflict(err: unknown): boolean {
  if (!(err instanceof KubeApiError)) return false;
  return err.status === 409 || (err.status === 422 && err.message.startsWith(PATCH_NOT_APPLICABLE));
}

/** The VM a failed write was about, for the messages. */
export interface WriteTarget {
  namespace: string;
  name: string;
}

/**
 * Any failure of a Redfish write as a RedfishError: a client learns what went wrong and whether retrying helps,
 * and nothing escapes as an unhandled 500. `change` names the request in messages ("ComputerSystem.Reset").
 */
export function redfishFailure(err: unknown, target: WriteTarget, change: string): RedfishError {
  if (err instanceof RedfishError) return err;
  const { namespace, name } = target;
  if (isApiNotServed(err)) err = new KubeVirtApiUnavailable(SOME_KUBEVIRT_API, (err as KubeApiError).message);
  if (err instanceof KubeVirtApiUnavailable) {
    Log.warn({ namespace, name, api: err.api, detail: err.detail }, "Kubernetes API group not served");
    return new RedfishError(
      503,
      MessageId.ServiceTemporarilyUnavailable,
      `${change} cannot be carried out: the Kubernetes API server does not serve ${err.api}.`,
      [API_RETRY_AFTER_SECONDS],
      {
        headers: { "Retry-After": API_RETRY_AFTER_SECONDS },
        resolution: "Check that KubeVirt (virt-api) and CDI are installed and running and that their APIServices are Available, then retry.",
      },
    );
  }
  if (!(err instanceof KubeApiError)) {
    Log.error({ namespace, name, err: err instanceof Error ? err.message : String(err) }, `${change}: unexpected failure`);
    return new RedfishError(500, MessageId.GeneralError, "The request could not be completed because of an internal error.");
  }
  Log.warn({ namespace, name, status: err.status, reason: err.reason, message: err.message }, `${change}: Kubernetes API write failed`);
  if (err.status === 404) return notFound("ComputerSystem", `${namespace}.${name}`);
  if (isWriteConflict(err)) {
    return new RedfishError(
      409,
      `${BASE_REGISTRY}.ResourceInUse`,
      `VirtualMachine ${namespace}/${name} kept changing while ${change} was processed. Retry the request.`,
    );
  }
  if (err.status === 0 || err.status === 429 || err.status >= 500) {
    return new RedfishError(
      503,
      MessageId.ServiceTemporarilyUnavailable,
      "The Kubernetes API server is not reachable right now. Retry the request.",
      [RETRY_AFTER_SECONDS],
      { headers: { "Retry-After": RETRY_AFTER_SECONDS } },
    );
  }
  // 400/403/422 and the like: the cluster refused the write (RBAC, admission): our problem, not the client's.
  return new RedfishError(500, MessageId.GeneralError, `The cluster refused ${change} for VirtualMachine ${namespace}/${name}: ${err.message}`);
}
