// A cluster whose API server does not serve KubeVirt's aggregated subresources.kubevirt.io (virt-api missing):
// the sandbox answers those paths like kube-apiserver, 404 text/plain "404 page not found". Every ResetType that
// needs virt-api is a Redfish 503 naming the missing KubeVirt API; reads (from the watch cache) keep working, and
// what needs only a VM patch (On of a VM that is off) still works.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUTH } from "./fixtures";
import { startSandboxService, VM_KEY, type SandboxService } from "./sandbox-service";

let sb: SandboxService;

beforeAll(async () => {
  sb = await startSandboxService({ kubevirtApi: false });
});
afterAll(async () => sb?.stop());

const SYSTEM = "/redfish/v1/Systems/tenant1-vms.vm-a";

function reset(system: string, resetType: string) {
  return sb.request(`${system}/Actions/ComputerSystem.Reset`, {
    method: "POST",
    headers: { Authorization: AUTH.alice, "Content-Type": "application/json" },
    body: JSON.stringify({ ResetType: resetType }),
  });
}

describe("the sandbox without KubeVirt's subresource API", () => {
  it("Reset answers 503 naming subresources.kubevirt.io, never 'not found'; GET still works", async () => {
    // Running, not still booting (a restart of a booting VM has nothing to do).
    await expect.poll(async () => ((await (await sb.request(SYSTEM, { headers: { Authorization: AUTH.alice } })).json()) as { PowerState: string }).PowerState, { message: "vm-a On" }).toBe("On");
    for (const resetType of ["ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Pause"]) {
      const res = await reset(SYSTEM, resetType);
      expect(res.status, resetType).toBe(503);
      expect(res.headers.get("Retry-After")).toBe("30");
      const body = (await res.json()) as { error: { message: string; "@Message.ExtendedInfo": { MessageId: string; Resolution?: string }[] } };
      expect(body.error.message).toContain("subresources.kubevirt.io/v1");
      expect(body.error.message).not.toMatch(/was not found/);
      expect(body.error["@Message.ExtendedInfo"][0].MessageId).toBe("Base.1.18.1.ServiceTemporarilyUnavailable");
      expect(body.error["@Message.ExtendedInfo"][0].Resolution).toContain("virt-api");
    }
    const get = await sb.request(SYSTEM, { headers: { Authorization: AUTH.alice } });
    expect(get.status).toBe(200);
    expect(((await get.json()) as { PowerState: string }).PowerState).toBe("On");
    // Nothing was written to the VM: still Always, no pending power-on.
    const vm = sb.api.store.get(VM_KEY, "tenant1-vms", "vm-a")!;
    expect((vm.spec as { runStrategy?: string }).runStrategy).toBe("Always");
    expect(vm.metadata.annotations ?? {}).toEqual({});
  });

  it("On of a VM that is off needs only a VM patch, and works", async () => {
    const res = await reset("/redfish/v1/Systems/tenant1-vms.vm-b", "On");
    expect(res.status).toBe(204);
    await expect.poll(() => sb.cache.getVm("tenant1-vms", "vm-b")?.vmi, { message: "vm-b to start" }).toBeTruthy();
  });
});
