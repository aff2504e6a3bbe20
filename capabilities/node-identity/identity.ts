// The identity a nested-cluster Node carries for the KubeVirt CSI driver, and the minimal change that makes
// a Node carry a given identity. Plain module: no Pepr, no I/O.
import { z } from "zod";

/** Documented by the CSI driver chart for troubleshooting; users look for it. */
export const VM_NAME_LEGACY_ANNOTATION = "csi.kubevirt.io/infraClusterVMName";
/** Read by newer CSI node plugins when the providerID is not a kubevirt:// one. */
export const VM_NAME_ANNOTATION = "csi.kubevirt.io/infra-vm-name";
export const VM_NAMESPACE_ANNOTATION = "csi.kubevirt.io/infra-vm-namespace";
/** The namespace half of a kubevirt:// providerID (Cluster API convention, read by the CSI driver). */
export const CLUSTER_NAMESPACE_ANNOTATION = "cluster.x-k8s.io/cluster-namespace";
export const PROVIDER_ID_PREFIX = "kubevirt://";

export interface VmRef {
  name: string;
  namespace: string;
}

/** The parts of a Node this capability reads. */
export interface NodeView {
  name: string;
  uid?: string;
  resourceVersion?: string;
  annotations: Readonly<Record<string, string>>;
  providerID?: string;
  systemUUID?: string;
  /** Whether the object has a `spec` at all (a JSON patch can only add a member to an existing object). */
  hasSpec: boolean;
}

// Admission objects and watch events are external input: only the fields used here are parsed (and must be
// well-formed); everything else on the Node is passed through untouched by the callers.
const NodeObjectSchema = z.object({
  metadata: z.object({
    name: z.string().min(1),
    uid: z.string().optional(),
    resourceVersion: z.string().optional(),
    annotations: z.record(z.string(), z.string()).nullish(),
  }),
  spec: z.object({ providerID: z.string().nullish() }).nullish(),
  status: z.object({ nodeInfo: z.object({ systemUUID: z.string().nullish() }).nullish() }).nullish(),
});

/** Parses a Node object (admission request or watch event); throws an Error naming the bad fields. */
export function toNodeView(obj: unknown): NodeView {
  const parsed = NodeObjectSchema.safeParse(obj);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(issue => `${issue.path.join(".") || "object"}: ${issue.message}`);
    throw new Error(`malformed Node object (${problems.slice(0, 3).join("; ")})`);
  }
  const node = parsed.data;
  return {
    name: node.metadata.name,
    uid: node.metadata.uid,
    resourceVersion: node.metadata.resourceVersion,
    annotations: node.metadata.annotations ?? {},
    providerID: node.spec?.providerID || undefined,
    systemUUID: node.status?.nodeInfo?.systemUUID || undefined,
    hasSpec: node.spec != null,
  };
}

/** The VM name of a kubevirt:// providerID, or undefined for any other (or malformed) providerID. */
export function vmNameFromProviderID(providerID: string | undefined): string | undefined {
  if (!providerID?.startsWith(PROVIDER_ID_PREFIX)) return undefined;
  const name = providerID.slice(PROVIDER_ID_PREFIX.length);
  return name && !name.includes("/") ? name : undefined;
}

export function sameUUID(a: string, b: string): boolean {
  return a.trim().toLowerCase() === b.trim().toLowerCase();
}

/** What has to change on a Node; both parts empty means the Node is already correct. */
export interface IdentityChanges {
  annotations: Record<string, string>;
  providerID?: string;
}

export function hasChanges(changes: IdentityChanges): boolean {
  return changes.providerID !== undefined || Object.keys(changes.annotations).length > 0;
}

/**
 * The differences between the Node and the identity `target`. The providerID can only be set once, from
 * empty, so it is proposed only then; the cluster-namespace annotation belongs to a kubevirt:// providerID
 * and is kept in line with it when this module manages providerIDs.
 */
export function identityChanges(node: NodeView, target: VmRef, opts: { setProviderID: boolean }): IdentityChanges {
  const wanted: Record<string, string> = {
    [VM_NAME_LEGACY_ANNOTATION]: target.name,
    [VM_NAME_ANNOTATION]: target.name,
    [VM_NAMESPACE_ANNOTATION]: target.namespace,
  };
  const changes: IdentityChanges = { annotations: {} };
  const providerIDForTarget = `${PROVIDER_ID_PREFIX}${target.name}`;
  if (opts.setProviderID) {
    if (!node.providerID) changes.providerID = providerIDForTarget;
    if ((node.providerID ?? providerIDForTarget) === providerIDForTarget) {
      wanted[CLUSTER_NAMESPACE_ANNOTATION] = target.namespace;
    }
  }
  for (const [key, value] of Object.entries(wanted)) {
    if (node.annotations[key] !== value) changes.annotations[key] = value;
  }
  return changes;
}

export type JsonPatchOp = { op: "add" | "test"; path: string; value: unknown };

function pointerSegment(key: string): string {
  return key.replace(/~/g, "~0").replace(/\//g, "~1");
}

/**
 * An RFC 6902 patch applying `changes` to the Node as it was seen. The resourceVersion test makes the patch
 * fail (422) instead of overwriting a Node that changed in between: whoever changed it produces a new watch
 * event, and the Node is reconciled again from that fresh state.
 */
export function toJsonPatch(node: NodeView, changes: IdentityChanges): JsonPatchOp[] {
  const ops: JsonPatchOp[] = [];
  if (node.resourceVersion) ops.push({ op: "test", path: "/metadata/resourceVersion", value: node.resourceVersion });
  const hasAnnotations = Object.keys(node.annotations).length > 0;
  if (!hasAnnotations && Object.keys(changes.annotations).length > 0) {
    ops.push({ op: "add", path: "/metadata/annotations", value: { ...changes.annotations } });
  } else {
    for (const [key, value] of Object.entries(changes.annotations)) {
      ops.push({ op: "add", path: `/metadata/annotations/${pointerSegment(key)}`, value });
    }
  }
  if (changes.providerID !== undefined) {
    ops.push(
      node.hasSpec
        ? { op: "add", path: "/spec/providerID", value: changes.providerID }
        : { op: "add", path: "/spec", value: { providerID: changes.providerID } },
    );
  }
  return ops;
}
