// A small RBAC authorizer over the Roles, ClusterRoles and bindings in the store (kube's RBAC authorizer for
// the rule shapes charts use: apiGroups, resources incl. "res/sub" and "*", verbs, resourceNames; roleRef to a
// Role or ClusterRole; User, Group and ServiceAccount subjects). system:masters is allowed everything, and
// every authenticated user may read the discovery paths (kube's system:discovery/system:public-info-viewer).
import { z } from "zod";
import { ApiError, type UserInfo } from "./types";
import type { MemoryStore } from "./store";
import type { RequestAttributes } from "../../scripts/deploy/request-attributes";

/** What the authorizer decides on (k8s.io/apiserver authorizer.Attributes for a resource request). */
export type ResourceAttributes = RequestAttributes;

const ruleSchema = z.object({
  apiGroups: z.array(z.string()).default([]),
  resources: z.array(z.string()).default([]),
  verbs: z.array(z.string()).default([]),
  resourceNames: z.array(z.string()).default([]),
});
const roleSchema = z.object({ rules: z.array(ruleSchema).nullish() });
const bindingSchema = z.object({
  metadata: z.object({ namespace: z.string().optional() }).passthrough(),
  roleRef: z.object({ kind: z.enum(["Role", "ClusterRole"]), name: z.string() }),
  subjects: z.array(z.object({ kind: z.string(), name: z.string(), namespace: z.string().optional() })).nullish(),
});
type Rule = z.infer<typeof ruleSchema>;

const DISCOVERY_PATHS = /^\/(api|apis|version|healthz|livez|readyz|openapi)(\/|$)/;

function covers(values: string[], wanted: string): boolean {
  return values.includes("*") || values.includes(wanted);
}

function ruleAllows(rule: Rule, a: ResourceAttributes): boolean {
  if (!covers(rule.verbs, a.verb) || !covers(rule.apiGroups, a.group)) return false;
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const resourceOk = rule.resources.includes("*") || rule.resources.includes(resource) || (a.subresource !== "" && rule.resources.includes(`*/${a.subresource}`));
  if (!resourceOk) return false;
  return rule.resourceNames.length === 0 || rule.resourceNames.includes(a.name);
}

function subjectMatches(subject: { kind: string; name: string; namespace?: string }, user: UserInfo): boolean {
  if (subject.kind === "User") return subject.name === user.username;
  if (subject.kind === "Group") return user.groups.includes(subject.name);
  if (subject.kind === "ServiceAccount") return user.username === `system:serviceaccount:${subject.namespace ?? ""}:${subject.name}`;
  return false;
}

export class RbacAuthorizer {
  constructor(private readonly store: MemoryStore) {}

  #rules(kind: "Role" | "ClusterRole", namespace: string | undefined, name: string): Rule[] {
    const obj = kind === "Role" ? this.store.getRaw("roles.rbac.authorization.k8s.io", namespace, name) : this.store.getRaw("clusterroles.rbac.authorization.k8s.io", undefined, name);
    const parsed = roleSchema.safeParse(obj ?? {});
    return parsed.success ? (parsed.data.rules ?? []) : [];
  }

  /** The rules bound to the user that apply in `namespace` (cluster-wide bindings everywhere). */
  #rulesFor(user: UserInfo, namespace: string): Rule[] {
    const rules: Rule[] = [];
    const bindings = [
      ...this.store.listRaw("clusterrolebindings.rbac.authorization.k8s.io"),
      ...(namespace ? this.store.listRaw("rolebindings.rbac.authorization.k8s.io", namespace) : []),
    ];
    for (const raw of bindings) {
      const parsed = bindingSchema.safeParse(raw);
      if (!parsed.success || !(parsed.data.subjects ?? []).some(s => subjectMatches(s, user))) continue;
      const { roleRef, metadata } = parsed.data;
      // A RoleBinding may reference a ClusterRole: its rules then apply in the binding's namespace only.
      rules.push(...this.#rules(roleRef.kind, metadata.namespace, roleRef.name));
    }
    return rules;
  }

  allows(user: UserInfo, a: ResourceAttributes): boolean {
    if (user.groups.includes("system:masters")) return true;
    return this.#rulesFor(user, a.namespace).some(rule => ruleAllows(rule, a));
  }

  allowsPath(user: UserInfo, path: string): boolean {
    return user.groups.includes("system:masters") || (user.groups.includes("system:authenticated") && DISCOVERY_PATHS.test(path));
  }
}

/** kube's 403 for an RBAC denial: `configmaps "x" is forbidden: User "u" cannot get resource "configmaps" in API group "" in the namespace "ns"`. */
export function rbacForbidden(user: UserInfo, a: ResourceAttributes): ApiError {
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const scope = a.namespace ? `in the namespace ${JSON.stringify(a.namespace)}` : "at the cluster scope";
  const why = `User ${JSON.stringify(user.username)} cannot ${a.verb} resource ${JSON.stringify(resource)} in API group ${JSON.stringify(a.group)} ${scope}`;
  const qualified = a.group ? `${a.resource}.${a.group}` : a.resource;
  const subject = a.name ? `${qualified} ${JSON.stringify(a.name)}` : qualified;
  return new ApiError(403, "Forbidden", `${subject} is forbidden: ${why}`, { name: a.name || undefined, group: a.group || undefined, kind: a.resource });
}

/** kube's 403 for a non-resource path: `forbidden: User "u" cannot get path "/metrics"`. */
export function pathForbidden(user: UserInfo, verb: string, path: string): ApiError {
  return new ApiError(403, "Forbidden", `forbidden: User ${JSON.stringify(user.username)} cannot ${verb} path ${JSON.stringify(path)}`, {});
}
