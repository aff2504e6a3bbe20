// The sandbox cluster: the in-process API server, the KubeVirt and CDI simulators, a local image server and
// the BUILT module as real processes (admission server + watcher), wired like a real cluster wires them:
// the webhook configurations come from the generated manifest, with the service reference replaced by the
// admission process's loopback URL and its CA.
//
// API (used by scripts/start.ts and the end-to-end tests in test/):
//   const c = await startSandboxCluster({ module: true, demo: true });
//   c.api.url, c.kubeconfig, c.redfishUrl, c.isoServer.url, c.admission / c.watcher (logs, waitForLog)
//   await c.applyConfig({ ...module config... }, users?)   // writes the ConfigMap / Secret
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
import { startModuleProcess, waitForHttps, MODULE_MANIFEST, type ModuleProcess } from "./module-process";
import { freePort } from "./ports";
import { createCertificateAuthority, issueServerCertificate } from "../capabilities/common/tls";

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

function manifestDocuments(): KubeObject[] {
  if (!fs.existsSync(MODULE_MANIFEST)) throw new Error(`${MODULE_MANIFEST} is missing: run \`npm run build\` first`);
  return YAML.parseAllDocuments(fs.readFileSync(MODULE_MANIFEST, "utf8"))
    .map(d => d.toJS() as KubeObject | null)
    .filter((d): d is KubeObject => d !== null && typeof d === "object");
}

const RBAC_KINDS: Record<string, string> = {
  ServiceAccount: "serviceaccounts",
  Role: "roles.rbac.authorization.k8s.io",
  ClusterRole: "clusterroles.rbac.authorization.k8s.io",
  RoleBinding: "rolebindings.rbac.authorization.k8s.io",
  ClusterRoleBinding: "clusterrolebindings.rbac.authorization.k8s.io",
};

const deploymentSchema = z.object({
  metadata: z.object({ namespace: z.string().default("default"), labels: z.record(z.string(), z.string()).default({}) }),
  spec: z.object({ template: z.object({ spec: z.object({ serviceAccountName: z.string().default("default") }) }) }),
});

/**
 * What the generated manifest grants each module process: its RBAC objects (applied to the sandbox) and, per
 * Deployment (`pepr.dev/controller: admission|watcher`), the ServiceAccount it runs as.
 */
function manifestRbac(docs: KubeObject[]): { objects: { resource: string; obj: KubeObject }[]; accounts: Partial<Record<"admission" | "watcher", { namespace: string; name: string }>> } {
  const objects = docs.filter(d => d.kind in RBAC_KINDS).map(obj => ({ resource: RBAC_KINDS[obj.kind], obj }));
  const accounts: Partial<Record<"admission" | "watcher", { namespace: string; name: string }>> = {};
  for (const doc of docs) {
    if (doc.kind !== "Deployment") continue;
    const d = deploymentSchema.parse(doc);
    const role = d.metadata.labels["pepr.dev/controller"];
    if (role === "admission" || role === "watcher") accounts[role] = { namespace: d.metadata.namespace, name: d.spec.template.spec.serviceAccountName };
  }
  return { objects, accounts };
}

/** Reads the webhook configurations `pepr build` generated and points them at the local admission process. */
function webhookConfigurations(docs: KubeObject[], admissionPort: number, caPem: string): { apiPath: string; objects: KubeObject[] } {
  const objects: KubeObject[] = [];
  let apiPath = "";
  for (const doc of docs) {
    if (!/^(Mutating|Validating)WebhookConfiguration$/.test(doc.kind)) continue;
    const webhooks = (doc.webhooks as { clientConfig: { service?: { path: string }; url?: string; caBundle?: string } }[]) ?? [];
    for (const hook of webhooks) {
      const servicePath = hook.clientConfig.service?.path ?? "";
      apiPath = servicePath.split("/").pop() ?? apiPath;
      hook.clientConfig = {
        url: `https://127.0.0.1:${admissionPort}${servicePath}`,
        caBundle: Buffer.from(caPem).toString("base64"),
      };
    }
    objects.push(doc);
  }
  if (!apiPath) throw new Error(`no webhook configuration found in ${MODULE_MANIFEST}`);
  return { apiPath, objects };
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
  const docs = opts.module === false ? [] : manifestDocuments();
  const hooks = opts.module === false ? undefined : webhookConfigurations(docs, ports.admission, ca.certPem);
  // Each process's kubeconfig: the cluster admin's, or (rbac) a token of the ServiceAccount its Deployment uses.
  const kubeconfigs: Record<"admission" | "watcher", string> = { admission: kubeconfig, watcher: kubeconfig };
  if (opts.rbac && hooks) {
    const { objects, accounts } = manifestRbac(docs);
    for (const { resource, obj } of objects) {
      if (obj.metadata.namespace) ensureNamespace(api, obj.metadata.namespace);
      upsert(api, resource, obj);
    }
    for (const role of ["admission", "watcher"] as const) {
      const account = accounts[role];
      if (!account) throw new Error(`${MODULE_MANIFEST} has no ${role} Deployment (label pepr.dev/controller: ${role})`);
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

  if (opts.demo) {
    const { seedDemo, demoConfig, demoUsers } = await import("./demo");
    seedDemo(api, { isoUrl: `${isoServer.url}/images/demo.iso` });
    await applyConfig({ ...demoConfig, ...(opts.config ?? {}) }, opts.users ?? demoUsers);
  } else if (opts.config || opts.users) {
    await applyConfig(opts.config ?? {}, opts.users);
  }

  const startModule = async (which: ("admission" | "watcher")[] = opts.processes ?? ["admission", "watcher"]): Promise<void> => {
    if (!hooks) throw new Error("the sandbox was started with module: false");
    for (const role of which) {
      if (processes[role]) continue;
      processes[role] = startModuleProcess({
        role,
        kubeconfig: kubeconfigs[role],
        port: ports[role],
        tlsKeyPath,
        tlsCertPath,
        apiPath: hooks.apiPath,
        env: { REDFISH_PORT: String(redfishPort), ...(opts.moduleEnv ?? {}) },
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

  if (hooks) {
    for (const obj of hooks.objects) {
      const resource = obj.kind === "MutatingWebhookConfiguration" ? "mutatingwebhookconfigurations.admissionregistration.k8s.io" : "validatingwebhookconfigurations.admissionregistration.k8s.io";
      upsert(api, resource, obj);
    }
    await startModule();
  }

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
