// The gateway's VM/VMI writes over real HTTP(S): KubeVirt subresource PUTs with token and client-certificate
// kubeconfigs, error mapping, and JSON patches through Pepr's K8s().
import fs from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { stringify as toYaml } from "yaml";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  KubeApiError,
  patchVirtualMachine,
  putVirtualMachineInstanceAction,
  readVirtualMachine,
  restartVirtualMachine,
  startVirtualMachine,
  stopVirtualMachine,
} from "../../capabilities/common/gateway";
import { closeSharedKubeClient } from "../../capabilities/common/kube-client";
import { createCertificateAuthority, issueServerCertificate } from "../../capabilities/common/tls";
import { startApiServer, type ApiServer } from "../../sandbox/apiserver";
import type { SubresourceRequest } from "../../sandbox/apiserver/types";
import { makeVm } from "./power-fixtures";

const TOKEN = "power-gateway-test-token";
const SERVICE_ACCOUNT = "system:serviceaccount:pepr-system:pepr-kubevirt-infra";
let api: ApiServer;
let dir: string;
const seen: { subresource: string; req: SubresourceRequest }[] = [];
const previousKubeconfig = process.env.KUBECONFIG;

beforeAll(async () => {
  // system:masters: the sandbox applies RBAC to token users, and what the module's ClusterRole allows is
  // test/deploy/rbac.test.ts's subject, not this one's.
  api = await startApiServer({ tokens: [{ token: TOKEN, user: { username: SERVICE_ACCOUNT, groups: ["system:serviceaccounts", "system:masters"] } }] });
  for (const [resource, sub] of [
    ["virtualmachines", "start"],
    ["virtualmachines", "stop"],
    ["virtualmachines", "restart"],
    ["virtualmachineinstances", "softreboot"],
  ]) {
    api.registerSubresource("subresources.kubevirt.io", "v1", resource, sub, async req => {
      seen.push({ subresource: `${resource}/${sub}`, req });
      if (req.name === "busy") {
        return { status: 409, body: { kind: "Status", apiVersion: "v1", status: "Failure", reason: "Conflict", code: 409, message: "VM is already running" } };
      }
      return { status: 202 };
    });
  }
  // virt-api answers 404 for objects that do not exist: give the handlers something to act on.
  api.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "tenant1" } });
  for (const name of ["vm1", "busy"]) {
    const vm = makeVm({ namespace: "tenant1", name });
    api.store.create("virtualmachines.kubevirt.io", { ...vm, metadata: { name, namespace: "tenant1" } });
  }
  api.store.create("virtualmachineinstances.kubevirt.io", {
    apiVersion: "kubevirt.io/v1",
    kind: "VirtualMachineInstance",
    metadata: { name: "vm1", namespace: "tenant1" },
    spec: { domain: { devices: {} } },
  });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "power-gateway-"));
});
afterAll(async () => {
  await api?.close();
  if (previousKubeconfig === undefined) delete process.env.KUBECONFIG;
  else process.env.KUBECONFIG = previousKubeconfig;
  fs.rmSync(dir, { recursive: true, force: true });
});
afterEach(() => (seen.length = 0));

async function useTokenKubeconfig(token = TOKEN): Promise<void> {
  const file = path.join(dir, `kubeconfig-${token}`);
  await api.writeKubeconfig(file, { token });
  process.env.KUBECONFIG = file;
  await closeSharedKubeClient(); // the kubeconfig is read once per client
}

const bodyOf = (req: SubresourceRequest) => req.body;

describe("KubeVirt subresource PUTs", () => {
  it("authenticate with the kubeconfig's bearer token and send virt-api's option bodies", async () => {
    await useTokenKubeconfig();
    await startVirtualMachine("tenant1", "vm1");
    await stopVirtualMachine("tenant1", "vm1", { gracePeriod: 0 });
    await stopVirtualMachine("tenant1", "vm1");
    await restartVirtualMachine("tenant1", "vm1", { gracePeriodSeconds: 0 });
    await putVirtualMachineInstanceAction("tenant1", "vm1", "softreboot");
    expect(seen.map(s => [s.subresource, s.req.namespace, s.req.name, s.req.user.username])).toEqual([
      ["virtualmachines/start", "tenant1", "vm1", SERVICE_ACCOUNT],
      ["virtualmachines/stop", "tenant1", "vm1", SERVICE_ACCOUNT],
      ["virtualmachines/stop", "tenant1", "vm1", SERVICE_ACCOUNT],
      ["virtualmachines/restart", "tenant1", "vm1", SERVICE_ACCOUNT],
      ["virtualmachineinstances/softreboot", "tenant1", "vm1", SERVICE_ACCOUNT],
    ]);
    expect(seen.map(s => bodyOf(s.req))).toEqual([{}, { gracePeriod: 0 }, {}, { gracePeriodSeconds: 0 }, {}]);
  });

  it("turn API errors into KubeApiError with status, reason and message", async () => {
    await useTokenKubeconfig();
    const conflict = await startVirtualMachine("tenant1", "busy").catch(e => e);
    expect(conflict).toBeInstanceOf(KubeApiError);
    expect(conflict).toMatchObject({ status: 409, reason: "Conflict", message: "VM is already running" });
    // No such subresource on this virt-api: 404 (what an older KubeVirt answers for VMI reset).
    await expect(putVirtualMachineInstanceAction("tenant1", "vm1", "reset")).rejects.toMatchObject({ status: 404 });
    await useTokenKubeconfig("wrong-token");
    await expect(startVirtualMachine("tenant1", "vm1")).rejects.toMatchObject({ status: 401 });
  });

  it("report an unreachable API server as status 0 (no answer)", async () => {
    const file = path.join(dir, "kubeconfig-closed");
    fs.writeFileSync(
      file,
      toYaml({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "c", cluster: { server: "http://127.0.0.1:1", "insecure-skip-tls-verify": true } }],
        users: [{ name: "u", user: { token: "x" } }],
        contexts: [{ name: "c", context: { cluster: "c", user: "u" } }],
        "current-context": "c",
      }),
    );
    process.env.KUBECONFIG = file;
    await closeSharedKubeClient();
    await expect(startVirtualMachine("tenant1", "vm1")).rejects.toMatchObject({ status: 0 });
  });

  it("verify the server against the kubeconfig CA and present the client certificate (HTTPS)", async () => {
    const ca = createCertificateAuthority("test-cluster-ca");
    const serverCert = issueServerCertificate(ca, { commonName: "kube-apiserver", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
    const clientCert = issueServerCertificate(ca, { commonName: "pepr-kubevirt-infra", dnsNames: ["client.local"], ipAddresses: [] });
    const requests: { method?: string; url?: string; clientCn?: string; authorization?: string; body: string }[] = [];
    const server = https.createServer({ key: serverCert.keyPem, cert: serverCert.certPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
      let body = "";
      req.on("data", c => (body += c));
      req.on("end", () => {
        const peer = (req.socket as TLSSocket).getPeerCertificate();
        requests.push({ method: req.method, url: req.url, clientCn: String(peer?.subject?.CN), authorization: req.headers.authorization, body });
        res.writeHead(200, { "Content-Type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>(r => server.listen(0, "127.0.0.1", r));
    try {
      const file = path.join(dir, "kubeconfig-cert");
      const b64 = (s: string) => Buffer.from(s).toString("base64");
      fs.writeFileSync(
        file,
        toYaml({
          apiVersion: "v1",
          kind: "Config",
          clusters: [{ name: "c", cluster: { server: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, "certificate-authority-data": b64(ca.certPem) } }],
          users: [{ name: "u", user: { "client-certificate-data": b64(clientCert.certPem), "client-key-data": b64(clientCert.keyPem) } }],
          contexts: [{ name: "c", context: { cluster: "c", user: "u" } }],
          "current-context": "c",
        }),
      );
      process.env.KUBECONFIG = file;
      await closeSharedKubeClient();
      await putVirtualMachineInstanceAction("ns-a", "vm-b", "pause");
      expect(requests).toEqual([
        { method: "PUT", url: "/apis/subresources.kubevirt.io/v1/namespaces/ns-a/virtualmachineinstances/vm-b/pause", clientCn: "pepr-kubevirt-infra", authorization: undefined, body: "{}" },
      ]);

      // A server certificate the kubeconfig's trust anchor did not sign is refused (anchor: an unrelated cert).
      const yaml = fs.readFileSync(file, "utf8").replace(b64(ca.certPem), b64(clientCert.certPem));
      fs.writeFileSync(file, yaml);
      await closeSharedKubeClient();
      await expect(putVirtualMachineInstanceAction("ns-a", "vm-b", "pause")).rejects.toMatchObject({ status: 0 });
      expect(requests).toHaveLength(1);
    } finally {
      await new Promise(r => server.close(r));
    }
  });
});

describe("VirtualMachine patches through K8s()", () => {
  it("apply JSON patches with test ops, and fail with 422 when a test does not hold", async () => {
    await useTokenKubeconfig();
    api.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "gw" } });
    const vm = makeVm({ namespace: "gw", name: "patched", runStrategy: "Halted" });
    api.store.create("virtualmachines.kubevirt.io", { ...vm, metadata: { name: "patched", namespace: "gw" } });
    await patchVirtualMachine("gw", "patched", [
      { op: "test", path: "/spec/runStrategy", value: "Halted" },
      { op: "replace", path: "/spec/runStrategy", value: "RerunOnFailure" },
      { op: "add", path: "/metadata/annotations", value: { "kubevirt-infra.io/x": "1" } },
    ]);
    const after = (await readVirtualMachine("gw", "patched")) as { spec: { runStrategy: string }; metadata: { annotations: Record<string, string> } };
    expect(after.spec.runStrategy).toBe("RerunOnFailure");
    expect(after.metadata.annotations).toEqual({ "kubevirt-infra.io/x": "1" });
    const failed = await patchVirtualMachine("gw", "patched", [
      { op: "test", path: "/spec/runStrategy", value: "Halted" },
      { op: "replace", path: "/spec/runStrategy", value: "Always" },
    ]).catch(e => e);
    expect(failed).toBeInstanceOf(KubeApiError);
    expect(failed.status).toBe(422);
    expect(await readVirtualMachine("gw", "missing")).toBeUndefined();
    await expect(patchVirtualMachine("gw", "missing", [{ op: "add", path: "/metadata/labels", value: {} }])).rejects.toMatchObject({ status: 404 });
  });
});
