// The seam between Redfish semantics and the cluster, like sushy-tools' AbstractSystemsDriver: power/, boot/ and
// media/ decide WHAT to do from cached records and call a KubeVirtDriver to do it. `clusterDriver` writes through
// the gateway (capabilities/common/gateway.ts); tests use an in-memory model of KubeVirt and CDI instead.
//
// Drivers throw KubeApiError as the API server answered (./failures.ts turns it into a Redfish error), except
// for an API group the server does not serve, which is a KubeVirtApiUnavailable naming the group.
import {
  KubeApiError,
  createDataVolume,
  createSecret,
  deleteDataVolume,
  patchVirtualMachine,
  putVirtualMachineInstanceAction,
  recordEvent,
  readVirtualMachine,
  readVirtualMachineInstance,
  restartVirtualMachine,
  startVirtualMachine,
  stopVirtualMachine,
  createSubjectAccessReview,
  createTokenReview,
  type AccessAttributes,
  type CreatedObject,
  type JsonPatchOp,
  type ReviewedUser,
  type TokenReviewStatus,
} from "../../capabilities/common/gateway";
import type { KubeObject } from "../cache/types";
import { attachOps, detachOps } from "../media/plan";
import { KUBEVIRT_API, KUBEVIRT_SUBRESOURCE_API, CDI_API, whenServed } from "./failures";

// The rest of redfish/ reaches the gateway only through this file and ./failures.ts.
export { KubeApiError };
export type { AccessAttributes, CreatedObject, JsonPatchOp, ReviewedUser, TokenReviewStatus };

/** Who a token is and what it may do, as the API server answers (redfish/auth/kubernetes.ts); tests answer themselves. */
export interface IdentityReviews {
  reviewToken(token: string, audiences: readonly string[]): Promise<TokenReviewStatus>;
  reviewAccess(user: ReviewedUser, attributes: AccessAttributes): Promise<boolean>;
}

export const clusterReviews: IdentityReviews = { reviewToken: createTokenReview, reviewAccess: createSubjectAccessReview };

/** VMI subresources that act on the running guest. */
export type GuestAction = "pause" | "unpause" | "softreboot" | "reset";

/** A new object to create: name and namespace are required (the driver never generates names). */
export type NewObject = KubeObject & { metadata: { name: string; namespace: string } };

export interface KubeVirtDriver {
  /** The VM as stored now (not from the cache): for re-planning after a conflict. Undefined when it is gone. */
  readVm(namespace: string, name: string): Promise<KubeObject | undefined>;
  readVmi(namespace: string, name: string): Promise<KubeObject | undefined>;
  // The watch cache shows a write when its event arrives, usually after the answer: a handler whose client reads
  // the change next waits for it (../cache/wait.ts), by the resourceVersion a patch answers with.
  /** JSON patch of the VM (run strategy, annotations, boot order, firmware, CD-ROM drive and volume); the VM's new resourceVersion. */
  patchVm(namespace: string, name: string, ops: JsonPatchOp[]): Promise<string | undefined>;
  /** virt-api `start`. */
  startVm(namespace: string, name: string): Promise<void>;
  /** virt-api `stop`; `gracePeriod: 0` cuts the guest's grace period (force off). */
  stopVm(namespace: string, name: string, opts?: { gracePeriod?: number }): Promise<void>;
  /** virt-api `restart` (a new VMI from the current template); `gracePeriodSeconds: 0` = force restart. */
  restartVm(namespace: string, name: string, opts?: { gracePeriodSeconds?: number }): Promise<void>;
  /** virt-api VMI `pause`, `unpause`, `softreboot` or `reset`. */
  guestAction(namespace: string, name: string, action: GuestAction): Promise<void>;
  /**
   * Puts the virtual CD drive (CD-ROM disk + volume) on `dataVolumeName`, planned from `vm` as read and refused
   * (409/422) when the VM changed since. A template change: KubeVirt applies it at the next start.
   */
  attachCdrom(vm: Readonly<KubeObject>, dataVolumeName: string): Promise<void>;
  /** Removes the virtual CD drive (as `attachCdrom`, guarded by the VM as read). */
  detachCdrom(vm: Readonly<KubeObject>): Promise<void>;
  /** Creates a DataVolume (virtual media import); 409 when the name is taken. */
  createDataVolume(dataVolume: NewObject): Promise<CreatedObject>;
  /** Deletes a DataVolume; its PVC and the Secrets it owns follow by garbage collection. */
  deleteDataVolume(namespace: string, name: string): Promise<void>;
  /** Creates a Secret (image credentials, owned by their DataVolume). */
  createSecret(secret: NewObject): Promise<CreatedObject>;
  /**
   * A Warning Event on an object (best effort, never throws). `eventName` makes it idempotent: a report repeated
   * (e.g. after a restart) does not duplicate it.
   */
  warningEvent(involved: Readonly<KubeObject>, reason: string, message: string, eventName: string): Promise<void>;
}

/** The driver of the real cluster: every call is one gateway request. */
export const clusterDriver: KubeVirtDriver = {
  readVm: (namespace, name) => whenServed(KUBEVIRT_API, async () => (await readVirtualMachine(namespace, name)) as KubeObject | undefined),
  readVmi: (namespace, name) =>
    whenServed(KUBEVIRT_API, async () => (await readVirtualMachineInstance(namespace, name)) as KubeObject | undefined),
  patchVm: (namespace, name, ops) => whenServed(KUBEVIRT_API, () => patchVirtualMachine(namespace, name, ops)),
  startVm: (namespace, name) => whenServed(KUBEVIRT_SUBRESOURCE_API, () => startVirtualMachine(namespace, name)),
  stopVm: (namespace, name, opts = {}) => whenServed(KUBEVIRT_SUBRESOURCE_API, () => stopVirtualMachine(namespace, name, opts)),
  restartVm: (namespace, name, opts = {}) => whenServed(KUBEVIRT_SUBRESOURCE_API, () => restartVirtualMachine(namespace, name, opts)),
  guestAction: (namespace, name, action) => whenServed(KUBEVIRT_SUBRESOURCE_API, () => putVirtualMachineInstanceAction(namespace, name, action)),
  attachCdrom: async (vm, dataVolumeName) => {
    await whenServed(KUBEVIRT_API, () => patchVirtualMachine(vm.metadata.namespace!, vm.metadata.name!, attachOps(vm, dataVolumeName)));
  },
  detachCdrom: async vm => {
    await whenServed(KUBEVIRT_API, () => patchVirtualMachine(vm.metadata.namespace!, vm.metadata.name!, detachOps(vm)));
  },
  createDataVolume: dataVolume => whenServed(CDI_API, () => createDataVolume(dataVolume)),
  deleteDataVolume: (namespace, name) => whenServed(CDI_API, () => deleteDataVolume(namespace, name)),
  createSecret: secret => createSecret(secret),
  warningEvent: (involved, reason, message, eventName) => recordEvent(involved, "Warning", reason, message, { name: eventName }),
};
