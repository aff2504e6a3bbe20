// The values converter on values shaped like the two legacy charts' (kubevirt-redfish chart values.yaml, the
// KubeVirt CSI driver chart's values.yaml + secrets.yaml), through the function and the CLI.
import bcrypt from "bcryptjs";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import { migrateValues } from "../../scripts/migrate-values";
import { resolveValues } from "../../scripts/deploy/values";
import { REPO, removeDir } from "./helpers";

/** Shaped like the kubevirt-redfish chart's values: deployment keys plus its config.yaml keys. */
const redfishChartValues = () => ({
  global: { namespace: "kubevirt-redfish", image: { repository: "quay.io/example/kubevirt-redfish", tag: "v0.2.1" } },
  deployment: { replicas: 1, container: { resources: { requests: { memory: "512Mi", cpu: "100m" } }, env: { LOG_LEVEL: "info" } } },
  service: { enabled: true, type: "ClusterIP", ports: [{ name: "http", port: 8443, targetPort: 8443 }], annotations: {} },
  route: { enabled: true, host: "bmc.apps.example.com", tls: { termination: "edge", insecureEdgeTerminationPolicy: "Redirect" } },
  rbac: { enabled: true, serviceAccount: { create: true, name: "kubevirt-redfish" } },
  server: { host: "0.0.0.0", port: 8443, system_id_convention: "legacy", tls: { enabled: false } },
  chassis: [
    { name: "lab-a", namespace: "lab-a-vms", service_account: "kubevirt-redfish", description: "Lab A", vm_selector: { labels: { "redfish-enabled": "true" } } },
    { name: "lab-b", namespace: "lab-b-vms", service_account: "kubevirt-redfish", description: "Lab B" },
  ],
  authentication: {
    users: [
      { username: "lab-admin", password: "lab-admin-pass", chassis: ["lab-a", "lab-b"] },
      { username: "lab-b-op", password: "lab-b-pass", chassis: ["lab-b"] },
    ],
  },
  kubevirt: { api_version: "v1", timeout: 30, allow_insecure_tls: true },
  datavolume: { storage_size: "4Gi", allow_insecure_tls: true, storage_class: "fast-block", vm_update_timeout: "2m", iso_download_timeout: "45m", helper_image: "registry.example.com/ubi-minimal:latest" },
  volumes: { config: { name: "config-volume" } },
  configMap: { enabled: true, name: "kubevirt-redfish-config" },
  securityContext: { runAsNonRoot: true },
  podSecurityContext: { runAsNonRoot: true },
  nodeSelector: { "node-role.kubernetes.io/infra": "" },
  tolerations: [],
  affinity: {},
});

const INFRA_KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\nusers: [{name: csi, user: {token: not-a-real-token}}]\n";

/** Shaped like the KubeVirt CSI driver chart's values.yaml and secrets.yaml. */
const csiChartValues = () => ({
  infra: { namespace: "nested-a", storageClassName: "ceph-rbd-virt", labels: "csi-driver/cluster=nested-a", kubeconfig: "" },
  nodeMapping: { "worker-0": "nested-a-worker-0", "worker-1": "nested-a-worker-1", "master-0": "nested-a-master-0" },
  useDownstreamImages: true,
  imageSync: { schedule: "0 0 * * *" },
  images: { driver: { repository: "quay.io/kubevirt/kubevirt-csi-driver", tag: "latest" } },
  storageClass: { create: true, name: "kubevirt-csi", isDefault: true },
});
const csiSecrets = () => ({ infra: { kubeconfig: INFRA_KUBECONFIG } });

describe("kubevirt-redfish chart values", () => {
  it("become infra-cluster values the module accepts, with hashed passwords and the Route kept", () => {
    const { values, notes } = migrateValues({ redfish: [redfishChartValues()], bcryptCost: 4 });
    expect(values.role).toBe("infra");
    expect(values.chassis).toEqual([
      { name: "lab-a", namespace: "lab-a-vms", description: "Lab A", vmSelector: { matchLabels: { "redfish-enabled": "true" } } },
      { name: "lab-b", namespace: "lab-b-vms", description: "Lab B" },
    ]);
    const users = (values.authentication as { users: { username: string; passwordHash?: string; password?: string }[] }).users;
    expect(users.map(u => u.password)).toEqual([undefined, undefined]);
    expect(bcrypt.compareSync("lab-admin-pass", users[0].passwordHash!)).toBe(true);
    expect(bcrypt.compareSync("lab-b-pass", users[1].passwordHash!)).toBe(true);
    expect(values.redfish).toEqual({ port: 8443, tls: { enabled: false } });
    expect(values.datavolume).toEqual({ storageSize: "4Gi", storageClassName: "fast-block", importTimeoutSeconds: 2700 });
    expect(values.deploy).toEqual({
      redfishService: { type: "ClusterIP", port: 8443 },
      route: { enabled: true, host: "bmc.apps.example.com", termination: "edge", insecureEdgeTerminationPolicy: "Redirect" },
    });
    expect(values.watcher).toEqual({ nodeSelector: { "node-role.kubernetes.io/infra": "" } });
    for (const dropped of ["global", "deployment", "rbac", "kubevirt", "helper_image", "allow_insecure_tls", "service_account", "system_id_convention"]) {
      expect(notes.join("\n"), dropped).toContain(dropped);
    }
    // What the converter wrote loads as the deployment's values.
    expect(resolveValues(values).config.chassis).toHaveLength(2);
  });

  it("keeps plain passwords only when asked", () => {
    const { values } = migrateValues({ redfish: [redfishChartValues()], hashPasswords: false });
    expect((values.authentication as { users: { password?: string }[] }).users[0].password).toBe("lab-admin-pass");
  });

  it("refuses what would not work, saying why", () => {
    const reencryptOverHttp = redfishChartValues();
    reencryptOverHttp.route.tls.termination = "reencrypt";
    expect(() => migrateValues({ redfish: [reencryptOverHttp] })).toThrow(/reencrypt.*redfish\.tls\.enabled: true/);
    const unknownUser = redfishChartValues();
    unknownUser.authentication.users[1].chassis = ["lab-c"];
    expect(() => migrateValues({ redfish: [unknownUser] })).toThrow(/chassis "lab-c" of user "lab-b-op" is not defined/);
  });
});

describe("KubeVirt CSI chart values", () => {
  it("become nested-cluster values: node mapping, labels, and the kubeconfig as a Secret only", () => {
    const { values, kubeconfigSecret, notes } = migrateValues({ csi: [csiChartValues(), csiSecrets()] });
    expect(values.role).toBe("nested");
    expect(values.nodeIdentity).toEqual({ enabled: true });
    expect(values.nodeMapping).toEqual([
      { nodeName: "worker-0", vmName: "nested-a-worker-0" },
      { nodeName: "worker-1", vmName: "nested-a-worker-1" },
      { nodeName: "master-0", vmName: "nested-a-master-0" },
    ]);
    expect(values.infra).toEqual({ namespace: "nested-a", labels: "csi-driver/cluster=nested-a", kubeconfigSecret: { name: "infra-kubeconfig", key: "kubeconfig" } });
    expect(JSON.stringify(values)).not.toContain("not-a-real-token");
    expect(kubeconfigSecret).toEqual({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "infra-kubeconfig", namespace: "pepr-system" },
      type: "Opaque",
      stringData: { kubeconfig: INFRA_KUBECONFIG },
    });
    expect(notes.join("\n")).toMatch(/storageClassName[\s\S]*useDownstreamImages|useDownstreamImages[\s\S]*storageClassName/);
    const resolved = resolveValues(values);
    expect(resolved.config.nodeMapping.every(m => m.vmNamespace === "nested-a")).toBe(true);
  });

  it("without a kubeconfig needs no Secret", () => {
    const { values, kubeconfigSecret } = migrateValues({ csi: [csiChartValues()] });
    expect(kubeconfigSecret).toBeUndefined();
    expect((values.infra as Record<string, unknown>).kubeconfigSecret).toBeUndefined();
  });
});

describe("the CLI", () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "kvi-migrate-"));
    fs.writeFileSync(path.join(dir, "csi.yaml"), YAML.stringify(csiChartValues()));
    fs.writeFileSync(path.join(dir, "secrets.yaml"), YAML.stringify(csiSecrets()));
  });
  afterAll(() => removeDir(dir));

  const run = (...args: string[]) =>
    spawnSync(process.execPath, [path.join(REPO, "node_modules/tsx/dist/cli.mjs"), path.join(REPO, "scripts/migrate-values.ts"), ...args], {
      encoding: "utf8",
      cwd: dir,
    });

  it("writes the values and the Secret manifest to separate files", () => {
    const result = run("--csi", "csi.yaml", "--csi", "secrets.yaml", "-o", "values.yaml", "--secret-out", "secret.yaml");
    expect(result.status, result.stderr).toBe(0);
    const written = fs.readFileSync(path.join(dir, "values.yaml"), "utf8");
    expect(written).toMatch(/^# kubevirt-infra values, migrated/);
    expect(YAML.parse(written).role).toBe("nested");
    expect(written).not.toContain("not-a-real-token");
    expect(YAML.parse(fs.readFileSync(path.join(dir, "secret.yaml"), "utf8")).stringData.kubeconfig).toBe(INFRA_KUBECONFIG);
    expect(fs.statSync(path.join(dir, "secret.yaml")).mode & 0o077).toBe(0);
  });

  it("fails (non-zero) rather than drop the kubeconfig", () => {
    const result = run("--csi", "csi.yaml", "--csi", "secrets.yaml", "-o", "values2.yaml");
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("--secret-out");
    expect(fs.existsSync(path.join(dir, "values2.yaml"))).toBe(false);
  });
});
