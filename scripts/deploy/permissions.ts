// What each function of capabilities/common/gateway.ts may do to the Kubernetes API. This table is the
// source of the module's write (and rare direct read) permissions in the generated ClusterRole and Role.
//
// It cannot drift silently: test/deploy/rbac.test.ts fails when
//   - a gateway function has no entry here, or an entry names a function that no longer exists;
//   - a function, exercised through a recording API proxy, makes a call its entry does not declare, or its
//     entry declares a verb no exercised call needs;
//   - a grant restricted by name or namespace is used from a file not listed in its `callers` (a new caller
//     might pass another name, which the Role would then deny).
import { AUDIT_CONFIGMAP } from "../../capabilities/datavolume-policy/summary";
import { MODULE_PEPR_STORE } from "../../capabilities/common/pepr-store";
import { INFORMED_KINDS, type InformedKind } from "../../capabilities/common/informers";
import type { Grant } from "./rbac";

export interface GatewayPermission {
  grants: Grant[];
  /** Files (repository-relative) that call the function; required when a grant is restricted by name or namespace. */
  callers?: string[];
}

const vmSubresource = (action: string): Grant => ({
  group: "subresources.kubevirt.io",
  resource: `virtualmachines/${action}`,
  verbs: ["update"],
  scope: "chassis",
  role: "infra",
  why: `Redfish power: KubeVirt VM ${action} (PUT on virt-api's subresource)`,
});

const vmiSubresource = (action: string): Grant => ({
  group: "subresources.kubevirt.io",
  resource: `virtualmachineinstances/${action}`,
  verbs: ["update"],
  scope: "chassis",
  role: "infra",
  why: `Redfish power: KubeVirt VMI ${action}`,
});

export const gatewayPermissions: Record<string, GatewayPermission> = {
  recordEvent: {
    grants: [
      {
        group: "",
        resource: "events",
        verbs: ["create"],
        scope: "cluster",
        role: "any",
        why: "Events on Nodes, DataVolumes, VMs and the module's config (in the involved object's namespace)",
      },
    ],
  },
  applyConfigMap: {
    grants: [
      {
        group: "",
        resource: "configmaps",
        verbs: ["create", "patch"],
        scope: "module",
        resourceNames: [AUDIT_CONFIGMAP.name],
        role: "infra",
        why: "datavolume-policy writes its audit summary (server-side apply)",
      },
    ],
    callers: ["capabilities/datavolume-policy/index.ts"],
  },
  patchNode: {
    grants: [
      { group: "", resource: "nodes", verbs: ["patch"], scope: "cluster", role: "nested", why: "node-identity annotations and providerID" },
    ],
  },
  readSecretKey: {
    grants: [
      {
        group: "",
        resource: "secrets",
        verbs: ["get"],
        scope: "module",
        resourceNamesFrom: [{ path: ["infra", "kubeconfigSecret", "name"] }],
        role: "nested",
        why: "node-identity reads the infra kubeconfig Secret named by infra.kubeconfigSecret",
      },
      {
        group: "",
        resource: "secrets",
        verbs: ["get"],
        scope: "module",
        resourceNamesFrom: [{ path: ["redfish", "tls", "secretName"] }],
        role: "infra",
        why: "the Redfish server reads its certificate from the Secret named by redfish.tls.secretName",
      },
    ],
    // node-identity: readSecretKey(MODULE_NAMESPACE, config.infra.kubeconfigSecret.name, key);
    // redfish: readSecretKey(CONFIG_NAMESPACE, config.redfish.tls.secretName, "tls.crt" | "tls.key").
    callers: ["capabilities/node-identity/index.ts", "capabilities/redfish.ts"],
  },
  setPeprStoreData: {
    grants: [
      {
        group: "pepr.dev",
        resource: "peprstores",
        verbs: ["patch"],
        scope: "module",
        resourceNames: [MODULE_PEPR_STORE.name],
        role: "any",
        why: "the config and node-identity capabilities publish to the admission pods through Pepr's Store",
      },
    ],
    // both write MODULE_PEPR_STORE (capabilities/common/pepr-store.ts)
    callers: ["capabilities/config/index.ts", "capabilities/node-identity/index.ts"],
  },
  startVirtualMachine: { grants: [vmSubresource("start")] },
  stopVirtualMachine: { grants: [vmSubresource("stop")] },
  restartVirtualMachine: { grants: [vmSubresource("restart")] },
  putVirtualMachineInstanceAction: {
    grants: ["pause", "unpause", "softreboot", "reset"].map(vmiSubresource),
  },
  patchVirtualMachine: {
    grants: [
      {
        group: "kubevirt.io",
        resource: "virtualmachines",
        verbs: ["patch"],
        scope: "chassis",
        role: "infra",
        why: "Redfish boot override, power-state bookkeeping and virtual media on the VM",
      },
    ],
  },
  createDataVolume: {
    grants: [
      {
        group: "cdi.kubevirt.io",
        resource: "datavolumes",
        verbs: ["create"],
        scope: "chassis",
        role: "infra",
        why: "Redfish virtual media: CDI imports the ISO into a DataVolume in the VM's namespace",
      },
    ],
  },
  deleteDataVolume: {
    grants: [
      { group: "cdi.kubevirt.io", resource: "datavolumes", verbs: ["delete"], scope: "chassis", role: "infra", why: "Redfish virtual media: eject or replace the ISO" },
    ],
  },
  createSecret: {
    grants: [
      {
        group: "",
        resource: "secrets",
        verbs: ["create"],
        scope: "chassis",
        role: "infra",
        why: "Redfish virtual media: credentials of an image URL for CDI's secretRef, in the VM's namespace (create only, never read)",
      },
    ],
  },
  readEventSubscriptions: {
    grants: [
      {
        group: "",
        resource: "secrets",
        verbs: ["get"],
        scope: "module",
        resourceNames: ["kubevirt-infra-event-subscriptions"],
        role: "infra",
        why: "Redfish EventService: reads the stored event subscriptions back at start (that one Secret only)",
      },
    ],
    callers: ["redfish/events/cluster-store.ts"],
  },
  writeEventSubscriptions: {
    grants: [
      {
        group: "",
        resource: "secrets",
        verbs: ["patch"],
        scope: "module",
        resourceNames: ["kubevirt-infra-event-subscriptions"],
        role: "infra",
        why: "Redfish EventService: keeps the event subscriptions (with their HttpHeaders) across restarts",
      },
      // Server-side apply creates the Secret on first use; RBAC cannot name an object that does not exist yet.
      { group: "", resource: "secrets", verbs: ["create"], scope: "module", role: "infra", why: "Redfish EventService: creates the subscriptions Secret on first use" },
    ],
    callers: ["redfish/events/cluster-store.ts"],
  },
  createTokenReview: {
    grants: [
      {
        group: "authentication.k8s.io",
        resource: "tokenreviews",
        verbs: ["create"],
        scope: "cluster",
        role: "infra",
        enabledBy: { path: ["redfish", "kubernetesIdentities", "enabled"] },
        why: "Redfish Kubernetes identities: who a client's bearer token belongs to (only when enabled)",
      },
    ],
  },
  createSubjectAccessReview: {
    grants: [
      {
        group: "authorization.k8s.io",
        resource: "subjectaccessreviews",
        verbs: ["create"],
        scope: "cluster",
        role: "infra",
        enabledBy: { path: ["redfish", "kubernetesIdentities", "enabled"] },
        why: "Redfish Kubernetes identities: what a client's identity may see and do in a VM's namespace (only when enabled)",
      },
    ],
  },
  readVirtualMachine: {
    grants: [
      { group: "kubevirt.io", resource: "virtualmachines", verbs: ["get"], scope: "chassis", role: "infra", why: "fresh read after a stale-cache conflict" },
    ],
  },
  readVirtualMachineInstance: {
    grants: [
      {
        group: "kubevirt.io",
        resource: "virtualmachineinstances",
        verbs: ["get"],
        scope: "chassis",
        role: "infra",
        why: "fresh read after a stale-cache conflict",
      },
    ],
  },
};

/**
 * The shared informers (capabilities/common/informers.ts): list + watch of each kind the module informs on, where
 * it informs on it: a named one (the config ConfigMap, the users Secret) with a metadata.name field selector,
 * which RBAC authorizes against resourceNames in the module namespace; VMs, VMIs and DataVolumes in the namespaces
 * the configuration names (a Role in each chassis / policed namespace); the rest (Nodes) cluster-wide.
 */
function informerGrants(def: InformedKind): Grant[] {
  const grant = (scope: Grant["scope"]): Grant => ({
    group: def.group,
    resource: def.plural,
    verbs: ["list", "watch"],
    scope,
    ...(def.name ? { resourceNames: [def.name] } : {}),
    role: def.role,
    why: `shared informer: ${def.why}`,
  });
  if (def.namespacesFrom) return def.namespacesFrom.map(grant);
  return [grant(def.namespace ? "module" : "cluster")];
}

export const directCalls: Record<string, GatewayPermission> = Object.fromEntries(
  Object.entries(INFORMED_KINDS).map(([name, def]: [string, InformedKind]) => [`${name} informer`, { grants: informerGrants(def) }]),
);

export function allGatewayGrants(): Grant[] {
  return [...Object.values(gatewayPermissions), ...Object.values(directCalls)].flatMap(p => p.grants);
}
