// The resource types the sandbox serves: built-in kinds, and CRD-backed kinds derived from
// CustomResourceDefinition objects (the pre-registered ones are created as real CRD objects at start).
import fs from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { parseStructuralSchema, type StructuralSchema } from "./schema";
import type { KubeObject, ResourceType } from "./types";

/** What the store and REST layer know about a type beyond the ObjectStore contract. */
export interface TypeInfo extends ResourceType {
  /** Store key: "resource" for core, "resource.group" otherwise. */
  key: string;
  /** Served versions; objects are stored once per group/resource and presented in the requested version. */
  versions: string[];
  singular: string;
  shortNames: string[];
  /** Built-in (compiled) kinds accept strategic merge patch; CRD kinds answer 415 like kube. */
  builtin: boolean;
  /** metadata.generation is maintained (CRD kinds, CRDs, webhook configurations), bumped on non-metadata/status change. */
  tracksGeneration: boolean;
  /** Strategic-merge list merge keys by dotted path ("status.conditions" -> "type"; "set" = union of primitives). */
  mergeKeys: Record<string, string>;
  /** Field selectors beyond metadata.name/metadata.namespace. */
  fieldSelectors: string[];
  /** For CRD-backed types: the CRD's name. */
  crd?: string;
  /** For CRD-backed types: the storage version's structural schema (prune, default, validate). */
  schema?: StructuralSchema;
}

export function storeKey(group: string, resource: string): string {
  return group ? `${resource}.${group}` : resource;
}

export function apiVersionOf(group: string, version: string): string {
  return group ? `${group}/${version}` : version;
}

const objectMetaMergeKeys = { "metadata.ownerReferences": "uid", "metadata.finalizers": "set" };

interface BuiltinSpec {
  group: string;
  version: string;
  resource: string;
  kind: string;
  singular: string;
  namespaced: boolean;
  hasStatus: boolean;
  tracksGeneration?: boolean;
  shortNames?: string[];
  mergeKeys?: Record<string, string>;
  fieldSelectors?: string[];
}

const builtinSpecs: BuiltinSpec[] = [
  {
    group: "",
    version: "v1",
    resource: "namespaces",
    kind: "Namespace",
    singular: "namespace",
    namespaced: false,
    hasStatus: true,
    shortNames: ["ns"],
    mergeKeys: { "status.conditions": "type" },
    fieldSelectors: ["status.phase"],
  },
  {
    group: "",
    version: "v1",
    resource: "nodes",
    kind: "Node",
    singular: "node",
    namespaced: false,
    hasStatus: true,
    shortNames: ["no"],
    mergeKeys: { "status.conditions": "type", "status.addresses": "type", "spec.podCIDRs": "set" },
    fieldSelectors: ["spec.unschedulable"],
  },
  { group: "", version: "v1", resource: "configmaps", kind: "ConfigMap", singular: "configmap", namespaced: true, hasStatus: false, shortNames: ["cm"] },
  { group: "", version: "v1", resource: "secrets", kind: "Secret", singular: "secret", namespaced: true, hasStatus: false, fieldSelectors: ["type"] },
  {
    group: "",
    version: "v1",
    resource: "serviceaccounts",
    kind: "ServiceAccount",
    singular: "serviceaccount",
    namespaced: true,
    hasStatus: false,
    shortNames: ["sa"],
    mergeKeys: { secrets: "name" },
  },
  {
    group: "",
    version: "v1",
    resource: "events",
    kind: "Event",
    singular: "event",
    namespaced: true,
    hasStatus: false,
    shortNames: ["ev"],
    fieldSelectors: [
      "involvedObject.kind",
      "involvedObject.namespace",
      "involvedObject.name",
      "involvedObject.uid",
      "involvedObject.apiVersion",
      "involvedObject.resourceVersion",
      "involvedObject.fieldPath",
      "reason",
      "reportingComponent",
      "source",
      "type",
    ],
  },
  {
    group: "",
    version: "v1",
    resource: "persistentvolumeclaims",
    kind: "PersistentVolumeClaim",
    singular: "persistentvolumeclaim",
    namespaced: true,
    hasStatus: true,
    shortNames: ["pvc"],
    mergeKeys: { "status.conditions": "type" },
  },
  {
    group: "apiextensions.k8s.io",
    version: "v1",
    resource: "customresourcedefinitions",
    kind: "CustomResourceDefinition",
    singular: "customresourcedefinition",
    namespaced: false,
    hasStatus: true,
    tracksGeneration: true,
    shortNames: ["crd", "crds"],
  },
  {
    group: "admissionregistration.k8s.io",
    version: "v1",
    resource: "mutatingwebhookconfigurations",
    kind: "MutatingWebhookConfiguration",
    singular: "mutatingwebhookconfiguration",
    namespaced: false,
    hasStatus: false,
    tracksGeneration: true,
    mergeKeys: { webhooks: "name" },
  },
  {
    group: "admissionregistration.k8s.io",
    version: "v1",
    resource: "validatingwebhookconfigurations",
    kind: "ValidatingWebhookConfiguration",
    singular: "validatingwebhookconfiguration",
    namespaced: false,
    hasStatus: false,
    tracksGeneration: true,
    mergeKeys: { webhooks: "name" },
  },
  ...(["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"] as const).map(kind => ({
    group: "rbac.authorization.k8s.io",
    version: "v1",
    resource: `${kind.toLowerCase()}s`,
    kind,
    singular: kind.toLowerCase(),
    namespaced: !kind.startsWith("Cluster"),
    hasStatus: false,
  })),
];

export const builtinTypes: TypeInfo[] = builtinSpecs.map(s => ({
  group: s.group,
  version: s.version,
  resource: s.resource,
  kind: s.kind,
  listKind: `${s.kind}List`,
  namespaced: s.namespaced,
  hasStatus: s.hasStatus,
  key: storeKey(s.group, s.resource),
  versions: [s.version],
  singular: s.singular,
  shortNames: s.shortNames ?? [],
  builtin: true,
  tracksGeneration: s.tracksGeneration ?? false,
  mergeKeys: { ...objectMetaMergeKeys, ...(s.mergeKeys ?? {}) },
  fieldSelectors: s.fieldSelectors ?? [],
}));

/** The part of a CRD the server acts on (zod: CRDs arrive from clients). */
export const crdSpecSchema = z.object({
  group: z.string().min(1),
  names: z.object({
    kind: z.string().min(1),
    plural: z.string().min(1),
    singular: z.string().optional(),
    listKind: z.string().optional(),
    shortNames: z.array(z.string()).optional(),
  }),
  scope: z.enum(["Namespaced", "Cluster"]),
  versions: z
    .array(
      z.object({
        name: z.string().min(1),
        served: z.boolean(),
        storage: z.boolean(),
        subresources: z.object({ status: z.object({}).passthrough().optional() }).passthrough().optional(),
        schema: z.object({ openAPIV3Schema: z.unknown().optional() }).passthrough().optional(),
      }).passthrough(),
    )
    .min(1),
}).passthrough();
export type CrdSpec = z.infer<typeof crdSpecSchema>;

/** The TypeInfo a CRD defines (served versions; status subresource taken from the storage version). */
export function typeFromCrd(name: string, spec: CrdSpec): TypeInfo | undefined {
  const served = spec.versions.filter(v => v.served);
  if (served.length === 0) return undefined;
  const storage = spec.versions.find(v => v.storage) ?? spec.versions[0];
  const ordered = [storage, ...served.filter(v => v !== storage)].filter(v => v.served);
  return {
    group: spec.group,
    version: (ordered[0] ?? served[0]).name,
    resource: spec.names.plural,
    kind: spec.names.kind,
    listKind: spec.names.listKind ?? `${spec.names.kind}List`,
    namespaced: spec.scope === "Namespaced",
    hasStatus: Boolean(storage.subresources?.status),
    key: storeKey(spec.group, spec.names.plural),
    versions: ordered.map(v => v.name),
    singular: spec.names.singular ?? spec.names.kind.toLowerCase(),
    shortNames: spec.names.shortNames ?? [],
    builtin: false,
    tracksGeneration: true,
    mergeKeys: {},
    fieldSelectors: [],
    crd: name,
    schema: parseStructuralSchema(storage.schema?.openAPIV3Schema),
  };
}

/** The real CRDs the sandbox serves from the start (copied from upstream, see sandbox/crds/README.md). */
export const CRD_DIR = path.resolve(__dirname, "..", "crds");

/** CRD objects for the kinds the sandbox serves from the start: every YAML file in sandbox/crds/. */
export function preregisteredCrds(): KubeObject[] {
  return fs
    .readdirSync(CRD_DIR)
    .filter(f => f.endsWith(".yaml"))
    .sort()
    .map(f => parseYaml(fs.readFileSync(path.join(CRD_DIR, f), "utf8"), { maxAliasCount: -1 }) as KubeObject);
}
