// Redfish actions end to end against the sandbox cluster: HTTP request → app → power/boot → gateway →
// sandbox API server → KubeVirt simulator → watch → cache → the next GET.
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { AUTH, PASSWORDS } from "./fixtures";
import { startSandboxService, VM_KEY, type SandboxService } from "./sandbox-service";
import { present } from "../helpers/present";

type Json = Record<string, any>;  

let s: SandboxService;
let token: string;
beforeAll(async () => {
  s = await startSandboxService();
  const login = await s.request("/redfish/v1/SessionService/Sessions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ UserName: "alice", Password: PASSWORDS.alice }),
  });
  expect(login.status).toBe(201);
  token = login.headers.get("X-Auth-Token")!;
});
afterAll(async () => {
  await s?.stop();
});

const get = async (path: string, auth: Record<string, string> = { "X-Auth-Token": token }) => {
  const res = await s.request(path, { headers: auth });
  return { status: res.status, etag: res.headers.get("ETag"), body: (await res.json()) as Json };
};
const reset = (id: string, resetType: string, auth: Record<string, string> = { "X-Auth-Token": token }) =>
  s.request(`/redfish/v1/Systems/${id}/Actions/ComputerSystem.Reset`, {
    method: "POST",
    headers: { ...auth, "Content-Type": "application/json" },
    body: JSON.stringify({ ResetType: resetType }),
  });
const powerState = async (id: string) => (await get(`/redfish/v1/Systems/${id}`)).body.PowerState as string;

describe("power through Redfish on the sandbox", () => {
  it("ForceOff turns a running VM off; On starts it again (PoweringOn first); On when On is a no-op success", async () => {
    await expect.poll(() => powerState("tenant1-vms.vm-a"), { message: "vm-a (runStrategy Always) On" }).toBe("On");
    const before = s.api.store.get(VM_KEY, "tenant1-vms", "vm-a")!.metadata.resourceVersion;
    const off = await reset("tenant1-vms.vm-a", "ForceOff");
    expect([202, 204]).toContain(off.status);
    // The reply comes after the API server accepted the write: the VM has changed by then (the 404 test relies on it).
    expect(s.api.store.get(VM_KEY, "tenant1-vms", "vm-a")!.metadata.resourceVersion).not.toBe(before);
    await expect.poll(() => powerState("tenant1-vms.vm-a"), { message: "vm-a Off" }).toBe("Off");

    const on = await reset("tenant1-vms.vm-a", "On");
    expect([202, 204]).toContain(on.status);
    // reported as soon as the start is accepted (Ironic polls and counts PoweringOn as on)
    expect(["PoweringOn", "On"]).toContain(await powerState("tenant1-vms.vm-a"));
    await expect.poll(() => powerState("tenant1-vms.vm-a"), { message: "vm-a On" }).toBe("On");
    expect([202, 204]).toContain((await reset("tenant1-vms.vm-a", "On")).status);
    expect(await powerState("tenant1-vms.vm-a")).toBe("On");
  });

  it("another tenant's reset is a 404 and changes nothing in the cluster", async () => {
    const before = s.api.store.get(VM_KEY, "tenant1-vms", "vm-b")!.metadata.resourceVersion;
    const res = await reset("tenant1-vms.vm-b", "On", { Authorization: AUTH.bob });
    expect(res.status).toBe(404);
    // Nothing to wait for: a Reset is answered only after the API server accepted its write (see the ForceOff above),
    // the 404 is decided before any plan, and the controllers act only on a cache change, which a refused Reset
    // does not make. A write this request made would be in the store now.
    expect(s.api.store.get(VM_KEY, "tenant1-vms", "vm-b")!.metadata.resourceVersion).toBe(before);
  });
});

describe("boot override through Redfish on the sandbox", () => {
  it("PATCH Boot with the current ETag is applied to the VM and shows on the next GET", async () => {
    const { etag } = await get("/redfish/v1/Systems/tenant1-vms.vm-b");
    const res = await s.request("/redfish/v1/Systems/tenant1-vms.vm-b", {
      method: "PATCH",
      headers: { "X-Auth-Token": token, "Content-Type": "application/json", "If-Match": etag! },
      body: JSON.stringify({ Boot: { BootSourceOverrideTarget: "Pxe", BootSourceOverrideEnabled: "Continuous" } }),
    });
    expect(res.status).toBe(204);
    const boot = await vi.waitFor(
      async () => {
        const body = (await get("/redfish/v1/Systems/tenant1-vms.vm-b")).body;
        return present(body.Boot.BootSourceOverrideTarget === "Pxe" && body.Boot, "the boot override in the cache");
      },
      { timeout: 10_000, interval: 20 },
    );
    expect(boot.BootSourceOverrideEnabled).toBe("Continuous");
    // the VM in the cluster changed (the gateway wrote it), not only a view
    expect(JSON.stringify(s.api.store.get(VM_KEY, "tenant1-vms", "vm-b")!.spec)).toContain("bootOrder");

    // the old ETag no longer matches
    const stale = await s.request("/redfish/v1/Systems/tenant1-vms.vm-b", {
      method: "PATCH",
      headers: { "X-Auth-Token": token, "Content-Type": "application/json", "If-Match": etag! },
      body: JSON.stringify({ Boot: { BootSourceOverrideTarget: "Hdd" } }),
    });
    expect(stale.status).toBe(412);
  });
});
