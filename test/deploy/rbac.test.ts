// Least privilege, checked against what the code really does. A recording proxy in front of the sandbox API
// server notes every (verb, group, resource, subresource, namespace, name) that passes, the way the API
// server's authorizer sees it. Then:
//   - every gateway function has a permission entry, and exercising it makes exactly the calls declared;
//   - a function whose grant is limited to names or pepr-system is called only from reviewed files;
//   - the built module (admission + watcher processes) runs against the proxy with every capability
//     configured, and each call it makes is allowed by the ClusterRole/Role in the built manifest;
//   - every permission in the built manifest was needed by some observed call (no unused grant), and no
//     rule has a wildcard;
//   - admission pods and the watcher run as separate ServiceAccounts (the proxy tells them apart by token), each
//     call is allowed for the account that made it, and the admission account cannot read any Secret;
//   - with chassis configured, every right on VMs, VMIs (and their subresources), DataVolumes and Secrets is a Role
//     in a chassis or policed namespace (the informers list+watch there, one stream per namespace): no ClusterRole
//     rule on them at all, and the running watcher makes no cluster-wide call on them.
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import YAML from "yaml";
import * as gateway from "../../capabilities/common/gateway";
import { MODULE_PEPR_STORE as PEPR_STORE } from "../../capabilities/common/pepr-store";
import { createCertificateAuthority, issueServerCertificate } from "../../capabilities/common/tls";
import { AUDIT_CONFIGMAP } from "../../capabilities/datavolume-policy/summary";
import { startApiServer, type ApiServer, type KubeObject } from "../../sandbox/apiserver";
import { ProtocolListener } from "../../sandbox/apiserver/listener";
import { startModuleProcess, type ModuleProcess } from "../../sandbox/module-process";
import { freePort } from "../../sandbox/ports";
import { startKubeVirtSimulator, type KubeVirtSimulator } from "../../sandbox/simulators";
import { loadBuiltCapabilities } from "../../scripts/deploy/capabilities";
import { gatewayPermissions } from "../../scripts/deploy/permissions";
import { parseManifest } from "../../scripts/post-build";
import type { KubeObject as ManifestObject } from "../../scripts/deploy/manifest";
import { MODULE_REQUESTERS } from "../../capabilities/datavolume-policy/scope";
import {
  hasWildcard,
  MODULE_NAMESPACE,
  permissionKey,
  permissionsOf,
  type Grant,
  type PolicyRule,
  type ServiceAccountRole,
} from "../../scripts/deploy/rbac";
import { rbacResource, requestAttributes, type RequestAttributes } from "../../scripts/deploy/request-attributes";
import { resolveValues } from "../../scripts/deploy/values";
import { build, copyDist, fullValues, NAME, REPO, removeDir, UUID, type Built } from "./helpers";

// ---- recording proxy -------------------------------------------------------------------------------------

/** A recorded call, who made it (by bearer token) and the API server's answer (set when the answer arrives). */
type Call = RequestAttributes & { status?: number; account?: ServiceAccountRole };

interface Recorder {
  url: string;
  calls: Call[];
  close(): Promise<void>;
}

/** Hop-by-hop headers (HTTP/1.1 framing) that must not cross the proxy; HTTP/2 forbids them. */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te"]);
const forwardable = (headers: http.IncomingHttpHeaders) =>
  Object.fromEntries(Object.entries(headers).filter(([k]) => !k.startsWith(":") && !HOP_BY_HOP.has(k.toLowerCase())));

/**
 * Serves, like the API server, HTTP/1.1 (Pepr's client) and HTTP/2 cleartext (the module's KubeClient) on one port
 * (the sandbox's ProtocolListener), and forwards each request to the sandbox over HTTP/1.1.
 */
async function startRecordingProxy(target: string): Promise<Recorder> {
  const calls: Call[] = [];
  const upstream = new URL(target);
  const listener = new ProtocolListener((req, res) => {
    const account = ACCOUNT_BY_TOKEN.get(String(req.headers.authorization ?? "").replace(/^Bearer /, ""));
    const attrs: Call[] = (requestAttributes(req.method ?? "GET", req.url ?? "/", String(req.headers["content-type"] ?? "")) ?? []).map(a => ({ ...a, account }));
    calls.push(...attrs);
    const forward = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: forwardable(req.headers) },
      answer => {
        for (const a of attrs) a.status = answer.statusCode;
        res.writeHead(answer.statusCode ?? 502, forwardable(answer.headers));
        // API responses are JSON (watches: lines of it); ApiResponse takes text.
        answer.setEncoding("utf8");
        answer.on("data", (chunk: string) => res.write(chunk));
        answer.on("end", () => res.end());
      },
    );
    forward.on("error", () => res.destroy());
    res.on("close", () => forward.destroy());
    (req as NodeJS.ReadableStream).pipe(forward);
  });
  const port = await listener.listen(0, "127.0.0.1");
  return { url: `http://127.0.0.1:${port}`, calls, close: () => listener.close() };
}

/** The module's two identities, as their ServiceAccount tokens would give them. */
const serviceAccountUser = (name: string) => ({
  username: `system:serviceaccount:pepr-system:${name}`,
  groups: ["system:serviceaccounts", "system:serviceaccounts:pepr-system", "system:authenticated"],
});
const TOKENS: Record<ServiceAccountRole, string> = { admission: "admission-service-account-token", watcher: "watcher-service-account-token" };
const ACCOUNT_BY_TOKEN = new Map(Object.entries(TOKENS).map(([account, token]) => [token, account as ServiceAccountRole]));
const SERVICE_ACCOUNTS: Record<ServiceAccountRole, string> = { admission: NAME, watcher: `${NAME}-watcher` };

function writeKubeconfig(file: string, server: string, token: string): void {
  fs.writeFileSync(
    file,
    YAML.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "proxy", cluster: { server, "insecure-skip-tls-verify": true } }],
      users: [{ name: "module", user: { token } }],
      contexts: [{ name: "proxy", context: { cluster: "proxy", user: "module" } }],
      "current-context": "proxy",
    }),
  );
}

// ---- helpers ---------------------------------------------------------------------------------------------

const describeCall = (a: RequestAttributes) =>
  `${a.verb} ${a.group || "core"}/${rbacResource(a)}${a.namespace ? ` in ${a.namespace}` : ""}${a.name ? ` name=${a.name}` : ""}`;

/** Test values, and the config they resolve to (config-named grants: the infra kubeconfig and TLS Secrets). */
const TEST_VALUES = fullValues();
const TEST_CONFIG = resolveValues(TEST_VALUES).config;

const CHASSIS_NAMESPACES = new Set(TEST_CONFIG.chassis.map(c => c.namespace));
// fullValues(): role both, the policy enabled (the config lists infra.namespace when no namespace is given).
const POLICED_NAMESPACES = new Set(TEST_CONFIG.datavolumePolicy.namespaces);

/** The names a grant is restricted to under the test config; undefined = every object. */
function grantNames(grant: Grant): string[] | undefined {
  if (!grant.resourceNames && !grant.resourceNamesFrom) return undefined;
  const fromConfig = (grant.resourceNamesFrom ?? []).map(ref => ref.path.reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], TEST_CONFIG));
  return [...(grant.resourceNames ?? []), ...fromConfig.filter((name): name is string => typeof name === "string")];
}

function grantAllows(grant: Grant, a: RequestAttributes): boolean {
  if (grant.group !== a.group || grant.resource !== rbacResource(a) || !grant.verbs.includes(a.verb as Grant["verbs"][number])) return false;
  if (grant.scope === "module" && a.namespace !== MODULE_NAMESPACE) return false;
  if (grant.scope === "chassis" && !CHASSIS_NAMESPACES.has(a.namespace)) return false;
  if (grant.scope === "policed" && !POLICED_NAMESPACES.has(a.namespace)) return false;
  const names = grantNames(grant);
  return names === undefined || names.includes(a.name);
}

/** What one ServiceAccount may do under the built manifest: cluster-wide permission keys, and per namespace. */
interface AccountPermissions {
  cluster: Set<string>;
  byNamespace: Map<string, Set<string>>;
}

/** Follows the bindings of the built manifest to the rules that apply to `account`. */
function builtPermissions(b: Built, account: ServiceAccountRole): AccountPermissions {
  const out: AccountPermissions = { cluster: new Set(), byNamespace: new Map() };
  const subjectIs = (o: ManifestObject) =>
    ((o.subjects as { kind: string; name: string; namespace?: string }[] | undefined) ?? []).some(
      s => s.kind === "ServiceAccount" && s.name === SERVICE_ACCOUNTS[account] && s.namespace === MODULE_NAMESPACE,
    );
  for (const binding of b.objects.filter(o => (o.kind === "ClusterRoleBinding" || o.kind === "RoleBinding") && subjectIs(o))) {
    const ref = binding.roleRef as { kind: string; name: string };
    const role = b.objects.find(o => o.kind === ref.kind && o.metadata.name === ref.name && (ref.kind === "ClusterRole" || o.metadata.namespace === binding.metadata.namespace));
    if (!role) continue; // e.g. OpenShift's SCC ClusterRole, not part of the manifest
    const keys = permissionsOf(role.rules as PolicyRule[]);
    const target = binding.kind === "ClusterRoleBinding" ? out.cluster : out.byNamespace.get(binding.metadata.namespace!) ?? new Set<string>();
    keys.forEach(k => target.add(k));
    if (binding.kind === "RoleBinding") out.byNamespace.set(binding.metadata.namespace!, target);
  }
  return out;
}

/** The permission that allows the call (`namespace|key` for a namespaced one), or undefined when none does. */
function allowedBy(perms: AccountPermissions, a: RequestAttributes): string | undefined {
  const keys = [permissionKey(a.group, rbacResource(a), a.verb, a.name || "*"), permissionKey(a.group, rbacResource(a), a.verb)];
  for (const key of keys) {
    if (perms.cluster.has(key)) return key;
    if (a.namespace && perms.byNamespace.get(a.namespace)?.has(key)) return `${a.namespace}|${key}`;
  }
  return undefined;
}

const allPermissionsOf = (perms: AccountPermissions): string[] => [
  ...perms.cluster,
  ...[...perms.byNamespace].flatMap(([ns, keys]) => [...keys].map(k => `${ns}|${k}`)),
];

function isPlainFunction(value: unknown): value is (...args: never[]) => unknown {
  return typeof value === "function" && !/^class\b/.test(Function.prototype.toString.call(value));
}

// ---- fixture: sandbox API server + KubeVirt simulator + recording proxy ------------------------------------

const NS = "tenant1-vms";
let api: ApiServer;
let kubevirt: KubeVirtSimulator;
let proxy: Recorder;
let tmp: string;
let kubeconfigs: Record<ServiceAccountRole, string>;
let dist: string;
let built: Built;
const savedKubeconfig = process.env.KUBECONFIG;

function put(resource: string, obj: KubeObject): void {
  if (!api.store.get(resource, obj.metadata.namespace, obj.metadata.name!)) api.store.create(resource, obj);
}

beforeAll(async () => {
  dist = await copyDist();
  built = await build(dist, TEST_VALUES);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "kvi-rbac-"));
  api = await startApiServer({
    tokens: (Object.keys(TOKENS) as ServiceAccountRole[]).map(account => ({ token: TOKENS[account], user: serviceAccountUser(SERVICE_ACCOUNTS[account]) })),
  });
  kubevirt = startKubeVirtSimulator(api, { stepDelayMs: 20 });
  proxy = await startRecordingProxy(api.url);
  kubeconfigs = { admission: path.join(tmp, "kubeconfig-admission"), watcher: path.join(tmp, "kubeconfig-watcher") };
  for (const account of Object.keys(TOKENS) as ServiceAccountRole[]) writeKubeconfig(kubeconfigs[account], proxy.url, TOKENS[account]);
  for (const ns of [MODULE_NAMESPACE, NS]) put("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
  // The sandbox authorizes token users by RBAC over its store: install the built manifest's rules, so every call
  // below is also judged by a real authorizer.
  const rbacResources: Record<string, string> = {
    ClusterRole: "clusterroles.rbac.authorization.k8s.io",
    ClusterRoleBinding: "clusterrolebindings.rbac.authorization.k8s.io",
    Role: "roles.rbac.authorization.k8s.io",
    RoleBinding: "rolebindings.rbac.authorization.k8s.io",
  };
  for (const obj of built.objects.filter(o => rbacResources[o.kind])) put(rbacResources[obj.kind], obj as KubeObject);
  put("nodes", { apiVersion: "v1", kind: "Node", metadata: { name: "worker-0" } });
  put("virtualmachines.kubevirt.io", {
    apiVersion: "kubevirt.io/v1",
    kind: "VirtualMachine",
    metadata: { name: "vm-1", namespace: NS },
    spec: { runStrategy: "Halted", template: { spec: { domain: { devices: {} } } } },
  });
});

afterAll(async () => {
  process.env.KUBECONFIG = savedKubeconfig;
  await proxy?.close();
  kubevirt?.stop();
  await api?.close();
  removeDir(tmp);
  removeDir(dist);
});

// ---- the gateway ------------------------------------------------------------------------------------------

describe("the gateway's permission table", () => {
  it("has exactly one entry per exported gateway function", () => {
    const functions = Object.entries(gateway)
      .filter(([, v]) => isPlainFunction(v))
      .map(([k]) => k)
      .sort();
    expect(Object.keys(gatewayPermissions).sort(), "scripts/deploy/permissions.ts must list every gateway function").toEqual(functions);
  });

  it("lists every caller of a function whose grant is limited to names or to pepr-system", () => {
    const restricted = Object.entries(gatewayPermissions).filter(([, p]) =>
      p.grants.some(g => g.scope === "module" || g.resourceNames || g.resourceNamesFrom),
    );
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const entry of fs.readdirSync(path.join(REPO, dir), { withFileTypes: true })) {
        const rel = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(rel);
        else if (rel.endsWith(".ts")) files.push(rel);
      }
    };
    ["capabilities", "redfish"].forEach(walk);
    files.push("pepr.ts");
    const importsOf = (file: string): string[] => {
      const text = fs.readFileSync(path.join(REPO, file), "utf8");
      return [...text.matchAll(/import\s*(?:type\s*)?\{([^}]*)\}\s*from\s*["'][^"']*common\/gateway["']/g)].flatMap(m =>
        m[1].split(",").map(s => s.trim().split(/\s+as\s+/)[0].replace(/^type\s+/, "")),
      );
    };
    const unreviewed: string[] = [];
    for (const [fn, permission] of restricted) {
      for (const file of files.filter(f => f !== "capabilities/common/gateway.ts" && importsOf(f).includes(fn))) {
        if (!(permission.callers ?? []).includes(file)) unreviewed.push(`${fn} is called from ${file}: check the names it passes, then add it to callers`);
      }
    }
    expect(unreviewed).toEqual([]);
  });

  const exercises: Record<string, (() => Promise<unknown>)[]> = {
    recordEvent: [() => gateway.recordEvent({ apiVersion: "v1", kind: "Node", metadata: { name: "worker-0", uid: "u1" } }, "Normal", "Test", "exercised")],
    applyConfigMap: [() => gateway.applyConfigMap(AUDIT_CONFIGMAP.namespace, AUDIT_CONFIGMAP.name, { "summary.txt": "ok" })],
    patchNode: [() => gateway.patchNode("worker-0", [{ op: "add", path: "/metadata/annotations", value: { "example.com/x": "y" } }])],
    readSecretKey: [
      () => gateway.readSecretKey(MODULE_NAMESPACE, "infra-kubeconfig", "kubeconfig"),
      () => gateway.readSecretKey(MODULE_NAMESPACE, "kubevirt-infra-redfish-tls", "tls.crt"),
    ],
    setPeprStoreData: [
      async () => {
        put("peprstores.pepr.dev", { apiVersion: "pepr.dev/v1", kind: "PeprStore", metadata: { name: PEPR_STORE.name, namespace: PEPR_STORE.namespace }, data: {} });
        await gateway.setPeprStoreData(PEPR_STORE, "module-config-v2-test", "value");
      },
    ],
    startVirtualMachine: [
      async () => {
        await gateway.startVirtualMachine(NS, "vm-1");
        const phase = () => (api.store.get("virtualmachineinstances.kubevirt.io", NS, "vm-1")?.status as { phase?: string } | undefined)?.phase;
        await vi.waitFor(() => expect(phase(), "the VMI to run").toBe("Running"), { timeout: 20_000, interval: 100 });
      },
    ],
    putVirtualMachineInstanceAction: (["pause", "unpause", "softreboot", "reset"] as const).map(action => () => gateway.putVirtualMachineInstanceAction(NS, "vm-1", action)),
    createDataVolume: [
      () =>
        gateway.createDataVolume({
          apiVersion: "cdi.kubevirt.io/v1beta1",
          kind: "DataVolume",
          metadata: { name: "iso-exercise", namespace: NS },
          spec: { source: { http: { url: "https://images.example.com/x.iso" } }, storage: { resources: { requests: { storage: "1Gi" } } } },
        }),
    ],
    deleteDataVolume: [() => gateway.deleteDataVolume(NS, "iso-exercise")],
    createSecret: [
      () => gateway.createSecret({ apiVersion: "v1", kind: "Secret", metadata: { name: "iso-credentials", namespace: NS }, stringData: { accessKeyId: "u", secretKey: "p" } }),
    ],
    writeEventSubscriptions: [() => gateway.writeEventSubscriptions(MODULE_NAMESPACE, { "subscription-exercise": "{}" })],
    readEventSubscriptions: [() => gateway.readEventSubscriptions(MODULE_NAMESPACE)],
    createTokenReview: [() => gateway.createTokenReview("a-token-nobody-has", ["https://kubernetes.default.svc.cluster.local"])],
    createSubjectAccessReview: [
      () => gateway.createSubjectAccessReview({ username: "system:serviceaccount:tenant1-vms:bmc", groups: ["system:serviceaccounts"] }, { namespace: NS, verb: "get", group: "kubevirt.io", resource: "virtualmachines" }),
    ],
    readVirtualMachine: [() => gateway.readVirtualMachine(NS, "vm-1")],
    readVirtualMachineInstance: [() => gateway.readVirtualMachineInstance(NS, "vm-1")],
    patchVirtualMachine: [() => gateway.patchVirtualMachine(NS, "vm-1", [{ op: "add", path: "/metadata/labels", value: { exercised: "true" } }])],
    restartVirtualMachine: [() => gateway.restartVirtualMachine(NS, "vm-1", { gracePeriodSeconds: 0 })],
    stopVirtualMachine: [() => gateway.stopVirtualMachine(NS, "vm-1", { gracePeriod: 0 })],
  };

  const observedByGateway: Call[] = [];

  it("makes, for each function, exactly the calls its entry declares", async () => {
    // The gateway runs in the watcher.
    process.env.KUBECONFIG = kubeconfigs.watcher;
    const problems: string[] = [];
    for (const [fn, permission] of Object.entries(gatewayPermissions)) {
      const scenarios = exercises[fn];
      if (!scenarios) {
        problems.push(`${fn}: no exercise in test/deploy/rbac.test.ts`);
        continue;
      }
      const seen: Call[] = [];
      for (const scenario of scenarios) {
        proxy.calls.length = 0;
        try {
          await scenario();
        } catch (error) {
          // A refused action (e.g. pausing a VMI that is rebooting) still shows the call and its verb.
          if (!proxy.calls.length) problems.push(`${fn}: failed before calling the API: ${error instanceof Error ? error.message : String(error)}`);
        }
        seen.push(...proxy.calls.splice(0));
      }
      observedByGateway.push(...seen);
      for (const call of seen) {
        // Not found / conflict are answers about the objects; these would mean the call itself was refused.
        if (call.status === undefined || call.status === 401 || call.status === 403 || call.status >= 500) {
          problems.push(`${fn}: ${describeCall(call)} was answered ${call.status ?? "never"}`);
        }
        if (!permission.grants.some(g => grantAllows(g, call))) problems.push(`${fn}: ${describeCall(call)} is not declared`);
      }
      for (const grant of permission.grants) {
        for (const verb of grant.verbs) {
          if (!seen.some(c => grantAllows({ ...grant, verbs: [verb] }, c))) problems.push(`${fn}: declares ${verb} on ${grant.group || "core"}/${grant.resource} but never used it`);
        }
      }
    }
    process.env.KUBECONFIG = savedKubeconfig;
    expect(problems).toEqual([]);
  });

  it("is allowed by the watcher's built ClusterRole and Roles", () => {
    const perms = builtPermissions(built, "watcher");
    expect(observedByGateway.length).toBeGreaterThan(0);
    expect(observedByGateway.every(c => c.account === "watcher")).toBe(true);
    expect(observedByGateway.filter(c => !allowedBy(perms, c)).map(describeCall)).toEqual([]);
  });

  // ---- the built module ---------------------------------------------------------------------------------

  it("runs the built module with every capability configured: each call is allowed, and each grant is used", async () => {
    // A fresh cluster: Pepr creates its Store itself (the gateway exercise created one).
    if (api.store.get("peprstores.pepr.dev", PEPR_STORE.namespace, PEPR_STORE.name)) api.store.delete("peprstores.pepr.dev", PEPR_STORE.namespace, PEPR_STORE.name);
    const { authentication, deploy: _deploy, ...config } = TEST_VALUES as Record<string, any>;
    const { users, ...auth } = authentication;
    put("configmaps", {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "kubevirt-infra-config", namespace: MODULE_NAMESPACE },
      data: { "config.yaml": YAML.stringify({ ...config, authentication: auth }) },
    });
    put("secrets", {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "kubevirt-infra-users", namespace: MODULE_NAMESPACE },
      type: "Opaque",
      data: { "users.yaml": Buffer.from(YAML.stringify(users)).toString("base64") },
    });
    const ca = createCertificateAuthority("rbac test CA");
    const pair = issueServerCertificate(ca, { commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
    fs.writeFileSync(path.join(tmp, "tls.key"), pair.keyPem, { mode: 0o600 });
    fs.writeFileSync(path.join(tmp, "tls.crt"), pair.certPem);
    const apiPath = /\/validate\/([0-9a-f]+)/.exec(JSON.stringify(built.objects))?.[1] ?? "x";

    const perms = { admission: builtPermissions(built, "admission"), watcher: builtPermissions(built, "watcher") };
    // Every granted permission was needed by the account that holds it. Pepr's controller.js (not run here: the
    // test runs the bundle directly) applies the PeprStore CRD at start-up; that grant cannot be observed.
    const unobservable = new Set([
      permissionKey("apiextensions.k8s.io", "customresourcedefinitions", "create", "peprstores.pepr.dev"),
      permissionKey("apiextensions.k8s.io", "customresourcedefinitions", "patch", "peprstores.pepr.dev"),
    ]);
    // Pepr's Store grants are held by both accounts, and whichever pod starts first creates the PeprStores: such a
    // grant counts as used when either account used it.
    const unusedGrants = (moduleCalls: Call[]): string[] => {
      const usedBy = { admission: new Set<string | undefined>(), watcher: new Set<string | undefined>() };
      for (const account of ["admission", "watcher"] as const) {
        const calls = [...(account === "watcher" ? observedByGateway : []), ...moduleCalls.filter(c => c.account === account)];
        calls.forEach(c => usedBy[account].add(allowedBy(perms[account], c)));
      }
      const unused: string[] = [];
      for (const account of ["admission", "watcher"] as const) {
        const other = account === "admission" ? "watcher" : "admission";
        const held = allPermissionsOf(perms[account]);
        const sharedAndUsed = (p: string) => allPermissionsOf(perms[other]).includes(p) && usedBy[other].has(p);
        unused.push(...held.filter(p => !usedBy[account].has(p) && !sharedAndUsed(p) && !unobservable.has(p)).map(p => `${account}: ${p}`));
      }
      return unused;
    };

    proxy.calls.length = 0;
    const processes: ModuleProcess[] = [];
    try {
      for (const role of ["admission", "watcher"] as const) {
        processes.push(
          startModuleProcess({
            role,
            kubeconfig: kubeconfigs[role],
            port: await freePort(),
            tlsKeyPath: path.join(tmp, "tls.key"),
            tlsCertPath: path.join(tmp, "tls.crt"),
            apiPath,
            env: { REDFISH_PORT: String(await freePort()), LOG_LEVEL: "warn" },
          }),
        );
      }
      // The watcher has started every Watch binding: a watch request per watched kind.
      const capabilities = await loadBuiltCapabilities(path.join(dist, `pepr-${UUID}.js`));
      const watched = capabilities.flatMap(c => c.bindings.filter(b => b.isWatch).map(b => b.kind.plural ?? `${b.kind.kind.toLowerCase()}s`));
      await expect
        .poll(() => watched.filter(r => !proxy.calls.some(c => c.verb === "watch" && c.resource === r)), { timeout: 45_000, interval: 100, message: "resources not watched yet" })
        .toEqual([]);
      // The watcher's informers of the tenant kinds watch the chassis / policed namespace (their Roles allow it).
      const informed = ["virtualmachines", "virtualmachineinstances", "datavolumes"];
      await expect
        .poll(() => informed.filter(r => !proxy.calls.some(c => c.verb === "watch" && c.resource === r && c.namespace === NS && c.status === 200)), {
          timeout: 45_000,
          interval: 200,
          message: "tenant kinds not watched in their namespace yet",
        })
        .toEqual([]);
      // ...and, while it runs, uses every grant (the module's first writes come a moment after its watches).
      await expect.poll(() => unusedGrants(proxy.calls), { timeout: 30_000, interval: 200, message: "granted but not used yet" }).toEqual([]);
    } finally {
      await Promise.all(processes.map(p => p.stop()));
    }
    const observedByModule = proxy.calls.splice(0);
    // No cluster-wide call on tenant resources: the informers list and watch per namespace.
    const tenantKinds = new Set(["virtualmachines", "virtualmachineinstances", "datavolumes", "secrets"]);
    expect(observedByModule.filter(c => tenantKinds.has(c.resource) && !c.namespace).map(describeCall), "cluster-wide calls on tenant resources").toEqual([]);
    expect(observedByModule.filter(c => c.account === undefined).map(describeCall), "calls without a module token").toEqual([]);
    for (const account of ["admission", "watcher"] as const) {
      const denied = observedByModule.filter(c => c.account === account && !allowedBy(perms[account], c)).map(describeCall);
      expect(denied, `calls of the ${account} the built RBAC would deny`).toEqual([]);
    }
    expect(unusedGrants(observedByModule), "granted but never used").toEqual([]);
  });

  it("gives the admission pods their own ServiceAccount, which cannot read the users Secret or the Redfish TLS key", () => {
    const admissionDeployment = built.get("Deployment", NAME).spec as any;
    const watcherDeployment = built.get("Deployment", `${NAME}-watcher`).spec as any;
    expect(admissionDeployment.template.spec.serviceAccountName).toBe(SERVICE_ACCOUNTS.admission);
    expect(watcherDeployment.template.spec.serviceAccountName).toBe(SERVICE_ACCOUNTS.watcher);
    expect(built.get("ServiceAccount", SERVICE_ACCOUNTS.watcher).metadata.namespace).toBe(MODULE_NAMESPACE);
    // The DataVolume policy exempts exactly this account's writes.
    expect(MODULE_REQUESTERS.has(`system:serviceaccount:${MODULE_NAMESPACE}:${SERVICE_ACCOUNTS.watcher}`)).toBe(true);

    const admission = allPermissionsOf(builtPermissions(built, "admission"));
    expect(admission.filter(p => /core\/secrets:/.test(p)), "admission rights on Secrets").toEqual([]);
    const watcher = allPermissionsOf(builtPermissions(built, "watcher"));
    // The watcher reads the users Secret through its informer: list + watch of that one Secret, by name.
    // (A `list` of every Secret in pepr-system, for the event subscriptions, covers the named list.)
    expect(watcher).toContain(`${MODULE_NAMESPACE}|${permissionKey("", "secrets", "watch", "kubevirt-infra-users")}`);
    expect(watcher.filter(p => p.startsWith(`${MODULE_NAMESPACE}|core/secrets:list@`))).not.toEqual([]);
  });

  it("has no cluster-wide rule on VMs, VMIs, DataVolumes or Secrets: Roles in the chassis and policed namespaces", () => {
    expect(TEST_CONFIG.chassis.length).toBeGreaterThan(0);
    const tenantResources = /^(kubevirt\.io\/virtualmachines|kubevirt\.io\/virtualmachineinstances|subresources\.kubevirt\.io\/.*|cdi\.kubevirt\.io\/datavolumes|core\/secrets):/;
    for (const account of ["admission", "watcher"] as const) {
      const clusterWide = [...builtPermissions(built, account).cluster].filter(p => tenantResources.test(p));
      expect(clusterWide, `${account}: cluster-wide rights on tenant resources`).toEqual([]);
    }
    for (const role of built.objects.filter(o => o.kind === "ClusterRole")) {
      const tenantRules = (role.rules as PolicyRule[]).filter(r => r.resources.some(res => tenantResources.test(`${r.apiGroups[0] || "core"}/${res}:`)));
      expect(tenantRules, `ClusterRole ${role.metadata.name}`).toEqual([]);
    }
    // tenant1-vms is a chassis namespace and the policed one: Redfish's Role and the audit's.
    expect(POLICED_NAMESPACES).toEqual(new Set([NS]));
    const inNamespace = built.objects.filter(o => o.kind === "Role" && o.metadata.namespace === NS);
    expect(inNamespace.map(o => o.metadata.name)).toEqual([SERVICE_ACCOUNTS.watcher, `${SERVICE_ACCOUNTS.watcher}-datavolume-audit`]);
    const chassisPerms = permissionsOf(inNamespace.find(o => o.metadata.name === SERVICE_ACCOUNTS.watcher)!.rules as PolicyRule[]);
    for (const expected of [
      permissionKey("kubevirt.io", "virtualmachines", "list"),
      permissionKey("kubevirt.io", "virtualmachines", "watch"),
      permissionKey("kubevirt.io", "virtualmachines", "patch"),
      permissionKey("kubevirt.io", "virtualmachineinstances", "watch"),
      permissionKey("subresources.kubevirt.io", "virtualmachines/start", "update"),
      permissionKey("subresources.kubevirt.io", "virtualmachineinstances/pause", "update"),
      permissionKey("cdi.kubevirt.io", "datavolumes", "watch"),
      permissionKey("cdi.kubevirt.io", "datavolumes", "create"),
      permissionKey("cdi.kubevirt.io", "datavolumes", "delete"),
      permissionKey("", "secrets", "create"),
    ]) {
      expect(chassisPerms.has(expected), `${expected} in ${NS}`).toBe(true);
    }
    const auditRole = inNamespace.find(o => o.metadata.name.endsWith("-datavolume-audit"))!;
    expect([...permissionsOf(auditRole.rules as PolicyRule[])].sort()).toEqual([
      permissionKey("cdi.kubevirt.io", "datavolumes", "list"),
      permissionKey("cdi.kubevirt.io", "datavolumes", "watch"),
    ]);
  });

  it("renders the audit's Roles in the policed namespaces only, and no tenant-kind Role without chassis or policy", async () => {
    const d = await copyDist();
    try {
      const policedElsewhere = await build(d, { ...TEST_VALUES, datavolumePolicy: { enabled: true, namespaces: ["tenant2-vms", "tenant3-vms"] } });
      const roles = policedElsewhere.objects.filter(o => o.kind === "Role" && o.metadata.namespace !== MODULE_NAMESPACE);
      expect(roles.map(o => `${o.metadata.namespace}/${o.metadata.name}`).sort()).toEqual([
        `tenant1-vms/${SERVICE_ACCOUNTS.watcher}`,
        `tenant2-vms/${SERVICE_ACCOUNTS.watcher}-datavolume-audit`,
        `tenant3-vms/${SERVICE_ACCOUNTS.watcher}-datavolume-audit`,
      ]);
      const bare = await build(d, { role: "infra" });
      expect(bare.objects.filter(o => o.kind === "Role" && o.metadata.namespace !== MODULE_NAMESPACE)).toEqual([]);
      const tenantRules = (o: ManifestObject) =>
        (o.rules as PolicyRule[]).filter(r => r.resources.some(res => ["virtualmachines", "virtualmachineinstances", "datavolumes"].includes(res)));
      expect(bare.objects.filter(o => o.kind === "ClusterRole").flatMap(tenantRules)).toEqual([]);
    } finally {
      removeDir(d);
    }
  });

  it("binds the watcher's rules to Pepr's one ServiceAccount in the extras for `npx pepr deploy`", () => {
    const extras = parseManifest(fs.readFileSync(path.join(dist, `${UUID}-extras.yaml`), "utf8"), "extras");
    const subjects = extras.flatMap(o => (o.subjects as { name: string }[] | undefined) ?? []).map(s => s.name);
    expect(subjects.length).toBeGreaterThan(0);
    expect(new Set(subjects)).toEqual(new Set([NAME]));
    expect(extras.find(o => o.kind === "Role" && o.metadata.namespace === NS)?.metadata.name).toBe(SERVICE_ACCOUNTS.watcher);
    expect(extras.some(o => o.kind === "ServiceAccount")).toBe(false);
  });

  it("has no wildcard in any rule", () => {
    for (const kind of ["ClusterRole", "Role"]) {
      for (const obj of built.objects.filter(o => o.kind === kind)) {
        expect((obj.rules as PolicyRule[]).filter(hasWildcard)).toEqual([]);
      }
    }
  });
});
