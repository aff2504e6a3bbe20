// The module's own objects that Pepr cannot generate, each described ONCE (./template.ts): ./manifest.ts
// evaluates these descriptions for a values document, ./chart.ts prints them as the chart's templates.
import { MODULE_NAMESPACE } from "./rbac";
import { and, entriesOf, eq, ne, not, or, ternary, text, v, when, type Expr, type ObjectTemplate } from "./template";

export const REDFISH_SERVICE_NAME = "kubevirt-infra-redfish";
export const NONROOT_SCC_CLUSTER_ROLE = "system:openshift:scc:nonroot-v2";

const PART_OF = { "app.kubernetes.io/part-of": "kubevirt-infra" };
const REDFISH_LABELS = { ...PART_OF, "app.kubernetes.io/component": "redfish" };

/** `<uuid><suffix>`: the chart's `uuid` value is Pepr's resource name, `pepr-<module uuid>`. */
const uuidSuffixed = (suffix: string): Expr => ({ evaluate: vs => `${String(vs.uuid)}${suffix}`, helm: root => `(printf "%s${suffix}" ${root}.uuid)` });

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

/** Chart template file → description, in the order the manifest lists the objects. */
export const MODULE_OBJECT_TEMPLATES: Record<string, ObjectTemplate> = {
  "kubevirt-infra-redfish-service.yaml": redfishService,
  "kubevirt-infra-redfish-route.yaml": redfishRoute,
  "kubevirt-infra-nonroot-scc.yaml": nonrootSccBinding,
};
