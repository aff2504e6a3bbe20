// The objects the module adds to Pepr's, and the parts of Pepr's it rewrites (webhooks, the watcher's pod), each
// described ONCE (./template.ts): ./manifest.ts evaluates these descriptions for the chart's values merged with the
// user's, ./chart.ts prints them as the chart's templates.
import { DEFAULT_DENIED_RANGES } from "../../redfish/url-policy";
import { MODULE_NAMESPACE } from "./rbac";
import { and, block, entriesOf, eq, item, ne, not, or, suffixed, ternary, text, v, variable, when, yamlText, type Expr, type Fields, type Node, type ObjectTemplate, type Values } from "./template";
import { configKeys } from "./values";

export const REDFISH_SERVICE_NAME = "kubevirt-infra-redfish";
export const NONROOT_SCC_CLUSTER_ROLE = "system:openshift:scc:nonroot-v2";
export const CONFIG_MAP_NAME = "kubevirt-infra-config";
export const USERS_SECRET_NAME = "kubevirt-infra-users";
export const IMPORTER_NETWORK_POLICY_NAME = "kubevirt-infra-importer-egress";

export const PART_OF = { "app.kubernetes.io/part-of": "kubevirt-infra" };
const REDFISH_LABELS = { ...PART_OF, "app.kubernetes.io/component": "redfish" };

/** `<uuid><suffix>`: the chart's `uuid` value is Pepr's resource name, `pepr-<module uuid>`. */
export const uuidSuffixed = (suffix: string): Expr => suffixed(v("uuid"), suffix);

const isMap = (value: unknown): value is Values => typeof value === "object" && value !== null && !Array.isArray(value);
const listOf = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
const mapAt = (values: Values, key: string): Values => (isMap(values[key]) ? values[key] : {});

/** Redfish runs in this cluster's watcher: not in a nested-only install, and only when enabled. */
const redfishDeployed: Expr = and(ne(v("role"), "nested"), v("redfish.enabled"));
const portName = ternary("https", "http", v("redfish.tls.enabled"));
const servingCertificate = v("deploy.openshift.servingCertificate");
const serviceAnnotations = v("deploy.redfishService.annotations");

export const redfishService: ObjectTemplate = {
  condition: redfishDeployed,
  object: {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name: REDFISH_SERVICE_NAME,
      namespace: MODULE_NAMESPACE,
      labels: REDFISH_LABELS,
      ...when(or(servingCertificate, serviceAnnotations), {
        annotations: {
          ...when(servingCertificate, { "service.beta.openshift.io/serving-cert-secret-name": text(v("redfish.tls.secretName")) }),
          ...entriesOf(serviceAnnotations),
        },
      }),
    },
    spec: {
      type: v("deploy.redfishService.type"),
      // The watcher pod serves Redfish; a Service may target a port the container does not declare.
      selector: { app: uuidSuffixed("-watcher"), "pepr.dev/controller": "watcher" },
      ports: [
        {
          name: portName,
          port: v("deploy.redfishService.port"),
          targetPort: v("redfish.port"),
          protocol: "TCP",
          ...when(and(v("deploy.redfishService.nodePort"), ne(v("deploy.redfishService.type"), "ClusterIP")), { nodePort: v("deploy.redfishService.nodePort") }),
        },
      ],
    },
  },
};

const routeEnabled = and(v("deploy.route.enabled"), redfishDeployed);
const termination = v("deploy.route.termination");
const reencrypt = eq(termination, "reencrypt");

/** Route settings that cannot work: refused by the values check and by `helm install` alike. */
export const routeRefusals = [
  {
    condition: and(routeEnabled, eq(termination, "edge"), v("redfish.tls.enabled")),
    message: 'deploy.route.termination "edge" sends plain HTTP to the module: set redfish.tls.enabled: false, or use termination "reencrypt"',
  },
  {
    condition: and(routeEnabled, reencrypt, not(v("redfish.tls.enabled"))),
    message: 'deploy.route.termination "reencrypt" needs redfish.tls.enabled: true (or use termination "edge")',
  },
];

export const redfishRoute: ObjectTemplate = {
  condition: routeEnabled,
  refuse: routeRefusals,
  object: {
    apiVersion: "route.openshift.io/v1",
    kind: "Route",
    metadata: {
      name: REDFISH_SERVICE_NAME,
      namespace: MODULE_NAMESPACE,
      labels: REDFISH_LABELS,
      ...when(v("deploy.route.annotations"), { annotations: { ...entriesOf(v("deploy.route.annotations")) } }),
    },
    spec: {
      ...when(v("deploy.route.host"), { host: text(v("deploy.route.host")) }),
      to: { kind: "Service", name: REDFISH_SERVICE_NAME, weight: 100 },
      port: { targetPort: portName },
      tls: {
        termination,
        insecureEdgeTerminationPolicy: v("deploy.route.insecureEdgeTerminationPolicy"),
        ...when(and(reencrypt, v("deploy.route.destinationCACertificate")), { destinationCACertificate: text(v("deploy.route.destinationCACertificate")) }),
      },
    },
  },
};

const moduleServiceAccount = (name: Expr) => ({ kind: "ServiceAccount", name, namespace: MODULE_NAMESPACE });

export const nonrootSccBinding: ObjectTemplate = {
  condition: v("deploy.openshift.nonrootSCC"),
  object: {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: { name: uuidSuffixed("-nonroot-v2"), namespace: MODULE_NAMESPACE, labels: PART_OF },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: NONROOT_SCC_CLUSTER_ROLE },
    subjects: [moduleServiceAccount(v("uuid")), moduleServiceAccount(uuidSuffixed("-watcher"))],
  },
};

// ---- config ConfigMap and users Secret ---------------------------------------------------------------------

/** The module config keys of the values; the users go to the Secret, never to the ConfigMap. */
const moduleConfig = variable(
  "$config",
  root => [
    "{{- /* The module config keys of these values; users go to the Secret, never to the ConfigMap. */}}",
    `{{- $config := pick ${root}.AsMap ${configKeys().map(k => JSON.stringify(k)).join(" ")} }}`,
    `{{- if ${root}.authentication }}{{- $_ := set $config "authentication" (omit ${root}.authentication "users") }}{{- end }}`,
  ],
  values => {
    const config: Values = Object.fromEntries(configKeys().filter(k => Object.hasOwn(values, k)).map(k => [k, structuredClone(values[k])]));
    if (isMap(values.authentication) && Object.keys(values.authentication).length > 0) {
      const { users: _users, ...authentication } = values.authentication;
      config.authentication = authentication;
    }
    return config;
  },
);

export const configMap: ObjectTemplate = {
  condition: v("deploy.createConfig"),
  variables: [moduleConfig],
  object: {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: CONFIG_MAP_NAME, namespace: MODULE_NAMESPACE, labels: PART_OF },
    data: { "config.yaml": yamlText(moduleConfig) },
  },
};

const users: Expr = {
  evaluate: values => listOf(mapAt(values, "authentication").users),
  helm: root => `(${root}.authentication.users | default list)`,
};

export const usersSecret: ObjectTemplate = {
  condition: v("deploy.createUsersSecret"),
  object: {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: USERS_SECRET_NAME, namespace: MODULE_NAMESPACE, labels: PART_OF },
    type: "Opaque",
    stringData: { "users.yaml": yamlText(users) },
  },
};

// ---- importer NetworkPolicy -------------------------------------------------------------------------------

/** The chassis namespaces, each once, sorted (a NetworkPolicy and the watcher's Role in each). */
export const chassisNamespaces = variable(
  "$chassisNamespaces",
  root => [
    "{{- $chassisNamespaces := list }}",
    `{{- range ${root}.chassis }}{{- $chassisNamespaces = append $chassisNamespaces .namespace }}{{- end }}`,
    "{{- $chassisNamespaces = $chassisNamespaces | uniq | sortAlpha }}",
  ],
  values => [...new Set(listOf(values.chassis).map(c => (isMap(c) ? c.namespace : undefined)))].sort(),
);

/** An address or a CIDR as a CIDR (`/32`, `/128`), in Helm: the dot of the enclosing `range`. */
const CIDR_OF_DOT = `(ternary . (printf "%s/%s" . (ternary "128" "32" (contains ":" .))) (contains "/" .))`;
const cidrOf = (range: string) => (range.includes("/") ? range : `${range}/${range.includes(":") ? 128 : 32}`);

/**
 * Egress of CDI's importer pods under the image URL policy: DNS, every address outside the default-denied ranges,
 * the Service CIDRs and denyCidrs, and the allowCidrs (a rule of their own, since NetworkPolicy rules add up).
 * With allowAllDestinations the policy allows all egress.
 */
const importerEgress = variable(
  "$importerEgress",
  root => [
    `{{- $urlPolicy := ${root}.redfish.imageUrlPolicy }}`,
    `{{- $v4 := list ${DEFAULT_DENIED_RANGES.filter(r => !r.includes(":")).map(r => JSON.stringify(r)).join(" ")} }}`,
    `{{- $v6 := list ${DEFAULT_DENIED_RANGES.filter(r => r.includes(":")).map(r => JSON.stringify(r)).join(" ")} }}`,
    "{{- range concat ($urlPolicy.serviceCidrs | default list) ($urlPolicy.denyCidrs | default list) }}",
    `{{- if contains ":" . }}{{- $v6 = append $v6 ${CIDR_OF_DOT} }}{{- else }}{{- $v4 = append $v4 ${CIDR_OF_DOT} }}{{- end }}`,
    "{{- end }}",
    "{{- $importerEgress := list (dict) }}",
    "{{- if not $urlPolicy.allowAllDestinations }}",
    '{{- $dns := dict "ports" (list (dict "protocol" "UDP" "port" 53) (dict "protocol" "TCP" "port" 53)) }}',
    '{{- $public := dict "to" (list (dict "ipBlock" (dict "cidr" "0.0.0.0/0" "except" $v4)) (dict "ipBlock" (dict "cidr" "::/0" "except" $v6))) }}',
    "{{- $importerEgress = list $dns $public }}",
    "{{- $allowed := list }}",
    `{{- range $urlPolicy.allowCidrs }}{{- $allowed = append $allowed (dict "ipBlock" (dict "cidr" ${CIDR_OF_DOT})) }}{{- end }}`,
    '{{- if $allowed }}{{- $importerEgress = append $importerEgress (dict "to" $allowed) }}{{- end }}',
    "{{- end }}",
  ],
  values => {
    const policy = mapAt(mapAt(values, "redfish"), "imageUrlPolicy");
    if (policy.allowAllDestinations) return [{}];
    const denied = [...DEFAULT_DENIED_RANGES, ...listOf(policy.serviceCidrs).map(String).map(cidrOf), ...listOf(policy.denyCidrs).map(String).map(cidrOf)];
    const allowed = listOf(policy.allowCidrs).map(r => ({ ipBlock: { cidr: cidrOf(String(r)) } }));
    return [
      { ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }] },
      {
        to: [
          { ipBlock: { cidr: "0.0.0.0/0", except: denied.filter(r => !r.includes(":")) } },
          { ipBlock: { cidr: "::/0", except: denied.filter(r => r.includes(":")) } },
        ],
      },
      ...(allowed.length > 0 ? [{ to: allowed }] : []),
    ];
  },
);

/** In each chassis namespace: CDI's importer pods reach only what the image URL policy allows (CDI follows redirects). */
export const importerNetworkPolicy: ObjectTemplate = {
  condition: and(v("deploy.importerNetworkPolicy.enabled"), ne(v("role"), "nested")),
  variables: [chassisNamespaces, importerEgress],
  forEach: chassisNamespaces,
  object: {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: IMPORTER_NETWORK_POLICY_NAME, namespace: item, labels: REDFISH_LABELS },
    spec: {
      podSelector: { matchLabels: block(v("deploy.importerNetworkPolicy.podSelector")) },
      policyTypes: ["Egress"],
      egress: block(importerEgress),
    },
  },
};

/** Chart template file → description of the objects the module adds, in the order the manifest lists them. */
export const MODULE_OBJECT_TEMPLATES: Record<string, ObjectTemplate> = {
  "kubevirt-infra-redfish-service.yaml": redfishService,
  "kubevirt-infra-redfish-route.yaml": redfishRoute,
  "kubevirt-infra-config.yaml": configMap,
  "kubevirt-infra-users.yaml": usersSecret,
  "kubevirt-infra-importer-network-policy.yaml": importerNetworkPolicy,
  "kubevirt-infra-nonroot-scc.yaml": nonrootSccBinding,
};

// ---- Pepr's webhooks, rewritten ------------------------------------------------------------------------------

/** A webhook as `pepr build` writes it: its CA, path and rules are the build's, the rest is decided here. */
export interface PeprWebhook {
  admissionReviewVersions?: string[];
  clientConfig: { caBundle: string; service: { path: string } };
  matchPolicy?: string;
  rules: unknown[];
  sideEffects?: string;
}

/** A string printed in double quotes (Pepr's webhook paths read the same way in the chart as in its manifest). */
const quotedLiteral = (value: string): Expr => ({ evaluate: () => value, helm: () => JSON.stringify(value), inline: () => JSON.stringify(value) });

/** Pepr's scope: every namespace but kube-system, pepr-system and the additionalIgnoredNamespaces value. */
const peprScope: Fields = {
  matchExpressions: [
    {
      key: "kubernetes.io/metadata.name",
      operator: "NotIn",
      values: block({
        evaluate: values => ["kube-system", MODULE_NAMESPACE, ...listOf(values.additionalIgnoredNamespaces)],
        helm: root => `(concat (list "kube-system" "${MODULE_NAMESPACE}") (${root}.additionalIgnoredNamespaces | default list))`,
      }),
    },
  ],
};

function webhook(hook: PeprWebhook, policy: Fields): Fields {
  return {
    admissionReviewVersions: hook.admissionReviewVersions ?? ["v1", "v1beta1"],
    clientConfig: { caBundle: hook.clientConfig.caBundle, service: { name: v("uuid"), namespace: MODULE_NAMESPACE, path: quotedLiteral(hook.clientConfig.service.path) } },
    ...policy,
    matchPolicy: hook.matchPolicy ?? "Equivalent",
    name: uuidSuffixed(".pepr.dev"),
    rules: hook.rules as Node[],
    sideEffects: hook.sideEffects ?? "None",
    timeoutSeconds: v("admission.webhookTimeout"),
  };
}

/** node-identity's Node webhook, only where nested clusters run. */
export function mutatingWebhookConfiguration(hook: PeprWebhook): ObjectTemplate {
  return {
    condition: ne(v("role"), "infra"),
    object: {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "MutatingWebhookConfiguration",
      metadata: { name: v("uuid") },
      // A Node webhook that rejects can stop a cluster: node-identity fails open and the watcher back-fills.
      webhooks: [webhook(hook, { failurePolicy: "Ignore", namespaceSelector: peprScope })],
    },
  };
}

/** The namespaces the DataVolume policy polices, computed as the module does (infra.namespace when none are listed). */
export const policedNamespaces = variable(
  "$namespaces",
  root => [
    "{{- /* The namespaces the DataVolume policy polices, computed as the module does. */}}",
    `{{- $policy := ${root}.datavolumePolicy }}`,
    "{{- $namespaces := $policy.namespaces | default list }}",
    `{{- if and (not $namespaces) ${root}.infra.namespace }}{{- $namespaces = list ${root}.infra.namespace }}{{- end }}`,
  ],
  values => {
    const listed = listOf(mapAt(values, "datavolumePolicy").namespaces);
    const infraNamespace = mapAt(values, "infra").namespace;
    return listed.length === 0 && infraNamespace ? [infraNamespace] : listed;
  },
);

/** Whether the policy polices a namespace; only then can the webhook be scoped, and fail closed. */
export const dataVolumesPoliced = variable(
  "$policed",
  () => ["{{- $policed := and $policy.enabled (gt (len $namespaces) 0) }}"],
  values => Boolean(mapAt(values, "datavolumePolicy").enabled) && listOf(policedNamespaces.evaluate(values)).length > 0,
);

/**
 * The DataVolume webhook, where the policy runs. Scoped to the policed namespaces it fails closed (unless
 * deploy.dataVolumeWebhook.failurePolicy is Ignore): the tenant labels are the CSI driver's only isolation between
 * tenants, and a fail-open webhook would let anyone who can make it unavailable (or wait for an upgrade) create
 * unlabelled or mislabelled volumes. Fail also in warn and audit mode: the mode is hot-reloaded from the ConfigMap,
 * the rendering is not. Without policed namespaces in the values the webhook cannot be scoped: it keeps Pepr's
 * scope and fails open, so enabling the policy later in the live ConfigMap works (docs/deploy.md).
 */
export function validatingWebhookConfiguration(hook: PeprWebhook): ObjectTemplate {
  const scoped: Fields = {
    failurePolicy: ternary("Ignore", "Fail", eq(v("deploy.dataVolumeWebhook.failurePolicy"), "Ignore")),
    namespaceSelector: { matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values: block(policedNamespaces) }] },
  };
  return {
    condition: ne(v("role"), "nested"),
    variables: [policedNamespaces, dataVolumesPoliced],
    object: {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingWebhookConfiguration",
      metadata: { name: v("uuid") },
      webhooks: [webhook(hook, when(dataVolumesPoliced, scoped, { failurePolicy: "Ignore", namespaceSelector: peprScope }))],
    },
  };
}

// ---- the watcher's pod ---------------------------------------------------------------------------------------

/**
 * Process settings of the watcher, defaults of the chart's `watcher.env` (and so of the manifest's watcher, and of
 * the sandbox's, which starts the watcher with its Deployment's process settings). V8 sizes its young generation
 * from the memory it sees: 1 MiB semi-spaces under the pod's 512Mi limit, 16 MiB on a large node without one; the
 * value is pinned so the watcher is the same process everywhere. 4 MiB: with 1 MiB every Redfish GET paid for
 * scavenges (CPU per response 152 against 113 µs), for ~9 MiB less RSS (docs/benchmarks.md: watcher memory).
 * glibc's default of 8 malloc arenas per core keeps memory the watcher's threads freed; 2 arenas give it back.
 */
export const WATCHER_PROCESS_ENV: readonly { name: string; value: string }[] = [
  { name: "MALLOC_ARENA_MAX", value: "2" },
  { name: "NODE_OPTIONS", value: "--max-semi-space-size=4" },
];

/** The watcher runs as its own ServiceAccount (admission pods keep Pepr's and never see the users Secret). */
export const watcherServiceAccount: Expr = uuidSuffixed("-watcher");

/** Ready = the Redfish caches have synced (the Redfish server answers /healthz 503 until then) when Redfish serves. */
export const watcherReadinessProbe: Fields = {
  ...when(
    and(ne(v("role"), "nested"), v("redfish.enabled"), v("chassis")),
    {
      httpGet: { path: "/healthz", port: v("redfish.port"), scheme: ternary("HTTPS", "HTTP", v("redfish.tls.enabled")) },
      initialDelaySeconds: 10,
    },
    entriesOf(v("watcher.readinessProbe")),
  ),
};
