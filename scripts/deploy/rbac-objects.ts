// The module's RBAC objects, described ONCE (./template.ts) from its grants (./rbac.ts, ./permissions.ts):
// ./manifest.ts evaluates these descriptions for the chart's values merged with the user's, ./chart.ts prints them as
// the chart's templates (test/deploy/chart-objects.test.ts renders both). Each rule carries its own condition (the
// role it serves and its feature switch) and takes the names the values give it, so the rules, the objects' names,
// the namespaces a Role is repeated in and the role guards are decided here only.
import { chassisNamespaces, PART_OF, policedNamespaces, uuidSuffixed, watcherServiceAccount } from "./module-objects";
import { grantHeldBy, MODULE_NAMESPACE, renderRules, type Grant, type GrantRole, type PolicyRule, type ServiceAccountRole } from "./rbac";
import { and, dig, flowList, item, itemsOf, literal, or, ne, setValues, sortedUnique, v, whenItems, type Expr, type Fields, type ListItem, type ObjectTemplate } from "./template";

/** Where a grant of a role applies: node-identity's where nested clusters run, Redfish's and the policy's in infra. */
const ROLE_GUARD: Record<Exclude<GrantRole, "any">, Expr> = {
  nested: ne(v("role"), "infra"),
  infra: ne(v("role"), "nested"),
};

/** All of these conditions (the undefined ones always hold); undefined when none is left. */
function allOf(...parts: (Expr | undefined)[]): Expr | undefined {
  const defined = parts.filter((part): part is Expr => part !== undefined);
  return defined.length > 1 ? and(...defined) : defined[0];
}

/** When a grant applies: its role's guard and its feature switch; undefined = always. */
const grantCondition = (grant: Grant): Expr | undefined =>
  allOf(grant.role === "any" ? undefined : ROLE_GUARD[grant.role], grant.enabledBy ? dig(grant.enabledBy.path, false) : undefined);

const conditionKey = (condition: Expr | undefined) => condition?.helm(".Values") ?? "";

interface RuleItem {
  condition?: Expr;
  /** Names taken from the values: the rule is there only when one is set. */
  names?: Expr;
  /** Rules sort by group, resource and names (names from values after the fixed ones), as renderRules sorts them. */
  sortKey: string[];
  rule: Fields;
}

const ruleFields = (rule: PolicyRule, names?: Expr): Fields => ({
  apiGroups: flowList(rule.apiGroups),
  resources: flowList(rule.resources),
  ...(names ? { resourceNames: flowList(names) } : rule.resourceNames ? { resourceNames: flowList(rule.resourceNames) } : {}),
  verbs: flowList(rule.verbs),
});

/**
 * The rules of grants that apply together (same condition) merge as renderRules merges them; a grant whose names
 * come from the values stays a rule of its own, present when a name is set.
 */
function ruleItems(grants: readonly Grant[]): RuleItem[] {
  const byCondition = new Map<string, Grant[]>();
  for (const grant of grants) {
    const key = conditionKey(grantCondition(grant));
    byCondition.set(key, [...(byCondition.get(key) ?? []), grant]);
  }
  const items: RuleItem[] = [];
  for (const together of byCondition.values()) {
    const condition = grantCondition(together[0]);
    const fixed = together.filter(g => !g.resourceNamesFrom).map(g => ({ ...g, enabledBy: undefined }));
    for (const rule of renderRules(fixed)) {
      items.push({ condition, sortKey: [rule.apiGroups[0], rule.resources[0], JSON.stringify(rule.resourceNames ?? [])], rule: ruleFields(rule) });
    }
    for (const grant of together.filter(g => g.resourceNamesFrom)) {
      const given = setValues(...(grant.resourceNames ?? []).map(name => literal(name)), ...grant.resourceNamesFrom!.map(ref => dig(ref.path, "")));
      const names = (grant.resourceNames?.length ?? 0) + grant.resourceNamesFrom!.length > 1 ? sortedUnique(given) : given;
      const [rule] = renderRules([{ ...grant, resourceNames: undefined, resourceNamesFrom: undefined, enabledBy: undefined }]);
      items.push({ condition, names, sortKey: [grant.group, grant.resource, `\uffff${JSON.stringify(grant.resourceNamesFrom)}`], rule: ruleFields(rule, names) });
    }
  }
  const compare = (a: string[], b: string[]) => a.reduce((order, part, i) => order || (part < b[i] ? -1 : part > b[i] ? 1 : 0), 0);
  return items.sort((a, b) => compare(a.sortKey, b.sortKey));
}

interface Rules {
  /** Rendered only when this holds (the condition all rules share, and that at least one is there). */
  condition?: Expr;
  rules: ListItem[];
}

/** The rules of these grants, consecutive rules of one condition behind one `if`. */
function rulesOf(grants: readonly Grant[]): Rules {
  let items = ruleItems(grants);
  const conditions = new Set(items.map(item => conditionKey(item.condition)));
  // A condition every rule shares becomes the object's: a chassis Role exists only where the infra role runs.
  const shared = conditions.size === 1 ? items[0]?.condition : undefined;
  if (shared) items = items.map(item => ({ ...item, condition: undefined }));
  const present = items.map(item => allOf(item.condition, item.names));
  const alternatives = present.includes(undefined) ? [] : [...new Map(present.map(e => [conditionKey(e), e!])).values()];
  const anyPresent = alternatives.length > 1 ? or(...alternatives) : alternatives[0];

  const rules: ListItem[] = [];
  for (let i = 0; i < items.length; ) {
    const key = conditionKey(items[i].condition);
    let end = i;
    while (end < items.length && conditionKey(items[end].condition) === key) end++;
    const run = items.slice(i, end).map(item => (item.names ? whenItems(item.names, [item.rule]) : item.rule));
    rules.push(...(items[i].condition ? [whenItems(items[i].condition!, run)] : run));
    i = end;
  }
  return { condition: allOf(shared, anyPresent), rules };
}

const RBAC_API = "rbac.authorization.k8s.io/v1";
const subject = (name: Expr) => ({ kind: "ServiceAccount", name, namespace: MODULE_NAMESPACE });

/** A Role (or ClusterRole) and its binding to one ServiceAccount, under the same metadata. */
function roleAndBinding(kind: "ClusterRole" | "Role", metadata: Fields & { name: Expr }, rules: ListItem[], account: Expr): [Fields, Fields] {
  return [
    { apiVersion: RBAC_API, kind, metadata, rules },
    {
      apiVersion: RBAC_API,
      kind: kind === "ClusterRole" ? "ClusterRoleBinding" : "RoleBinding",
      metadata,
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind, name: metadata.name },
      subjects: [subject(account)],
    },
  ];
}

export interface RbacTemplate {
  /** The chart's template file (several descriptions may share one). */
  file: string;
  template: ObjectTemplate;
  /** Pepr's object of the same kind and name is rewritten (in its place); else added after Pepr's RBAC. */
  rewritesPepr?: true;
}

/**
 * The module's RBAC for these grants, in manifest order. The admission pods keep Pepr's ServiceAccount, ClusterRole
 * and store Role, with least-privilege rules (Pepr's store RoleBinding names a ServiceAccount that does not exist:
 * it binds theirs); the watcher gets its own ServiceAccount, a ClusterRole, a Role in pepr-system, one in each chassis
 * namespace (what Redfish reads and does to VMs, VMIs, DataVolumes and Secrets there) and one in each policed
 * namespace (the DataVolume audit's reads).
 */
export function rbacTemplates(grants: readonly Grant[]): RbacTemplate[] {
  const of = (account: ServiceAccountRole, scope: Grant["scope"]) => rulesOf(grants.filter(g => g.scope === scope && grantHeldBy(g, account)));
  const admission = v("uuid");
  const watcher = watcherServiceAccount;

  const admissionCluster = of("admission", "cluster");
  const admissionModule = of("admission", "module");
  const [storeRole, storeBinding] = roleAndBinding("Role", { name: uuidSuffixed("-store"), namespace: MODULE_NAMESPACE }, admissionModule.rules, admission);

  const watcherCluster = of("watcher", "cluster");
  const watcherModule = of("watcher", "module");
  const chassis = of("watcher", "chassis");
  const policed = of("watcher", "policed");
  const labelled = (name: Expr, namespace?: Expr | string): Fields & { name: Expr } => ({ name, ...(namespace ? { namespace } : {}), labels: PART_OF });
  const policedOnes = sortedUnique(policedNamespaces);
  return [
    {
      file: "cluster-role.yaml",
      rewritesPepr: true,
      template: { condition: admissionCluster.condition, object: { apiVersion: RBAC_API, kind: "ClusterRole", metadata: { name: admission }, rules: admissionCluster.rules } },
    },
    { file: "store-role.yaml", rewritesPepr: true, template: { condition: admissionModule.condition, object: storeRole } },
    { file: "store-role-binding.yaml", rewritesPepr: true, template: { condition: admissionModule.condition, object: storeBinding } },
    { file: "watcher-rbac.yaml", template: { object: { apiVersion: "v1", kind: "ServiceAccount", metadata: labelled(watcher, MODULE_NAMESPACE) } } },
    {
      file: "watcher-cluster-role.yaml",
      // The chart value `rbac` appends rules to the watcher's ClusterRole.
      template: { condition: watcherCluster.condition, object: roleAndBinding("ClusterRole", labelled(watcher), [...watcherCluster.rules, itemsOf(v("rbac"))], watcher) },
    },
    { file: "watcher-rbac.yaml", template: { condition: watcherModule.condition, object: roleAndBinding("Role", labelled(watcher, MODULE_NAMESPACE), watcherModule.rules, watcher) } },
    {
      file: "chassis-roles.yaml",
      template: {
        condition: chassis.condition,
        variables: [chassisNamespaces],
        forEach: chassisNamespaces,
        object: roleAndBinding("Role", labelled(watcher, item), chassis.rules, watcher),
      },
    },
    {
      file: "datavolume-audit-roles.yaml",
      template: {
        condition: allOf(policed.condition, v("datavolumePolicy.enabled")),
        variables: [policedNamespaces],
        forEach: policedOnes,
        object: roleAndBinding("Role", labelled(uuidSuffixed("-watcher-datavolume-audit"), item), policed.rules, watcher),
      },
    },
  ];
}
