// The one Kubernetes-error → Redfish-error mapping, over real HTTP with the bodies a real kube-apiserver sends:
// the Redfish app (its default cluster driver → the gateway) writes to a small local server that answers like
// kube-apiserver does where KubeVirt's aggregated API is not served (404 text/plain "404 page not found") and
// where a JSON patch `test` fails (422 Invalid, `details: {}`, no causes).
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { stringify as toYaml } from "yaml";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AUTH, testService, type TestService } from "./fixtures";
import { PATCH_NOT_APPLICABLE_STATUS } from "../helpers/kube-status";

interface ErrorBody {
  error: { message: string; "@Message.ExtendedInfo": { MessageId: string }[] };
}

interface Seen {
  method: string;
  path: string;
}

/** kube-apiserver's answers, by what the request is. */
function kubeApiserverLike(svc: () => TestService, seen: Seen[]): http.Server {
  return http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://x");
      seen.push({ method: req.method ?? "", path: url.pathname });
      const vm = /^\/apis\/kubevirt\.io\/v1\/namespaces\/([^/]+)\/virtualmachines\/([^/]+)$/.exec(url.pathname);
      if (vm && req.method === "GET") {
        const rec = svc().cache.getVm(vm[1], vm[2]);
        res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(rec?.vm));
        return;
      }
      if (vm && req.method === "PATCH") {
        // apiserver's NewGenericServerResponse(422, ...) for a JSON patch that does not apply.
        res.writeHead(422, { "Content-Type": "application/json" }).end(JSON.stringify(PATCH_NOT_APPLICABLE_STATUS));
        return;
      }
      // subresources.kubevirt.io is not registered: the mux's NotFound handler.
      res.writeHead(404, { "Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff" }).end("404 page not found\n");
    });
  });
}

let server: http.Server;
let dir: string;
let svc: TestService;
const seen: Seen[] = [];
const previousKubeconfig = process.env.KUBECONFIG;

beforeAll(async () => {
  server = kubeApiserverLike(() => svc, seen);
  await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "kubevirt-failures-"));
  const file = path.join(dir, "kubeconfig");
  fs.writeFileSync(
    file,
    toYaml({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "c", cluster: { server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, "insecure-skip-tls-verify": true } }],
      users: [{ name: "u", user: { token: "t" } }],
      contexts: [{ name: "c", context: { cluster: "c", user: "u" } }],
      "current-context": "c",
    }),
  );
  process.env.KUBECONFIG = file;
});
afterAll(async () => {
  await new Promise(resolve => server?.close(resolve));
  if (previousKubeconfig === undefined) delete process.env.KUBECONFIG;
  else process.env.KUBECONFIG = previousKubeconfig;
  fs.rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  svc = testService();
  seen.length = 0;
});

const SYSTEM = "/redfish/v1/Systems/tenant1-vms.vm-a";

function post(path: string, body: unknown) {
  return svc.request(path, { method: "POST", headers: { Authorization: AUTH.alice, "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

describe("a real API server's failures as Redfish errors", () => {
  it("KubeVirt subresource API not served: Reset is 503 naming the API, and GET still works", async () => {
    for (const resetType of ["ForceOff", "GracefulShutdown", "ForceRestart", "GracefulRestart", "Pause"]) {
      const res = await post(`${SYSTEM}/Actions/ComputerSystem.Reset`, { ResetType: resetType });
      expect(res.status, resetType).toBe(503);
      expect(res.headers.get("Retry-After")).toBe("30");
      const body = (await res.json()) as ErrorBody;
      expect(body.error["@Message.ExtendedInfo"][0].MessageId).toBe("Base.1.18.1.ServiceTemporarilyUnavailable");
      expect(body.error.message).toContain("subresources.kubevirt.io/v1");
      expect(body.error.message).not.toMatch(/was not found/);
    }
    // The writes really went to the subresource API (ForceRestart: VMI reset, then the VM restart fallback).
    expect(seen.map(s => s.path)).toContain("/apis/subresources.kubevirt.io/v1/namespaces/tenant1-vms/virtualmachines/vm-a/stop");
    expect(seen.map(s => s.path)).toContain("/apis/subresources.kubevirt.io/v1/namespaces/tenant1-vms/virtualmachineinstances/vm-a/reset");
    expect(seen.map(s => s.path)).toContain("/apis/subresources.kubevirt.io/v1/namespaces/tenant1-vms/virtualmachines/vm-a/restart");
    const get = await svc.request(SYSTEM, { headers: { Authorization: AUTH.alice } });
    expect(get.status).toBe(200);
    expect(((await get.json()) as { PowerState: string }).PowerState).toBe("On");
  });

  it("a JSON patch whose test fails twice (422 Invalid, details {}, no causes) is 409 ResourceInUse after one fresh read", async () => {
    const res = await post("/redfish/v1/Systems/tenant1-vms.vm-b/Actions/ComputerSystem.Reset", { ResetType: "On" });
    expect(res.status).toBe(409);
    const body = (await res.json()) as ErrorBody;
    expect(body.error["@Message.ExtendedInfo"][0].MessageId).toBe("Base.1.18.1.ResourceInUse");
    expect(body.error.message).toContain("tenant1-vms/vm-b");
    const vmPath = "/apis/kubevirt.io/v1/namespaces/tenant1-vms/virtualmachines/vm-b";
    expect(seen.filter(s => s.path === vmPath).map(s => s.method)).toEqual(["PATCH", "GET", "PATCH"]);
  });
});
