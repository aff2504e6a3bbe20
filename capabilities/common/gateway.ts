// The one place where the module writes to Kubernetes. Every function here is a verb on a resource the
// generated ClusterRole must allow; keep them small and typed so the RBAC test can enumerate them.
// Reads on request paths come from watch caches, not from here.
import { K8s, kind } from "pepr";

/** Records a Kubernetes Event on an object (best effort: a failed Event never fails the caller). */
export async function recordEvent(
  involved: { apiVersion?: string; kind?: string; metadata?: { name?: string; namespace?: string; uid?: string } },
  type: "Normal" | "Warning",
  reason: string,
  message: string,
): Promise<void> {
  const namespace = involved.metadata?.namespace ?? "default";
  const now = new Date().toISOString();
  try {
    await K8s(kind.CoreEvent).Create({
      metadata: { generateName: `${involved.metadata?.name ?? "object"}.`, namespace },
      involvedObject: {
        apiVersion: involved.apiVersion,
        kind: involved.kind,
        name: involved.metadata?.name,
        namespace: involved.metadata?.namespace,
        uid: involved.metadata?.uid,
      },
      type,
      reason,
      message,
      source: { component: "kubevirt-infra" },
      firstTimestamp: now as unknown as Date,
      lastTimestamp: now as unknown as Date,
      count: 1,
    });
  } catch {
    // Events are diagnostics; the caller's work must not depend on them.
  }
}
