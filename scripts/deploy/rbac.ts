// The module's Kubernetes permissions as data, and their rendering into RBAC rules.
//
// Three sources, each checked by test/deploy/rbac.test.ts so the ClusterRole cannot drift from the code:
//   1. the gateway (capabilities/common/gateway.ts): one entry per exported function in ./permissions.ts,
//      exercised against a recording API proxy;
//   2. the Watch bindings: Pepr list+watches every watched kind (kubernetes-fluent-client lists first);
//   3. Pepr's own runtime: its Store (PeprStore) and the PeprStore CRD it applies at start-up.
// Admission bindings need no RBAC: the API server calls the module.
import { peprStoreRefs } from "../../capabilities/common/pepr-store";

export const MODULE_NAMESPACE = "pepr-system";

export type Verb = "get" | "list" | "watch" | "create" | "update" | "patch" | "delete" | "deletecollection";
export const VERB_ORDER: readonly Verb[] = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];

/** Which deployment role needs a grant: node-identity acts in nested clusters, datavolume-policy and redfish in infra clusters. */
export type GrantRole = "nested" | "infra" | "any";

/** A value path in the chart values / module config whose value is a resource name (e.g. a Secret the config names). */
export interface ValuesRef {
  path: readonly string[];
}

export interface Grant {
  group: string;
  /** Plural resource, with "/subresource" for subresources ("virtualmachines/start"). */
  resource: string;
  verbs: Verb[];
  /**
   * cluster: ClusterRole (cluster-scoped kinds, or any namespace); module: Role in pepr-system; chassis: a Role in
   * each chassis namespace (the only namespaces Redfish acts in; nothing is granted while no chassis is configured);
   * policed: a Role in each namespace the DataVolume policy polices (the audit reads DataVolumes there).
   */
  scope: "cluster" | "module" | "chassis" | "policed";
  /** Which Deployment's ServiceAccount needs it; default the watcher (admission pods only answer webhooks). */
  identity?: GrantIdentity;
  /** Restricts the grant to these names; absent = every object of the resource. */
  resourceNames?: readonly string[];
  /** Names taken from the configuration (rendered from values); the grant is dropped when all are empty. */
  resourceNamesFrom?: readonly ValuesRef[];
  /** An opt-in feature's switch (a boolean in the values): the grant is rendered only when it is true. */
  enabledBy?: ValuesRef;
  role: GrantRole;
  /** Why the module needs it (shown in docs and test failures). */
  why: string;
}

export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: Verb[];
  resourceNames?: string[];
}

/** The module's two ServiceAccounts: admission pods and the watcher (docs/deploy.md). */
export type ServiceAccountRole = "admission" | "watcher";
export type GrantIdentity = ServiceAccountRole | "both";

/** Whether the ServiceAccount of `account` holds the grant. */
export function grantHeldBy(grant: Grant, account: ServiceAccountRole): boolean {
  const identity = grant.identity ?? "watcher";
  return identity === "both" || identity === account;
}

function sortVerbs(verbs: Iterable<Verb>): Verb[] {
  const set = new Set(verbs);
  return VERB_ORDER.filter(v => set.has(v));
}

/**
 * Merges grants that apply together into RBAC rules: one rule per (group, resource, names), verbs in a fixed order,
 * rules sorted, so the output is deterministic. Names and switches from the values are the rules' description's
 * (./rbac-objects.ts), not this function's.
 */
export function renderRules(grants: readonly Grant[]): PolicyRule[] {
  const merged = new Map<string, { group: string; resource: string; names?: string[]; verbs: Set<Verb> }>();
  for (const grant of grants) {
    if (grant.enabledBy || grant.resourceNamesFrom) throw new Error(`renderRules: ${grant.resource} (${grant.why}) depends on the values`);
    const names = grant.resourceNames ? [...new Set(grant.resourceNames)].sort() : undefined;
    const key = JSON.stringify([grant.group, grant.resource, names ?? null]);
    const entry = merged.get(key) ?? { group: grant.group, resource: grant.resource, names, verbs: new Set<Verb>() };
    grant.verbs.forEach(v => entry.verbs.add(v));
    merged.set(key, entry);
  }
  // A rule adds nothing when another rule on the same resource covers all of its names and verbs.
  const entries = [...merged.values()];
  const covers = (big: (typeof entries)[number], small: (typeof entries)[number]) =>
    big !== small &&
    big.group === small.group &&
    big.resource === small.resource &&
    [...small.verbs].every(v => big.verbs.has(v)) &&
    (big.names === undefined || (small.names !== undefined && small.names.every(n => big.names!.includes(n))));
  return entries
    .filter(small => !entries.some(big => covers(big, small) && !(covers(small, big) && entries.indexOf(small) < entries.indexOf(big))))
    .sort((a, b) => cmp(a.group, b.group) || cmp(a.resource, b.resource) || cmp(JSON.stringify(a.names ?? []), JSON.stringify(b.names ?? [])))
    .map(e => ({
      apiGroups: [e.group],
      resources: [e.resource],
      ...(e.names ? { resourceNames: e.names } : {}),
      verbs: sortVerbs(e.verbs),
    }));
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** One permission as the API server checks it: (group, resource[/sub], verb, name or "*"). */
export type Permission = string;

export function permissionKey(group: string, resource: string, verb: string, name = "*"): Permission {
  return `${group === "" ? "core" : group}/${resource}:${verb}@${name}`;
}

/** Expands rules into single permissions, dropping named ones an unnamed rule already covers. */
export function permissionsOf(rules: readonly PolicyRule[]): Set<Permission> {
  const out = new Set<Permission>();
  for (const rule of rules) {
    for (const group of rule.apiGroups) {
      for (const resource of rule.resources) {
        for (const verb of rule.verbs) {
          for (const name of rule.resourceNames ?? ["*"]) out.add(permissionKey(group, resource, verb, name));
        }
      }
    }
  }
  for (const p of [...out]) {
    const unnamed = p.replace(/@.*$/, "@*");
    if (p !== unnamed && out.has(unnamed)) out.delete(p);
  }
  return out;
}

/** True when a rule grants everything of some dimension ("*"), which this module never needs. */
export function hasWildcard(rule: PolicyRule): boolean {
  return [...rule.apiGroups, ...rule.resources, ...rule.verbs, ...(rule.resourceNames ?? [])].some(x => x.includes("*"));
}

// ---------------------------------------------------------------------------------------------------------
// Watch bindings → list + watch
// ---------------------------------------------------------------------------------------------------------

/** A binding as `pepr build` sees it (what PeprModule sends in build mode). */
export interface BuildBinding {
  kind: { group: string; version: string; kind: string; plural?: string };
  isWatch?: boolean;
  isFinalize?: boolean;
  filters?: { name?: string; regexName?: string };
}

export interface BuildCapability {
  name: string;
  bindings: BuildBinding[];
}

/**
 * Pepr 1.1.4 watches each Watch binding cluster-wide (its namespace filters are applied client-side), and
 * kubernetes-fluent-client lists before it watches; a `WithName` filter becomes a `metadata.name` field
 * selector, which RBAC authorizes against resourceNames.
 */
export function watchGrants(capabilities: readonly BuildCapability[]): Grant[] {
  const grants: Grant[] = [];
  for (const capability of capabilities) {
    for (const binding of capability.bindings) {
      if (!binding.isWatch) continue;
      const plural = binding.kind.plural ?? `${binding.kind.kind.toLowerCase()}s`;
      const name = binding.filters?.name && !binding.filters.regexName ? binding.filters.name : undefined;
      grants.push({
        group: binding.kind.group,
        resource: plural,
        verbs: ["list", "watch"],
        scope: "cluster",
        ...(name ? { resourceNames: [name] } : {}),
        role: "any",
        why: `Watch binding of capability ${capability.name} on ${binding.kind.kind}${name ? ` ${name}` : ""}`,
      });
      if (binding.isFinalize) {
        grants.push({ group: binding.kind.group, resource: plural, verbs: ["patch"], scope: "cluster", role: "any", why: "Pepr removes its finalizer" });
      }
    }
  }
  // A named grant is redundant next to an unnamed one for the same resource and verbs.
  return grants.filter(g => !g.resourceNames || !grants.some(o => !o.resourceNames && o.group === g.group && o.resource === g.resource));
}

/** The PeprStore objects Pepr's controller opens for this module, with or without OnSchedule bindings. */
export function peprStoreNames(uuid: string): string[] {
  const { schedule, store } = peprStoreRefs(uuid);
  return [schedule.name, store.name];
}

/**
 * What Pepr's controller itself does (node_modules/pepr/dist/controller.js and lib.js, StoreController):
 * server-side apply of the PeprStore CRD at start-up, and get / list+watch (name field selector) / apply /
 * JSON patch of its PeprStore objects in pepr-system. Server-side apply of a missing object is authorized as
 * create with the object's name, so both can be restricted by name.
 */
export function peprRuntimeGrants(uuid: string): Grant[] {
  return [
    {
      group: "apiextensions.k8s.io",
      resource: "customresourcedefinitions",
      verbs: ["create", "patch"],
      scope: "cluster",
      resourceNames: ["peprstores.pepr.dev"],
      role: "any",
      identity: "both",
      why: "Pepr's controller applies the PeprStore CRD at start-up",
    },
    {
      group: "pepr.dev",
      resource: "peprstores",
      verbs: ["get", "list", "watch", "create", "patch"],
      scope: "module",
      resourceNames: peprStoreNames(uuid),
      role: "any",
      identity: "both",
      why: "Pepr's Store (the only channel between the admission and watcher pods)",
    },
  ];
}
