// Shared fixtures for the datavolume-policy tests: configs go through the real config schema, so the tests also
// cover the mapping from module config to policy settings.
import { moduleConfigSchema } from "../../capabilities/config/schema";
import { policySettingsFromConfig } from "../../capabilities/datavolume-policy/from-config";
import type { DataVolumePolicySettings } from "../../capabilities/datavolume-policy/settings";

export const NS = "tenant1-vms";
export const TENANT1_SA = "system:serviceaccount:tenant1-csi:kubevirt-csi-controller";
export const TENANT2_SA = "system:serviceaccount:tenant2-csi:kubevirt-csi-controller";
export const ADMIN = "kubernetes-admin";
/** The module's watcher, as the API server names it in admission requests. */
export const MODULE_WATCHER = "system:serviceaccount:pepr-system:pepr-kubevirt-infra-watcher";

/** A module config document with the policy enabled in tenant1-vms; `policy` is merged into datavolumePolicy. */
export function configDoc(policy: Record<string, unknown> = {}, infra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    role: "infra",
    infra: { namespace: NS, labels: "csi-driver/cluster=tenant1", ...infra },
    datavolumePolicy: { enabled: true, mode: "enforce", csiNamePrefix: "pvc-", ...policy },
  };
}

export function settingsFor(policy: Record<string, unknown> = {}, infra: Record<string, unknown> = {}): DataVolumePolicySettings {
  const settings = policySettingsFromConfig(moduleConfigSchema.parse(configDoc(policy, infra)));
  if (!settings) throw new Error("test config unexpectedly leaves the policy inert");
  return settings;
}

export const TWO_TENANTS = {
  tenants: [
    { name: "tenant1", labels: "csi-driver/cluster=tenant1", serviceAccounts: [TENANT1_SA] },
    { name: "tenant2", labels: "csi-driver/cluster=tenant2", serviceAccounts: [TENANT2_SA] },
  ],
};

export interface DvOptions {
  namespace?: string;
  labels?: Record<string, string>;
  storageClassName?: string | null;
  section?: "storage" | "pvc";
  uid?: string;
  generateName?: string;
}

/** A DataVolume as the CSI controller creates it (blank source, spec.storage). */
export function dataVolume(name: string, opts: DvOptions = {}): Record<string, unknown> {
  const section = opts.section ?? "storage";
  const storage: Record<string, unknown> = { resources: { requests: { storage: "1Gi" } } };
  if (opts.storageClassName !== undefined) storage.storageClassName = opts.storageClassName;
  const metadata: Record<string, unknown> = { namespace: opts.namespace ?? NS, uid: opts.uid ?? `uid-${name}` };
  if (name) metadata.name = name;
  if (opts.generateName) metadata.generateName = opts.generateName;
  if (opts.labels) metadata.labels = opts.labels;
  return {
    apiVersion: "cdi.kubevirt.io/v1beta1",
    kind: "DataVolume",
    metadata,
    spec: { source: { blank: {} }, [section]: storage },
  };
}

export const TENANT1_LABELS = { "csi-driver/cluster": "tenant1" };
export const TENANT2_LABELS = { "csi-driver/cluster": "tenant2" };
