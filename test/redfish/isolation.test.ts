// Tenant isolation matrix: every user × every system × every verb on every system-scoped resource.
// A system outside the user's chassis answers exactly like a system that does not exist.
import { describe, expect, it } from "vitest";
import { WatchCache } from "../../redfish/cache/store";
import { AUTH, testService } from "./fixtures";

const USERS = {
  alice: { auth: AUTH.alice, visible: ["tenant1-vms.vm-a", "tenant1-vms.vm-b"] },
  bob: { auth: AUTH.bob, visible: ["tenant2-vms.vm-c"] },
  carol: { auth: AUTH.carol, visible: ["tenant1-vms.vm-a", "tenant1-vms.vm-b", "tenant2-vms.vm-c"] },
};
// every VM in the cluster, including one in a chassis namespace that the selector excludes and one in no chassis
const ALL_SYSTEMS = ["tenant1-vms.vm-a", "tenant1-vms.vm-b", "tenant2-vms.vm-c", "tenant2-vms.hidden", "other-vms.vm-x"];

// `optional`: may be 404 for a visible system too (the NIC name differs between VMs)
const REQUESTS: { path: (id: string) => string; method: string; body?: string; optional?: boolean }[] = [
  { path: id => `/redfish/v1/Systems/${id}`, method: "GET" },
  { path: id => `/redfish/v1/Systems/${id}`, method: "HEAD" },
  { path: id => `/redfish/v1/Systems/${id}`, method: "PATCH", body: JSON.stringify({ Boot: { BootSourceOverrideTarget: "Floppy" } }) },
  { path: id => `/redfish/v1/Systems/${id}`, method: "PATCH", body: "{not json" },
  { path: id => `/redfish/v1/Systems/${id}`, method: "PUT", body: "{}" },
  { path: id => `/redfish/v1/Systems/${id}`, method: "DELETE" },
  { path: id => `/redfish/v1/Systems/${id}`, method: "POST", body: "{}" },
  { path: id => `/redfish/v1/Systems/${id}/Actions/ComputerSystem.Reset`, method: "POST", body: JSON.stringify({ ResetType: "Nmi" }) },
  { path: id => `/redfish/v1/Systems/${id}/Actions/ComputerSystem.Reset`, method: "GET" },
  { path: id => `/redfish/v1/Systems/${id}/EthernetInterfaces`, method: "GET" },
  { path: id => `/redfish/v1/Systems/${id}/EthernetInterfaces`, method: "POST", body: "{}" },
  { path: id => `/redfish/v1/Systems/${id}/EthernetInterfaces/default`, method: "GET", optional: true },
  { path: id => `/redfish/v1/Managers/${id}`, method: "GET" },
  { path: id => `/redfish/v1/Managers/${id}`, method: "PATCH", body: "{}" },
];

/** The same service with no VMs at all: the reference answer for "does not exist". */
function emptyService() {
  const s = testService();
  const empty = new WatchCache();
  empty.applyList("VirtualMachine", []);
  return testService({ cache: empty, config: () => s.config.current });
}

async function snapshot(res: Response): Promise<{ status: number; body: string; headers: [string, string][] }> {
  const headers = [...res.headers].filter(([name]) => name !== "date");
  return { status: res.status, body: await res.text(), headers };
}

describe("tenant isolation", () => {
  it("every user × system × verb: foreign systems are indistinguishable from nonexistent ones", async () => {
    const s = testService();
    const empty = emptyService();
    let checked = 0;
    for (const [user, { auth, visible }] of Object.entries(USERS)) {
      for (const id of ALL_SYSTEMS) {
        const bare = id.split(".")[1];
        for (const target of [id, bare]) {
          for (const req of REQUESTS) {
            const init = {
              method: req.method,
              headers: { Authorization: auth, "Content-Type": "application/json" },
              ...(req.body !== undefined ? { body: req.body } : {}),
            };
            const label = `${user} ${req.method} ${req.path(target)}`;
            const res = await snapshot(await s.request(req.path(target), init));
            if (visible.includes(id)) {
              if (!req.optional) expect(res.status, label).not.toBe(404);
              continue;
            }
            const reference = await snapshot(await empty.request(req.path(target), init));
            expect(res.status, label).toBe(404);
            expect(res, label).toEqual(reference);
            checked++;
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(200);
  });

  it("collections and links show only the user's systems", async () => {
    const s = testService();
    for (const [user, { auth, visible }] of Object.entries(USERS)) {
      const get = async (path: string) => JSON.stringify(await (await s.request(path, { headers: { Authorization: auth } })).json());
      const systems = await get("/redfish/v1/Systems");
      const managers = await get("/redfish/v1/Managers");
      const chassis = await get("/redfish/v1/Chassis");
      for (const id of ALL_SYSTEMS) {
        expect(systems.includes(`/Systems/${id}"`), `${user} ${id}`).toBe(visible.includes(id));
        expect(managers.includes(`/Managers/${id}"`), `${user} ${id}`).toBe(visible.includes(id));
      }
      expect(chassis.includes("/Chassis/tenant2"), user).toBe(user !== "alice");
      expect(chassis.includes("/Chassis/tenant1"), user).toBe(user !== "bob");
    }
    // a chassis of another tenant is a 404 too, on every verb
    for (const method of ["GET", "PATCH", "DELETE"]) {
      expect((await s.request("/redfish/v1/Chassis/tenant2", { method, headers: { Authorization: AUTH.alice } })).status).toBe(404);
    }
  });

  it("a system id with traversal or odd characters is a plain 404", async () => {
    const s = testService();
    for (const id of ["tenant1-vms.vm-a/../tenant2-vms.vm-c", "tenant2-vms.vm-c%2F..%2F..", "tenant1-vms.vm-a%2F..%2Ftenant2-vms.vm-c", "tenant1-vms.", ".vm-a", "tenant1-vms..vm-a", "tenant1-vms.vm-a%00", "%F0%9F%92%A9", "%E0%A4%A", "a".repeat(5000)]) {
      const res = await s.request(`/redfish/v1/Systems/${id}`, { headers: { Authorization: AUTH.alice } });
      expect(res.status, id).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code).toMatch(/^Base\.1\.18\.1\./);
    }
  });
});
