// Shared by the deployment tests: a private copy of dist/ (so tests never race other builds or each other),
// the post-build step run on it, and test values.
import bcrypt from "bcryptjs";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import YAML from "yaml";
import { ensureBuild } from "../../scripts/ensure-build";
import { parseManifest, postBuild } from "../../scripts/post-build";
import type { KubeObject } from "../../scripts/deploy/manifest";
export { helmMerge } from "../../scripts/deploy/values";

export const REPO = path.resolve(__dirname, "../..");
export const UUID = "kubevirt-infra";
export const NAME = `pepr-${UUID}`;

/** A fresh copy of the built dist/ in a temp directory (built first when stale). */
export async function copyDist(): Promise<string> {
  await ensureBuild(() => undefined);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kvi-deploy-"));
  fs.cpSync(path.join(REPO, "dist"), dir, { recursive: true, filter: src => !src.endsWith(".map") });
  return dir;
}

export function removeDir(dir: string | undefined): void {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}

export function writeValues(dir: string, values: unknown, file = "values.yaml"): string {
  const p = path.join(dir, file);
  fs.writeFileSync(p, YAML.stringify(values));
  return p;
}

export interface Built {
  dist: string;
  objects: KubeObject[];
  find(kind: string, name: string): KubeObject | undefined;
  get(kind: string, name: string): KubeObject;
}

/** Runs the post-build step on `dist` with these values (undefined = defaults) and parses the manifest. */
export async function build(dist: string, values?: unknown): Promise<Built> {
  const valuesFile = values === undefined ? undefined : writeValues(fs.mkdtempSync(path.join(os.tmpdir(), "kvi-values-")), values);
  const result = await postBuild({ dist, valuesFile });
  const objects = parseManifest(fs.readFileSync(result.manifestPath, "utf8"), "manifest");
  const find = (kind: string, name: string) => objects.find(o => o.kind === kind && o.metadata.name === name);
  return {
    dist,
    objects,
    find,
    get(kind, name) {
      const found = find(kind, name);
      if (!found) throw new Error(`no ${kind} ${name} in the manifest (have: ${objects.map(o => `${o.kind}/${o.metadata.name}`).join(", ")})`);
      return found;
    },
  };
}

export const TEST_PASSWORD = "tenant1-secret-pass";

/** Values for an infra+nested ("both") install with every capability configured. */
export function fullValues(): Record<string, unknown> {
  return {
    role: "both",
    chassis: [{ name: "tenant1", namespace: "tenant1-vms", description: "Tenant 1 VMs" }],
    authentication: { users: [{ username: "admin", passwordHash: bcrypt.hashSync(TEST_PASSWORD, 4), chassis: ["tenant1"] }] },
    infra: { namespace: "tenant1-vms", labels: "csi-driver/cluster=tenant1", kubeconfigSecret: { name: "infra-kubeconfig" } },
    nodeMapping: [{ nodeName: "worker-0", vmName: "vm-1" }],
    nodeIdentity: { enabled: true },
    datavolumePolicy: { enabled: true },
    redfish: { kubernetesIdentities: { enabled: true } },
    deploy: {
      route: { enabled: true, host: "redfish.apps.example.com" },
      openshift: { servingCertificate: true, nonrootSCC: true },
    },
  };
}

export function isMap(v: unknown): v is Record<string, any> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
