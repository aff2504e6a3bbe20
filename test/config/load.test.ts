import bcrypt from "bcryptjs";
import { describe, expect, it } from "vitest";
import YAML from "yaml";
import {
  configYamlOf,
  loadConfig,
  loadConfigFromObjects,
  usersYamlOf,
  type LoadResult,
} from "../../capabilities/config/load";
import { goDurationSeconds } from "../../capabilities/config/legacy-values";

const NO_ENV = {};
const HASH = bcrypt.hashSync("hunter2-but-longer", 4);

function ok(result: LoadResult) {
  if (!result.ok) throw new Error(`expected a valid config, got:\n${result.errors.join("\n")}`);
  return result;
}

function errors(result: LoadResult): string[] {
  expect(result.ok, "expected the config to be refused").toBe(false);
  return result.ok ? [] : result.errors;
}

const chassisYaml = `
chassis:
  - name: tenant1
    namespace: tenant1-vms
  - name: tenant2
    namespace: tenant2-vms
`;

describe("sources", () => {
  it("no ConfigMap is an empty, valid config with every capability inert", () => {
    const result = ok(loadConfig({ env: NO_ENV }));
    expect(result.config.chassis).toEqual([]);
    expect(result.config.nodeIdentity.enabled).toBe(false);
    expect(result.config.datavolumePolicy.enabled).toBe(false);
    expect(result.warnings).toEqual([]);
  });

  it("an empty or comment-only config.yaml is the empty config", () => {
    expect(ok(loadConfig({ configYaml: "", env: NO_ENV })).config).toEqual(ok(loadConfig({ env: NO_ENV })).config);
    expect(ok(loadConfig({ configYaml: "# nothing yet\n", env: NO_ENV })).config).toEqual(ok(loadConfig({ env: NO_ENV })).config);
  });

  it("users come from the Secret's users.yaml, as a list or as users:", () => {
    const list = `- username: admin\n  passwordHash: "${HASH}"\n  chassis: [tenant1, tenant2]\n`;
    const asList = ok(loadConfig({ configYaml: chassisYaml, usersYaml: list, env: NO_ENV }));
    expect(asList.config.authentication.users).toEqual([{ username: "admin", passwordHash: HASH, chassis: ["tenant1", "tenant2"] }]);
    expect(asList.warnings).toEqual([]);
    const asMapping = ok(loadConfig({ configYaml: chassisYaml, usersYaml: `users:\n${list.replace(/^/gm, "  ")}`, env: NO_ENV }));
    expect(asMapping.config.authentication.users).toEqual(asList.config.authentication.users);
  });

  it("errors in the Secret's users name users.yaml and the entry there", () => {
    const configYaml = `${chassisYaml}authentication:\n  users:\n    - {username: cm-user, passwordHash: "${HASH}", chassis: [tenant1]}\n`;
    const usersYaml = YAML.stringify([
      { username: "ok", passwordHash: HASH, chassis: ["tenant1"] },
      { username: "cm-user", passwordHash: HASH, chassis: ["tenant9"] },
      { username: "x", passwordHash: "$2b$10$short", chassis: ["tenant1"] },
    ]);
    expect(errors(loadConfig({ configYaml, usersYaml, env: NO_ENV }))).toEqual([
      "users.yaml[2].passwordHash: is not a bcrypt hash (expected $2a$, $2b$ or $2y$, a two-digit cost 04-31, then 53 characters of salt and hash)",
      'users.yaml[1].username: user "cm-user" is defined twice',
      'users.yaml[1].chassis[0]: chassis "tenant9" of user "cm-user" is not defined in chassis[] (defined: tenant1, tenant2)',
    ]);
    expect(errors(loadConfig({ configYaml: chassisYaml, usersYaml: `users:\n  - {username: a, chassis: [tenant1]}\n`, env: NO_ENV }))).toEqual([
      'users.yaml: users[0]: user "a" needs a passwordHash (bcrypt) or a password',
    ]);
    expect(errors(loadConfig({ usersYaml: "admin: admin123\n", env: NO_ENV }))).toEqual([
      'users.yaml: must be a list of users (each with username, passwordHash or password, chassis), or a mapping with only "users:"',
    ]);
  });
});

describe("YAML problems", () => {
  it("reports syntax errors with their position and never the offending text", () => {
    const result = loadConfig({
      configYaml: `authentication:\n  users:\n    - username: admin\n      password: "topsecret-value" trailing\n`,
      env: NO_ENV,
    });
    const list = errors(result);
    expect(list).toEqual(["config.yaml line 4, column 35: YAML syntax error: Unexpected scalar at node end"]);
    expect(list.join("\n")).not.toContain("topsecret");
    const usersResult = loadConfig({ usersYaml: `- username: a\n  password: [topsecret-value\n`, env: NO_ENV });
    expect(errors(usersResult).join("\n")).not.toContain("topsecret");
    expect(errors(usersResult)[0]).toMatch(/^users\.yaml line \d+, column \d+: YAML syntax error: /);
  });

  it("refuses duplicate keys, several documents and a document that is not a mapping", () => {
    expect(errors(loadConfig({ configYaml: "role: nested\nrole: infra\n", env: NO_ENV }))).toEqual([
      "config.yaml line 2, column 1: YAML syntax error: Map keys must be unique",
    ]);
    expect(errors(loadConfig({ configYaml: "role: nested\n---\nrole: infra\n", env: NO_ENV }))).toEqual([
      'config.yaml: holds 2 YAML documents ("---"); put everything in one',
    ]);
    expect(errors(loadConfig({ configYaml: "- role: nested\n", env: NO_ENV }))).toEqual([
      "config.yaml: must be a mapping of settings (role, chassis, redfish, ...), not a list",
    ]);
  });

  it("reports every schema problem at once, each naming its field", () => {
    const configYaml = `
chassis:
  - name: tenant1
    namespace: Tenant1
redfish:
  port: 80
  tsl: {}
datavolumePolicy:
  mode: enforced
`;
    expect(errors(loadConfig({ configYaml, env: NO_ENV }))).toEqual([
      'chassis[0].namespace: "Tenant1" is not a valid namespace name (lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters)',
      "redfish.port: must be at least 1024 (the module runs without privileges)",
      'redfish: unknown key "tsl" (did you mean "tls"?); allowed keys here: enabled, port, tls, serviceUUID, powerOffStaysOff, imageUrlPolicy, insertMediaRate, kubernetesIdentities',
      'datavolumePolicy.mode: must be one of "enforce", "warn", "audit" (got text "enforced")',
    ]);
  });
});

describe("warnings", () => {
  it("plain-text passwords are accepted with a warning that does not contain them", () => {
    const result = ok(loadConfig({ configYaml: chassisYaml, usersYaml: "- {username: admin, password: Adm1n-Pa55, chassis: [tenant1]}\n", env: NO_ENV }));
    expect(result.config.authentication.users[0].password).toBe("Adm1n-Pa55");
    expect(result.warnings).toEqual([
      'users.yaml[0].password: user "admin" has a plain-text password; store a bcrypt hash in passwordHash instead',
    ]);
    expect(result.warnings.join("\n")).not.toContain("Adm1n-Pa55");
  });

  it("users in the ConfigMap are accepted with a warning to move them", () => {
    const configYaml = `${chassisYaml}authentication:\n  users:\n    - {username: admin, passwordHash: "${HASH}", chassis: [tenant1]}\n`;
    expect(ok(loadConfig({ configYaml, env: NO_ENV })).warnings).toEqual([
      "authentication.users: 1 user(s) in the ConfigMap, readable by anyone who may read ConfigMaps in pepr-system; move them to the Secret kubevirt-infra-users (key users.yaml)",
    ]);
  });

  it("settings the role switches off, plain HTTP and missing users are pointed out", () => {
    expect(ok(loadConfig({ configYaml: "role: infra\nnodeIdentity: {enabled: true}\n", env: NO_ENV })).warnings).toEqual([
      'nodeIdentity.enabled: ignored because role is "infra" (node identity acts in nested clusters)',
    ]);
    expect(ok(loadConfig({ configYaml: `role: nested\n${chassisYaml}`, env: NO_ENV })).warnings).toEqual([
      'chassis: ignored because role is "nested" (Redfish is served in infra clusters)',
    ]);
    expect(ok(loadConfig({ configYaml: `${chassisYaml}redfish: {tls: {enabled: false}}\n`, env: NO_ENV })).warnings).toEqual([
      "authentication.users: chassis are configured but there are no users, so nobody can use Redfish (users go in the Secret kubevirt-infra-users)",
      "redfish.tls.enabled: false, so Redfish passwords travel in plain HTTP; do this only behind a TLS-terminating Route",
    ]);
    expect(ok(loadConfig({ configYaml: "infra: {namespace: ns}\ndatavolumePolicy: {enabled: true}\n", env: NO_ENV })).warnings).toEqual([
      "datavolumePolicy.enabled: neither infra.labels nor datavolumePolicy.tenants are set, so no labels are required",
    ]);
  });
});

describe("legacy chart shapes", () => {
  // The shape of kubevirt-redfish's config.yaml (its Helm chart renders exactly these keys).
  const kubevirtRedfishConfig = `
kubevirt:
  api_version: "v1"
  timeout: 30
  allow_insecure_tls: true
server:
  host: "0.0.0.0"
  port: 9443
  system_id_convention: "legacy"
  tls:
    enabled: false
    cert_file: "/etc/tls/tls.crt"
    key_file: "/etc/tls/tls.key"
chassis:
  - name: "chassis-0"
    namespace: "namespace-0"
    service_account: "redfish-sa"
    description: "namespace-0 VMs"
    vm_selector:
      labels:
        redfish-enabled: "true"
  - name: "chassis-1"
    namespace: "namespace-1"
    service_account: "redfish-sa"
    description: "namespace-1 VMs"
authentication:
  users:
    - username: "admin"
      password: "admin123"
      chassis: ["chassis-0", "chassis-1"]
cdi:
  upload_proxy:
    service_name: "cdi-uploadproxy"
datavolume:
  storage_size: "3Gi"
  allow_insecure_tls: true
  storage_class: "lvms-vg1"
  vm_update_timeout: "2m"
  iso_download_timeout: "30m"
  helper_image: "registry.access.redhat.com/ubi8/ubi-minimal:latest"
`;

  it("reads the kubevirt-redfish config.yaml and says how to rename each key", () => {
    const result = ok(loadConfig({ configYaml: kubevirtRedfishConfig, env: NO_ENV }));
    expect(result.config.redfish.port).toBe(9443);
    expect(result.config.redfish.tls.enabled).toBe(false);
    expect(result.config.chassis).toEqual([
      { name: "chassis-0", namespace: "namespace-0", description: "namespace-0 VMs", vmSelector: { matchLabels: { "redfish-enabled": "true" } } },
      { name: "chassis-1", namespace: "namespace-1", description: "namespace-1 VMs" },
    ]);
    expect(result.config.authentication.users).toEqual([{ username: "admin", password: "admin123", chassis: ["chassis-0", "chassis-1"] }]);
    expect(result.config.datavolume).toMatchObject({ storageSize: "3Gi", storageClassName: "lvms-vg1", importTimeoutSeconds: 1800 });
    expect(result.warnings).toEqual([
      "server.port: legacy kubevirt-redfish key, read as redfish.port; rename it",
      "server.host: legacy chart key ignored: the Redfish server listens on all addresses of the watcher pod",
      'server.system_id_convention: legacy chart key ignored: Systems are "<namespace>.<vm>" and a bare "<vm>" is accepted when unique',
      "server.tls.enabled: legacy kubevirt-redfish key, read as redfish.tls.enabled; rename it",
      "server.tls.cert_file: legacy chart key ignored: put the certificate in a kubernetes.io/tls Secret named by redfish.tls.secretName",
      "server.tls.key_file: legacy chart key ignored: put the key in a kubernetes.io/tls Secret named by redfish.tls.secretName",
      "kubevirt: legacy chart key ignored: the module talks to KubeVirt through its own Kubernetes client",
      "cdi: legacy chart key ignored: virtual media is imported by CDI from an http(s) DataVolume source, not through the upload proxy",
      "chassis[0].service_account: legacy chart key ignored: the module acts with its own service account",
      "chassis[0].vm_selector.labels: legacy kubevirt-redfish key, read as chassis[0].vmSelector.matchLabels; rename it",
      "datavolume.storage_size: legacy kubevirt-redfish key, read as datavolume.storageSize; rename it",
      "datavolume.storage_class: legacy kubevirt-redfish key, read as datavolume.storageClassName; rename it",
      "datavolume.iso_download_timeout: legacy kubevirt-redfish key, read as datavolume.importTimeoutSeconds: 1800; rename it",
      "datavolume.vm_update_timeout: legacy chart key ignored: VM updates are single API writes here",
      "datavolume.helper_image: legacy chart key ignored: no helper pod is used (CDI imports the image)",
      "datavolume.allow_insecure_tls: legacy chart key ignored: CDI http imports cannot skip certificate checks; put the image server's CA in a ConfigMap named by datavolume.certConfigMap",
      "authentication.users: 1 user(s) in the ConfigMap, readable by anyone who may read ConfigMaps in pepr-system; move them to the Secret kubevirt-infra-users (key users.yaml)",
      'authentication.users[0].password: user "admin" has a plain-text password; store a bcrypt hash in passwordHash instead',
      "redfish.tls.enabled: false, so Redfish passwords travel in plain HTTP; do this only behind a TLS-terminating Route",
    ]);
  });

  it("refuses a legacy key given together with its new name", () => {
    expect(errors(loadConfig({ configYaml: "server: {port: 9443}\nredfish: {port: 8443}\n", env: NO_ENV }))).toEqual([
      "server.port: also given as redfish.port; keep only redfish.port",
    ]);
    expect(errors(loadConfig({ configYaml: "datavolume: {iso_download_timeout: soon}\n", env: NO_ENV }))).toEqual([
      'datavolume.iso_download_timeout: "soon" is not a duration like "30m" or "1h30m"',
    ]);
    expect(errors(loadConfig({ configYaml: "server: {listen: x}\n", env: NO_ENV }))).toEqual(["server.listen: unknown key of the legacy chart's server section"]);
  });

  it("reads the kubevirt-csi-driver chart's infra section and nodeMapping map", () => {
    const csiValues = `
infra:
  namespace: "nested-cluster"
  storageClassName: "ocs-storagecluster-ceph-rbd-virtualization"
  labels: "csi-driver/cluster=tenant"
  kubeconfig: ""
nodeMapping:
  "worker-0": "worker-0-vm"
  "master-0": "master-0-vm"
`;
    const result = ok(loadConfig({ configYaml: csiValues, env: NO_ENV }));
    expect(result.config.infra).toEqual({ namespace: "nested-cluster", labels: "csi-driver/cluster=tenant" });
    expect(result.config.nodeMapping).toEqual([
      { nodeName: "worker-0", vmName: "worker-0-vm", vmNamespace: "nested-cluster" },
      { nodeName: "master-0", vmName: "master-0-vm", vmNamespace: "nested-cluster" },
    ]);
    expect(result.warnings).toEqual([
      "infra.storageClassName: legacy chart key ignored: it configures the CSI driver; to restrict StorageClasses of CSI DataVolumes use datavolumePolicy.storageClassEnforcement.allowList",
    ]);
  });

  it("refuses an infra kubeconfig in the ConfigMap without echoing it", () => {
    const list = errors(loadConfig({ configYaml: 'infra: {kubeconfig: "apiVersion: v1\\nusers: [{user: {token: abc.def}}]"}\n', env: NO_ENV }));
    expect(list).toEqual([
      "infra.kubeconfig: a kubeconfig holds credentials and must not be in the ConfigMap (it would also be copied to the Pepr Store); put it in a Secret in pepr-system and set infra.kubeconfigSecret: {name, key}",
    ]);
    expect(errors(loadConfig({ configYaml: "nodeMapping: {worker-0: {vm: a}}\n", env: NO_ENV }))).toEqual([
      'nodeMapping["worker-0"]: must be the VM name as text (the CSI chart\'s "node: vm" form)',
    ]);
  });

  it("reads Go durations", () => {
    expect(goDurationSeconds("30m")).toBe(1800);
    expect(goDurationSeconds("1h30m")).toBe(5400);
    expect(goDurationSeconds("90s")).toBe(90);
    expect(goDurationSeconds("1500ms")).toBe(2);
    expect(goDurationSeconds("30")).toBeUndefined();
  });
});

describe("REDFISH_PORT", () => {
  it("overrides redfish.port", () => {
    expect(ok(loadConfig({ configYaml: "redfish: {port: 8443}\n", env: { REDFISH_PORT: "18443" } })).config.redfish.port).toBe(18443);
    expect(ok(loadConfig({ env: { REDFISH_PORT: "18443" } })).config.redfish.port).toBe(18443);
    expect(ok(loadConfig({ env: { REDFISH_PORT: "" } })).config.redfish.port).toBe(8443);
  });

  it("is checked like redfish.port", () => {
    expect(errors(loadConfig({ env: { REDFISH_PORT: "3000" } }))).toEqual([
      `REDFISH_PORT (environment variable): "3000" must not be 3000 (the Pepr watcher's own port)`,
    ]);
    expect(errors(loadConfig({ env: { REDFISH_PORT: "https" } }))).toEqual([`REDFISH_PORT (environment variable): "https" must be a whole number`]);
  });
});

describe("ConfigMap and Secret objects", () => {
  const b64 = (text: string) => Buffer.from(text).toString("base64");

  it("reads config.yaml from the ConfigMap", () => {
    expect(configYamlOf({ data: { "config.yaml": "role: infra\n" } })).toEqual({ ok: true, text: "role: infra\n" });
    expect(configYamlOf(null)).toEqual({ ok: true, text: undefined });
    expect(configYamlOf({ metadata: { name: "kubevirt-infra-config" } })).toEqual({ ok: true, text: undefined });
    expect(configYamlOf({ data: { "config.yml": "role: infra\n" } })).toEqual({
      ok: false,
      error: 'ConfigMap pepr-system/kubevirt-infra-config: has no key "config.yaml" (keys present: config.yml)',
    });
  });

  it("decodes the Secret's base64 data, and prefers stringData", () => {
    const users = "- {username: a, passwordHash: x, chassis: [c]}\n";
    expect(usersYamlOf({ data: { "users.yaml": b64(users) } })).toEqual({ ok: true, text: users });
    expect(usersYamlOf({ data: { "users.yaml": b64("old") }, stringData: { "users.yaml": users } })).toEqual({ ok: true, text: users });
    expect(usersYamlOf({ data: { "users.yaml": users } })).toEqual({
      ok: false,
      error: 'Secret pepr-system/kubevirt-infra-users: data "users.yaml" is not base64 (use stringData for plain text)',
    });
    expect(usersYamlOf({ data: { "users.yml": b64(users) } })).toEqual({
      ok: false,
      error: 'Secret pepr-system/kubevirt-infra-users: has no key "users.yaml" (keys present: users.yml)',
    });
    expect(usersYamlOf(null)).toEqual({ ok: true, text: undefined });
  });

  it("loads both objects as Pepr's Watch delivers them", () => {
    const result = ok(
      loadConfigFromObjects({
        configMap: { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "kubevirt-infra-config", resourceVersion: "7" }, data: { "config.yaml": chassisYaml } },
        usersSecret: {
          apiVersion: "v1",
          kind: "Secret",
          metadata: { name: "kubevirt-infra-users" },
          data: { "users.yaml": b64(YAML.stringify([{ username: "admin", passwordHash: HASH, chassis: ["tenant2"] }])) },
        },
        env: NO_ENV,
      }),
    );
    expect(result.config.authentication.users).toEqual([{ username: "admin", passwordHash: HASH, chassis: ["tenant2"] }]);
    expect(
      errors(loadConfigFromObjects({ configMap: { data: { other: "" } }, usersSecret: { data: { "users.yaml": "%%%" } }, env: NO_ENV })),
    ).toEqual([
      'ConfigMap pepr-system/kubevirt-infra-config: has no key "config.yaml" (keys present: other)',
      'Secret pepr-system/kubevirt-infra-users: data "users.yaml" is not base64 (use stringData for plain text)',
    ]);
  });
});
