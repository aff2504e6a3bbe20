// The sandbox cluster: the in-process API server, the KubeVirt and CDI simulators, a local image server and
// the BUILT module as real processes (admission server + watcher), wired like a real cluster wires them:
// the webhook configurations (and, with `rbac`, the RBAC objects) are rendered for the config the sandbox
// applies, exactly as `npm run build -- --values` / the chart renders them from the same values, with the
// service reference replaced by the admission process's loopback URL and its CA. applyConfig re-renders
// them, like a `helm upgrade`; a config the module would refuse keeps the previous rendering.
//
// API (used by scripts/start.ts and the end-to-end tests in test/):
//   const c = await startSandboxCluster({ module: true, demo: true });
//   c.api.url, c.kubeconfig, c.redfishUrl, c.isoServer.url, c.admission / c.watcher (logs, waitForLog)
//   await c.applyConfig({ ...module config... }, users?)   // writes the ConfigMap / Secret (and re-renders)
//   await c.stop()
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes, randomUUID } from "node:crypto";
import YAML from "yaml";
import { z } from "zod";
import { startApiServer, type ApiServer } from "./apiserver";
import type { KubeObject, UserInfo } from "./apiserver/types";
import { startKubeVirtSimulator, startCdiSimulator } from "./simulators";
import { startIsoServer, type IsoServer } from "./iso-server";
import { startModuleProcess, waitForHttps, MODULE_DIST, type ModuleProcess } from "./module-process";
import { freePort } from "./ports";
import { createCertificateAuthority, issueServerCertificate } from "../capabilities/common/tls";
import { renderDeployment } from "../scripts/post-build";

export const MODULE_NAMESPACE = "pepr-system";
export const CONFIG_MAP_NAME = "kubevirt-infra-config";
export const USERS_SECRET_NAME = "kubevirt-infra-users";
const CONFIG_IN_FORCE_TIMEOUT_MS = 60_000;

/** A module log line (JSON) saying that the ConfigMap at `resourceVersion` was applied or refused. */
function configLogLine(resourceVersion: string, outcomes: "applied" | "applied|refused"): RegExp {
  return new RegExp(`^(?=.*"configMapResourceVersion":"${resourceVersion}")(?=.*"msg":"config (${outcomes})\\b)`);
}

export interface SandboxClusterOptions {
  /** Start the built module (admission + watcher processes). Default true. */
  module?: boolean;
  /** Which module processes to start, when module is true. Default both. */
  processes?: ("admission" | "watcher")[];
  /** Module config (ConfigMap config.yaml) and users (Secret users.yaml) applied before the module starts. */
  config?: Record<string, unknown>;
  users?: Record<string, unknown>[];
  /** Seed the demo data of `npm start` (namespaces, VMs, Nodes, config, users). */
  demo?: boolean;
  apiPort?: number;
  redfishPort?: number;
  /** Where kubeconfig, TLS material and the demo files go. Default: a fresh temp dir. */
  stateDir?: string;
  /** Static tokens for the API server: identities for admission userInfo, authorized by RBAC (bind them to roles). */
  tokens?: { token: string; user: UserInfo }[];
  kubevirt?: { stepDelayMs?: number };
  iso?: { sizeBytes?: number; slowChunkIntervalMs?: number };
  /** Extra environment for the module processes. */
  moduleEnv?: Record<string, string>;
  /**
   * Run each module process as the ServiceAccount its Deployment uses in the generated manifest, with the
   * manifest's Roles, ClusterRoles and bindings applied and enforced (a 403 then means the chart lacks a rule).
   * Default false: the module talks to the API server as system:admin.
   */
  rbac?: boolean;
  onLog?: (line: string, source: string) => void;
}

export interface SandboxCluster {
  api: ApiServer;
  kubeconfig: string;
  stateDir: string;
  isoServer: IsoServer;
  admission?: ModuleProcess;
  watcher?: ModuleProcess;
  redfishPort: number;
  redfishUrl: string;
  /** PEM of the CA that signed the admission server's certificate (and the demo Redfish certificate). */
  caPem: string;
  simulators: { kubevirt: ReturnType<typeof startKubeVirtSimulator>; cdi: ReturnType<typeof startCdiSimulator> };
  applyConfig(config: Record<string, unknown> | undefined, users?: Record<string, unknown>[]): Promise<void>;
  startModule(which?: ("admission" | "watcher")[]): Promise<void>;
  stopModule(which?: ("admission" | "watcher")[]): Promise<void>;
  stop(): Promise<void>;
}

function upsert(api: ApiServer, resource: string, obj: KubeObject): KubeObject {
  const existing = api.store.get(resource, obj.metadata.namespace, obj.metadata.name!);
  if (!existing) return api.store.create(resource, obj);
  return api.store.update(resource, { ...obj, metadata: { ...obj.metadata, resourceVersion: existing.metadata.resourceVersion } });
}

export function ensureNamespace(api: ApiServer, name: string, labels: Record<string, string> = {}): void {
  if (!api.store.get("namespaces", undefined, name)) {
    api.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name, labels } });
  }
}

const RBAC_KINDS: Record<string, string> = {
  ServiceAccount: "serviceaccounts",
  Role: "roles.rbac.authorization.k8s.io",
  ClusterRole: "clusterroles.rbac.authorization.k8s.io",
  RoleBinding: "rolebindings.rbac.authorization.k8s.io",
  ClusterRoleBinding: "clusterrolebindings.rbac.authorization.k8s.io",
};
const WEBHOOK_KINDS: Record<string, string> = {
  MutatingWebhookConfiguration: "mutatingwebhookconfigurations.admissionregistration.k8s.io",
  ValidatingWebhookConfiguration: "validatingwebhookconfigurations.admissionregistration.k8s.io",
};

const deploymentSchema = z.object({
  metadata: z.object({ namespace: z.string().default("default"), labels: z.record(z.string(), z.string()).default({}) }),
  spec: z.object({
    template: z.object({
      spec: z.object({
        serviceAccountName: z.string().default("default"),
        containers: z.array(z.object({ env: z.array(z.object({ name: z.string(), value: z.string().optional() })).default([]) })).default([]),
      }),
    }),
  }),
});

/** Variables of a Deployment's container that shape the Node process itself (the sandbox sets Pepr's own). */
const PROCESS_VARIABLES = new Set(["NODE_OPTIONS", "MALLOC_ARENA_MAX"]);
const apiPathSecretSchema = z.object({ data: z.object({ value: z.string() }) });

type ModuleRole = "admission" | "watcher";

/** Per Deployment (`pepr.dev/controller: admission|watcher`), the ServiceAccount it runs as. */
function deploymentAccounts(docs: KubeObject[]): Partial<Record<ModuleRole, { namespace: string; name: string }>> {
  const accounts: Partial<Record<ModuleRole, { namespace: string; name: string }>> = {};
  for (const doc of docs) {
    if (doc.kind !== "Deployment") continue;
    const d = deploymentSchema.parse(doc);
    const role = d.metadata.labels["pepr.dev/controller"];
    if (role === "admission" || role === "watcher") accounts[role] = { namespace: d.metadata.namespace, name: d.spec.template.spec.serviceAccountName };
  }
  return accounts;
}

/** Per Deployment, the process settings of its container (NODE_OPTIONS, MALLOC_ARENA_MAX), so the sandbox runs the same process. */
function deploymentProcessEnv(docs: KubeObject[]): Partial<Record<ModuleRole, Record<string, string>>> {
  const envs: Partial<Record<ModuleRole, Record<string, string>>> = {};
  for (const doc of docs) {
    if (doc.kind !== "Deployment") continue;
    const d = deploymentSchema.parse(doc);
    const role = d.metadata.labels["pepr.dev/controller"];
    if (role !== "admission" && role !== "watcher") continue;
    const env = d.spec.template.spec.containers[0]?.env ?? [];
    envs[role] = Object.fromEntries(env.filter(e => PROCESS_VARIABLES.has(e.name) && e.value !== undefined).map(e => [e.name, e.value!]));
  }
  return envs;
}

/** `extra` over `base`; NODE_OPTIONS of both are joined (a bench's profiler preload beside the Deployment's options). */
export function processEnv(base: Record<string, string>, extra: Record<string, string>): Record<string, string> {
  const nodeOptions = [base.NODE_OPTIONS, extra.NODE_OPTIONS].filter(Boolean).join(" ");
  return { ...base, ...extra, ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}) };
}

/** The secret path segment Pepr serves /mutate/<path> and /validate/<path> under (its `<name>-api-path` Secret). */
function admissionApiPath(docs: KubeObject[]): string {
  const secret = docs.find(d => d.kind === "Secret" && d.metadata.name?.endsWith("-api-path"));
  if (!secret) throw new Error("the rendered deployment has no <module>-api-path Secret");
  return Buffer.from(apiPathSecretSchema.parse(secret).data.value, "base64").toString("utf8");
}

/** Webhook configurations pointed at the local admission process instead of the in-cluster Service. */
function localWebhooks(docs: KubeObject[], admissionPort: number, caPem: string): KubeObject[] {
  return docs
    .filter(d => d.kind in WEBHOOK_KINDS)
    .map(doc => {
      const copy = structuredClone(doc);
      for (const hook of (copy.webhooks as { clientConfig: { service?: { path?: string }; url?: string; caBundle?: string } }[]) ?? []) {
        hook.clientConfig = { url: `https://127.0.0.1:${admissionPort}${hook.clientConfig.service?.path ?? ""}`, caBundle: Buffer.from(caPem).toString("base64") };
      }
      return copy;
    });
}

/** The values a `helm install/upgrade` would get for this config: the config keys (users live in their Secret). */
function valuesFor(config: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!config) return {};
  const { authentication, ...rest } = config as { authentication?: Record<string, unknown> };
  if (!authentication) return rest;
  const { users: _users, ...auth } = authentication;
  return { ...rest, authentication: auth };
}

export async function startSandboxCluster(opts: SandboxClusterOptions = {}): Promise<SandboxCluster> {
  const stateDir = opts.stateDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "kubevirt-infra-sandbox-"));
  fs.mkdirSync(stateDir, { recursive: true });
  const log = opts.onLog ?? (() => undefined);

  const api = await startApiServer({ port: opts.apiPort ?? 0, tokens: opts.tokens, log: line => log(line, "apiserver") });
  const kubeconfig = path.join(stateDir, "kubeconfig");
  await api.writeKubeconfig(kubeconfig);
  const kubevirt = startKubeVirtSimulator(api, { stepDelayMs: opts.kubevirt?.stepDelayMs });
  const cdi = startCdiSimulator(api);
  const isoServer = await startIsoServer(opts.iso);

  // TLS: one local CA signs the admission server (webhook caBundle) and the Redfish server certificates.
  const ca = createCertificateAuthority("kubevirt-infra sandbox CA");
  const serverCert = issueServerCertificate(ca, {
    commonName: "localhost",
    dnsNames: ["localhost", "pepr-kubevirt-infra.pepr-system.svc"],
    ipAddresses: ["127.0.0.1"],
  });
  const tlsKeyPath = path.join(stateDir, "tls.key");
  const tlsCertPath = path.join(stateDir, "tls.crt");
  fs.writeFileSync(tlsKeyPath, serverCert.keyPem, { mode: 0o600 });
  fs.writeFileSync(tlsCertPath, serverCert.certPem);
  fs.writeFileSync(path.join(stateDir, "ca.crt"), ca.certPem);

  ensureNamespace(api, MODULE_NAMESPACE);
  // The Redfish server reads its certificate from this Secret, as it would from a cert-manager Secret.
  upsert(api, "secrets", {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "kubevirt-infra-redfish-tls", namespace: MODULE_NAMESPACE },
    type: "kubernetes.io/tls",
    data: {
      "tls.crt": Buffer.from(serverCert.certPem).toString("base64"),
      "tls.key": Buffer.from(serverCert.keyPem).toString("base64"),
    },
  });

  const redfishPort = opts.redfishPort || (await freePort()); // 0 = any free port
  const ports = { admission: await freePort(), watcher: await freePort() };
  const withModule = opts.module !== false;
  const initialConfig = opts.demo ? { ...(await import("./demo")).demoConfig, ...(opts.config ?? {}) } : opts.config;
  // The module's objects (webhooks; with rbac, RBAC) rendered for the config, as the chart renders them from the
  // same values; an invalid config (a test of the module's refusal) gets the defaults' rendering.
  const render = async (config: Record<string, unknown> | undefined): Promise<KubeObject[] | undefined> => {
    try {
      return await renderDeployment(MODULE_DIST, valuesFor(config), "sandbox config");
    } catch (error) {
      log(`module objects not re-rendered for this config (${error instanceof Error ? error.message.split("\n")[0] : String(error)})`, "sandbox");
      return undefined;
    }
  };
  const firstRendering = withModule ? ((await render(initialConfig)) ?? (await renderDeployment(MODULE_DIST, {}, "defaults"))) : [];
  const apiPath = withModule ? admissionApiPath(firstRendering) : "";
  const processEnvs = deploymentProcessEnv(firstRendering);
  const installed = new Map<string, KubeObject>();
  /** Installs what a rendering holds and removes what the previous one held that this one does not (helm upgrade). */
  const installModuleObjects = (docs: KubeObject[]): void => {
    const wanted = [...localWebhooks(docs, ports.admission, ca.certPem), ...(opts.rbac ? docs.filter(d => d.kind in RBAC_KINDS) : [])];
    const keyOf = (o: KubeObject) => `${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`;
    const resourceOf = (o: KubeObject) => WEBHOOK_KINDS[o.kind] ?? RBAC_KINDS[o.kind];
    const keep = new Set(wanted.map(keyOf));
    for (const [key, old] of installed) {
      if (keep.has(key)) continue;
      if (api.store.get(resourceOf(old), old.metadata.namespace, old.metadata.name!)) api.store.delete(resourceOf(old), old.metadata.namespace, old.metadata.name!);
      installed.delete(key);
    }
    for (const obj of wanted) {
      if (obj.metadata.namespace) ensureNamespace(api, obj.metadata.namespace);
      upsert(api, resourceOf(obj), obj);
      installed.set(keyOf(obj), obj);
    }
  };
  // Each process's kubeconfig: the cluster admin's, or (rbac) a token of the ServiceAccount its Deployment uses.
  const kubeconfigs: Record<ModuleRole, string> = { admission: kubeconfig, watcher: kubeconfig };
  if (opts.rbac && withModule) {
    const accounts = deploymentAccounts(firstRendering);
    for (const role of ["admission", "watcher"] as const) {
      const account = accounts[role];
      if (!account) throw new Error(`the rendered deployment has no ${role} Deployment (label pepr.dev/controller: ${role})`);
      const token = randomBytes(24).toString("base64url");
      api.addToken(token, {
        username: `system:serviceaccount:${account.namespace}:${account.name}`,
        uid: randomUUID(),
        groups: ["system:serviceaccounts", `system:serviceaccounts:${account.namespace}`, "system:authenticated"],
      });
      kubeconfigs[role] = path.join(stateDir, `kubeconfig-${role}`);
      await api.writeKubeconfig(kubeconfigs[role], { token });
    }
  }
  const processes: Partial<Record<"admission" | "watcher", ModuleProcess>> = {};

  const applyConfig: SandboxCluster["applyConfig"] = async (config, users) => {
    if (withModule && config !== undefined) {
      const rendering = await render(config);
      if (rendering) installModuleObjects(rendering);
    }
    if (config === undefined) {
      if (api.store.get("configmaps", MODULE_NAMESPACE, CONFIG_MAP_NAME)) api.store.delete("configmaps", MODULE_NAMESPACE, CONFIG_MAP_NAME);
    } else {
      upsert(api, "configmaps", {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: CONFIG_MAP_NAME, namespace: MODULE_NAMESPACE },
        data: { "config.yaml": YAML.stringify(config) },
      });
    }
    if (users) {
      upsert(api, "secrets", {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: USERS_SECRET_NAME, namespace: MODULE_NAMESPACE },
        type: "Opaque",
        data: { "users.yaml": Buffer.from(YAML.stringify(users)).toString("base64") },
      });
    }
  };

  if (withModule) installModuleObjects(firstRendering);
  if (opts.demo) {
    const { seedDemo, demoUsers } = await import("./demo");
    seedDemo(api, { isoUrl: `${isoServer.url}/images/demo.iso` });
    await applyConfig(initialConfig, opts.users ?? demoUsers);
  } else if (opts.config || opts.users) {
    await applyConfig(opts.config ?? {}, opts.users);
  }

  const startModule = async (which: ("admission" | "watcher")[] = opts.processes ?? ["admission", "watcher"]): Promise<void> => {
    if (!withModule) throw new Error("the sandbox was started with module: false");
    for (const role of which) {
      if (processes[role]) continue;
      processes[role] = startModuleProcess({
        role,
        kubeconfig: kubeconfigs[role],
        port: ports[role],
        tlsKeyPath,
        tlsCertPath,
        apiPath,
        env: processEnv(processEnvs[role] ?? {}, { REDFISH_PORT: String(redfishPort), ...(opts.moduleEnv ?? {}) }),
        onLog: (line, r) => log(line, r),
      });
    }
    // Both pods answer /healthz once their Pepr Store is loaded; admission also binds /mutate and /validate.
    await Promise.all(which.map(role => waitForHttps(ports[role], "/healthz", ca.certPem, 60_000)));
    await waitForConfigInForce(which);
  };

  /**
   * /healthz answers before the configuration is in force (the admission pods get it later, through the Pepr
   * Store): wait until the watcher has applied the ConfigMap that is in the store now and every admission
   * process has applied what the watcher published, so that what the caller announces next (the `npm start`
   * banner, a test's first request) is really enforced. A configuration the watcher refuses is in force
   * nowhere: then there is nothing to wait for.
   */
  const waitForConfigInForce = async (which: ("admission" | "watcher")[]): Promise<void> => {
    const watcher = processes.watcher;
    const rv = api.store.get("configmaps", MODULE_NAMESPACE, CONFIG_MAP_NAME)?.metadata.resourceVersion;
    if (!watcher || !rv) return;
    const outcome = await watcher.waitForLog(configLogLine(rv, "applied|refused"), CONFIG_IN_FORCE_TIMEOUT_MS);
    if (outcome.includes('"msg":"config refused')) return;
    const admission = which.includes("admission") ? processes.admission : undefined;
    await admission?.waitForLog(configLogLine(rv, "applied"), CONFIG_IN_FORCE_TIMEOUT_MS);
  };

  const stopModule = async (which: ("admission" | "watcher")[] = ["admission", "watcher"]): Promise<void> => {
    await Promise.all(
      which.map(async role => {
        await processes[role]?.stop();
        delete processes[role];
      }),
    );
  };

  if (withModule) await startModule();

  const cluster: SandboxCluster = {
    api,
    kubeconfig,
    stateDir,
    isoServer,
    get admission() {
      return processes.admission;
    },
    get watcher() {
      return processes.watcher;
    },
    redfishPort,
    redfishUrl: `https://localhost:${redfishPort}`,
    caPem: ca.certPem,
    simulators: { kubevirt, cdi },
    applyConfig,
    startModule,
    stopModule,
    async stop() {
      await stopModule();
      kubevirt.stop();
      await cdi.stop();
      await isoServer.close();
      await api.close();
      if (!opts.stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
    },
  };
  return cluster;
}
