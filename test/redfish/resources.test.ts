// The resource tree as clients (sushy, redfishtool, the DMTF validator) walk it, and the derivations of
// ComputerSystem properties from realistic VM/VMI objects.
import { describe, expect, it } from "vitest";
import { RESET_TYPES } from "../../redfish/power";
import { firmwareUuid, uuidV5 } from "../../redfish/resources/hardware";
import { AUTH, revise, runningVmi, testConfig, testService, vm } from "./fixtures";

type Json = Record<string, any>;  

async function getJson(s: ReturnType<typeof testService>, path: string, auth = AUTH.alice): Promise<{ status: number; body: Json; headers: Headers }> {
  const res = await s.request(path, { headers: { Authorization: auth } });
  return { status: res.status, body: (await res.json()) as Json, headers: res.headers };
}

describe("unauthenticated entry points", () => {
  it("serves /redfish, the ServiceRoot with links and a stable UUID, the OData document and $metadata", async () => {
    const s = testService();
    const version = await s.request("/redfish");
    expect(version.status).toBe(200);
    expect(await version.json()).toEqual({ v1: "/redfish/v1/" });

    const root = await s.request("/redfish/v1/");
    expect(root.status).toBe(200);
    expect(root.headers.get("OData-Version")).toBe("4.0");
    const body = (await root.json()) as Json;
    expect(body).toMatchObject({
      "@odata.id": "/redfish/v1/",
      "@odata.type": "#ServiceRoot.v1_15_0.ServiceRoot",
      Id: "RootService",
      RedfishVersion: "1.15.0",
      Systems: { "@odata.id": "/redfish/v1/Systems" },
      Chassis: { "@odata.id": "/redfish/v1/Chassis" },
      Managers: { "@odata.id": "/redfish/v1/Managers" },
      SessionService: { "@odata.id": "/redfish/v1/SessionService" },
      AccountService: { "@odata.id": "/redfish/v1/AccountService" },
      Tasks: { "@odata.id": "/redfish/v1/TaskService" },
      Links: { Sessions: { "@odata.id": "/redfish/v1/SessionService/Sessions" } },
    });
    // derived from the installation id: the same for every request and every process of this install
    expect(body.UUID).toBe(uuidV5("8f0c5d3e-2b7a-4e61-9c4d-6a1f0e9b7c25", "test-install"));
    expect(((await (await testService().request("/redfish/v1")).json()) as Json).UUID).toBe(body.UUID);
    const other = testService({ installationId: () => "another-install" });
    expect(((await (await other.request("/redfish/v1")).json()) as Json).UUID).not.toBe(body.UUID);

    // redfish.serviceUUID wins when configured
    s.config.current = testConfig({ redfish: { serviceUUID: "0B1C3A5E-8D2F-4E6A-9C7B-1A2B3C4D5E6F" } });
    expect(((await (await s.request("/redfish/v1/")).json()) as Json).UUID).toBe("0b1c3a5e-8d2f-4e6a-9c7b-1a2b3c4d5e6f");

    const odata = (await (await s.request("/redfish/v1/odata")).json()) as Json;
    expect(odata["@odata.context"]).toBe("/redfish/v1/$metadata");
    expect(odata.value.map((v: Json) => v.url)).toContain("/redfish/v1/Systems");

    const metadata = await s.request("/redfish/v1/$metadata");
    expect(metadata.headers.get("Content-Type")).toContain("application/xml");
    const xml = await metadata.text();
    expect(xml).toContain('<edmx:Include Namespace="ComputerSystem.v1_20_0"/>');
    expect(xml).toContain('Extends="ServiceRoot.v1_15_0.ServiceContainer"');
  });

  it("every @odata.type the service returns is declared in $metadata", async () => {
    const s = testService();
    const xml = await (await s.request("/redfish/v1/$metadata")).text();
    const declared = new Set([...xml.matchAll(/Include Namespace="([^"]+)"/g)].map(m => m[1]));
    const paths = [
      "/redfish/v1/",
      "/redfish/v1/Systems",
      "/redfish/v1/Systems/tenant1-vms.vm-a",
      "/redfish/v1/Systems/tenant1-vms.vm-a/EthernetInterfaces",
      "/redfish/v1/Systems/tenant1-vms.vm-a/EthernetInterfaces/default",
      "/redfish/v1/Systems/tenant1-vms.vm-a/Processors",
      "/redfish/v1/Systems/tenant1-vms.vm-a/Processors/CPU0",
      "/redfish/v1/Systems/tenant1-vms.vm-a/Memory",
      "/redfish/v1/Systems/tenant1-vms.vm-a/Memory/DIMM0",
      "/redfish/v1/Systems/tenant1-vms.vm-a/Storage",
      "/redfish/v1/Systems/tenant1-vms.vm-a/Storage/1",
      "/redfish/v1/Systems/tenant1-vms.vm-a/Storage/1/Drives/rootdisk",
      "/redfish/v1/Systems/tenant1-vms.vm-a/SimpleStorage",
      "/redfish/v1/Systems/tenant1-vms.vm-a/SimpleStorage/1",
      "/redfish/v1/Systems/tenant1-vms.vm-a/Bios",
      "/redfish/v1/Systems/tenant1-vms.vm-a/SecureBoot",
      "/redfish/v1/Chassis",
      "/redfish/v1/Chassis/tenant1",
      "/redfish/v1/Managers",
      "/redfish/v1/Managers/tenant1-vms.vm-a",
      "/redfish/v1/SessionService",
      "/redfish/v1/SessionService/Sessions",
      "/redfish/v1/AccountService",
      "/redfish/v1/AccountService/Accounts",
      "/redfish/v1/AccountService/Accounts/alice",
      "/redfish/v1/AccountService/Roles",
      "/redfish/v1/AccountService/Roles/Operator",
      "/redfish/v1/TaskService",
      "/redfish/v1/TaskService/Tasks",
    ];
    for (const path of paths) {
      const { status, body, headers } = await getJson(s, path);
      expect(status, path).toBe(200);
      const type = body["@odata.type"] as string;
      const namespace = type.slice(1, type.lastIndexOf("."));
      expect(declared.has(namespace), `${path}: ${type}`).toBe(true);
      expect(body["@odata.id"].replace(/\/$/, ""), path).toBe(path.replace(/\/$/, ""));
      expect(headers.get("ETag"), path).toMatch(/^"[A-Za-z0-9_-]+"$/);
      expect(headers.get("Link"), path).toContain("rel=describedby");
    }
  });
});

describe("Systems", () => {
  it("lists the user's systems and renders every ComputerSystem property from the VM and its VMI", async () => {
    const s = testService();
    const list = await getJson(s, "/redfish/v1/Systems");
    expect(list.body.Members).toEqual([
      { "@odata.id": "/redfish/v1/Systems/tenant1-vms.vm-a" },
      { "@odata.id": "/redfish/v1/Systems/tenant1-vms.vm-b" },
    ]);
    expect(list.body["Members@odata.count"]).toBe(2);

    const { body } = await getJson(s, "/redfish/v1/Systems/tenant1-vms.vm-a");
    expect(body).toMatchObject({
      "@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem",
      Id: "tenant1-vms.vm-a",
      Name: "vm-a",
      UUID: "5d307ca9-b3ef-428c-8861-06e72d69f223",
      SystemType: "Virtual",
      Manufacturer: "KubeVirt",
      Model: "q35",
      SerialNumber: "serial-vm-a",
      PowerState: "On",
      Status: { State: "Enabled", Health: "OK" },
      // 2 sockets x 2 cores x 2 threads
      ProcessorSummary: { Count: 2, CoreCount: 4, LogicalProcessorCount: 8 },
      MemorySummary: { TotalSystemMemoryGiB: 4 },
      EthernetInterfaces: { "@odata.id": "/redfish/v1/Systems/tenant1-vms.vm-a/EthernetInterfaces" },
      Links: {
        ManagedBy: [{ "@odata.id": "/redfish/v1/Managers/tenant1-vms.vm-a" }],
        Chassis: [{ "@odata.id": "/redfish/v1/Chassis/tenant1" }],
      },
      Actions: {
        "#ComputerSystem.Reset": {
          target: "/redfish/v1/Systems/tenant1-vms.vm-a/Actions/ComputerSystem.Reset",
          "ResetType@Redfish.AllowableValues": [...RESET_TYPES],
        },
      },
    });
    expect(body.Boot["BootSourceOverrideTarget@Redfish.AllowableValues"]).toEqual(expect.arrayContaining(["Pxe", "Cd", "Hdd"]));
    expect(body.Boot.BootSourceOverrideEnabled).toBe("Disabled");
    // Nmi and PowerCycle are not offered (sushy validates against this list before posting)
    expect(body.Actions["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"]).not.toContain("Nmi");
    expect((await getJson(s, "/redfish/v1/Systems/tenant1-vms.vm-b")).body.PowerState).toBe("Off");
  });

  it("derives processors and memory from the VMI, the template, or resource requests", async () => {
    const s = testService();
    const plain = vm("tenant1-vms", "sized", { memory: { request: "1536Mi" } });
    // no topology: vCPUs from the CPU limit (rounded up), sockets 1
    (plain.spec as Json).template.spec.domain.resources.limits = { cpu: "2500m" };
    s.cache.apply("VirtualMachine", "ADDED", plain);
    let { body } = await getJson(s, "/redfish/v1/Systems/tenant1-vms.sized");
    expect(body.ProcessorSummary).toMatchObject({ Count: 1, CoreCount: 3, LogicalProcessorCount: 3 });
    expect(body.MemorySummary.TotalSystemMemoryGiB).toBe(1.5);

    // the running VMI reports what KubeVirt applied (e.g. from an instancetype): it wins
    const vmi = runningVmi(plain);
    (vmi.status as Json).currentCPUTopology = { sockets: 4, cores: 1, threads: 1 };
    (vmi.status as Json).memory = { guestCurrent: "8Gi" };
    s.cache.apply("VirtualMachineInstance", "ADDED", vmi);
    ({ body } = await getJson(s, "/redfish/v1/Systems/tenant1-vms.sized"));
    expect(body.ProcessorSummary).toMatchObject({ Count: 4, CoreCount: 4, LogicalProcessorCount: 4 });
    expect(body.MemorySummary.TotalSystemMemoryGiB).toBe(8);

    // without a firmware uuid: KubeVirt's name-based legacy UUID
    const noUuid = vm("tenant1-vms", "legacy");
    delete (noUuid.spec as Json).template.spec.domain.firmware;
    s.cache.apply("VirtualMachine", "ADDED", noUuid);
    ({ body } = await getJson(s, "/redfish/v1/Systems/tenant1-vms.legacy"));
    expect(body.UUID).toBe(firmwareUuid({ vm: noUuid, dataVolumes: [] }));
    expect(body.UUID).toBe(uuidV5("6a1a24a1-4061-4607-8bf4-a3963d0c5895", "legacy"));
    expect(body.SerialNumber).toBe(noUuid.metadata.uid);
  });

  it("reports KubeVirt error states as Health Warning", async () => {
    const s = testService();
    const broken = revise(s.cache.getVm("tenant1-vms", "vm-b")!.vm as never, (v: Json) => (v.status.printableStatus = "ErrorUnschedulable"));
    s.cache.apply("VirtualMachine", "MODIFIED", broken);
    const { body } = await getJson(s, "/redfish/v1/Systems/tenant1-vms.vm-b");
    expect(body.Status).toEqual({ State: "Enabled", Health: "Warning", HealthRollup: "Warning" });
  });

  it("serves EthernetInterfaces with MAC addresses (spec MACs, else the ones the running VMI reports)", async () => {
    const s = testService();
    const list = await getJson(s, "/redfish/v1/Systems/tenant1-vms.vm-b/EthernetInterfaces");
    expect(list.body.Members).toEqual([
      { "@odata.id": "/redfish/v1/Systems/tenant1-vms.vm-b/EthernetInterfaces/nic0" },
      { "@odata.id": "/redfish/v1/Systems/tenant1-vms.vm-b/EthernetInterfaces/nic1" },
    ]);
    const nic = await getJson(s, "/redfish/v1/Systems/tenant1-vms.vm-b/EthernetInterfaces/nic1");
    expect(nic.body).toMatchObject({
      "@odata.type": "#EthernetInterface.v1_6_0.EthernetInterface",
      Id: "nic1",
      MACAddress: "02:00:00:aa:bb:03",
      PermanentMACAddress: "02:00:00:aa:bb:03",
      // sushy's EthernetInterfaceCollection.summary only reports MACs whose Health is OK
      Status: { State: "Enabled", Health: "OK" },
      LinkStatus: "NoLink",
    });

    const dynamic = vm("tenant1-vms", "dyn", { interfaces: [{ name: "default" }] });
    s.cache.apply("VirtualMachine", "ADDED", dynamic);
    expect((await getJson(s, "/redfish/v1/Systems/tenant1-vms.dyn/EthernetInterfaces/default")).body.MACAddress).toBeNull();
    s.cache.apply("VirtualMachineInstance", "ADDED", runningVmi(dynamic, { ip: "10.0.2.15" }));
    const running = (await getJson(s, "/redfish/v1/Systems/tenant1-vms.dyn/EthernetInterfaces/default")).body;
    expect(running).toMatchObject({ MACAddress: "02:00:00:ff:00:00", LinkStatus: "LinkUp", IPv4Addresses: [{ Address: "10.0.2.15" }] });
    expect(running.IPv6Addresses).toEqual([{ Address: "fd10:0:2::2" }]);

    expect((await getJson(s, "/redfish/v1/Systems/tenant1-vms.vm-b/EthernetInterfaces/nope")).status).toBe(404);
  });

  it("accepts a bare VM name when it is unique among the user's chassis", async () => {
    const s = testService();
    const bare = await getJson(s, "/redfish/v1/Systems/vm-a");
    expect(bare.status).toBe(200);
    expect(bare.body["@odata.id"]).toBe("/redfish/v1/Systems/tenant1-vms.vm-a");
    expect((await getJson(s, "/redfish/v1/Managers/vm-a")).body.Id).toBe("tenant1-vms.vm-a");

    // carol sees tenant1 and tenant2: a name in both is ambiguous, the canonical id still works
    s.cache.apply("VirtualMachine", "ADDED", vm("tenant2-vms", "vm-a", { labels: { redfish: "true" } }));
    expect((await getJson(s, "/redfish/v1/Systems/vm-a", AUTH.carol)).status).toBe(404);
    expect((await getJson(s, "/redfish/v1/Systems/tenant2-vms.vm-a", AUTH.carol)).status).toBe(200);
    // alice still sees only one vm-a
    expect((await getJson(s, "/redfish/v1/Systems/vm-a")).status).toBe(200);

    // VM names may contain dots: namespace is what precedes the first dot
    s.cache.apply("VirtualMachine", "ADDED", vm("tenant1-vms", "web.prod"));
    expect((await getJson(s, "/redfish/v1/Systems/tenant1-vms.web.prod")).body.Name).toBe("web.prod");
    expect((await getJson(s, "/redfish/v1/Systems/web.prod")).body.Id).toBe("tenant1-vms.web.prod");
  });

  it("sees a cluster change on the next request (no response cache)", async () => {
    const s = testService();
    const before = await getJson(s, "/redfish/v1/Systems/tenant1-vms.vm-b");
    const started = revise(s.cache.getVm("tenant1-vms", "vm-b")!.vm as never, (v: Json) => {
      v.spec.runStrategy = "Always";
      v.status.printableStatus = "Running";
    });
    s.cache.apply("VirtualMachine", "MODIFIED", started);
    s.cache.apply("VirtualMachineInstance", "ADDED", runningVmi(started));
    const after = await getJson(s, "/redfish/v1/Systems/tenant1-vms.vm-b");
    expect(before.body.PowerState).toBe("Off");
    expect(after.body.PowerState).toBe("On");
    expect(after.headers.get("ETag")).not.toBe(before.headers.get("ETag"));
  });
});

describe("Chassis and Managers", () => {
  it("has one chassis per configured chassis of the user, linking its systems", async () => {
    const s = testService();
    expect((await getJson(s, "/redfish/v1/Chassis")).body.Members).toEqual([{ "@odata.id": "/redfish/v1/Chassis/tenant1" }]);
    expect((await getJson(s, "/redfish/v1/Chassis", AUTH.carol)).body.Members).toHaveLength(2);
    const { body } = await getJson(s, "/redfish/v1/Chassis/tenant2", AUTH.bob);
    expect(body).toMatchObject({ Id: "tenant2", ChassisType: "Zone", Links: { ComputerSystems: [{ "@odata.id": "/redfish/v1/Systems/tenant2-vms.vm-c" }] } });
    expect(body.Description).toContain("tenant2-vms");
  });

  it("has one Manager per system, managing exactly that system", async () => {
    const s = testService();
    expect((await getJson(s, "/redfish/v1/Managers")).body.Members).toEqual([
      { "@odata.id": "/redfish/v1/Managers/tenant1-vms.vm-a" },
      { "@odata.id": "/redfish/v1/Managers/tenant1-vms.vm-b" },
    ]);
    const { body } = await getJson(s, "/redfish/v1/Managers/tenant1-vms.vm-b");
    expect(body).toMatchObject({
      "@odata.type": "#Manager.v1_10_0.Manager",
      ManagerType: "BMC",
      Links: { ManagerForServers: [{ "@odata.id": "/redfish/v1/Systems/tenant1-vms.vm-b" }], ManagerForChassis: [{ "@odata.id": "/redfish/v1/Chassis/tenant1" }] },
    });
    expect(body.UUID).toMatch(/^[0-9a-f-]{36}$/);
    expect(body.UUID).not.toBe((await getJson(s, "/redfish/v1/Systems/tenant1-vms.vm-b")).body.UUID);
  });
});

describe("AccountService and TaskService", () => {
  it("shows the user its own account without any secret, and the lockout policy", async () => {
    const s = testService();
    const service = (await getJson(s, "/redfish/v1/AccountService")).body;
    expect(service).toMatchObject({ AccountLockoutThreshold: 3, AccountLockoutDuration: 60, Accounts: { "@odata.id": "/redfish/v1/AccountService/Accounts" } });
    expect((await getJson(s, "/redfish/v1/AccountService/Accounts")).body.Members).toEqual([{ "@odata.id": "/redfish/v1/AccountService/Accounts/alice" }]);
    const res = await s.request("/redfish/v1/AccountService/Accounts/alice", { headers: { Authorization: AUTH.alice } });
    const text = await res.text();
    expect(JSON.parse(text)).toMatchObject({ UserName: "alice", RoleId: "Operator", Enabled: true, Locked: false, Password: null });
    expect(text).not.toContain("$2b$");
    // another user's account is not shown (no ConfigureUsers privilege)
    expect((await getJson(s, "/redfish/v1/AccountService/Accounts/bob")).status).toBe(404);
  });

  it("accepts a login POSTed to SessionService/Sessions/Members, like one to Sessions", async () => {
    const s = testService();
    const login = (path: string, password: string) =>
      s.request(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ UserName: "bob", Password: password }) });
    const res = await login("/redfish/v1/SessionService/Sessions/Members", "bob-Secret-2!");
    expect(res.status).toBe(201);
    const token = res.headers.get("X-Auth-Token")!;
    expect(res.headers.get("Location")).toMatch(/^\/redfish\/v1\/SessionService\/Sessions\/[^/]+$/);
    const sessions = await s.request("/redfish/v1/SessionService/Sessions", { headers: { "X-Auth-Token": token } });
    expect(((await sessions.json()) as Json).Members).toEqual([{ "@odata.id": res.headers.get("Location") }]);
    expect((await login("/redfish/v1/SessionService/Sessions/Members", "wrong")).status).toBe(401);
    // only POST: reading "Members" needs credentials and is not a session
    expect((await s.request("/redfish/v1/SessionService/Sessions/Members")).status).toBe(401);
    expect((await s.request("/redfish/v1/SessionService/Sessions/Members", { headers: { "X-Auth-Token": token } })).status).toBe(405);
  });

  it("serves the predefined roles, and every account's RoleId resolves to one of them", async () => {
    const s = testService();
    expect((await getJson(s, "/redfish/v1/AccountService")).body.Roles).toEqual({ "@odata.id": "/redfish/v1/AccountService/Roles" });
    const roles = (await getJson(s, "/redfish/v1/AccountService/Roles")).body;
    expect(roles.Members.map((m: Json) => m["@odata.id"])).toEqual(
      ["Administrator", "Operator", "ReadOnly"].map(r => `/redfish/v1/AccountService/Roles/${r}`),
    );
    const account = (await getJson(s, "/redfish/v1/AccountService/Accounts/alice")).body;
    expect(account.Links.Role["@odata.id"]).toBe(`/redfish/v1/AccountService/Roles/${account.RoleId}`);
    const role = (await getJson(s, account.Links.Role["@odata.id"])).body;
    expect(role).toMatchObject({ "@odata.type": "#Role.v1_3_0.Role", RoleId: "Operator", IsPredefined: true });
    // an Operator acts on its systems but does not configure users or the service
    expect(role.AssignedPrivileges).toEqual(expect.arrayContaining(["Login", "ConfigureComponents", "ConfigureSelf"]));
    expect(role.AssignedPrivileges).not.toContain("ConfigureUsers");
    expect(role.AssignedPrivileges).not.toContain("ConfigureManager");
    expect((await getJson(s, "/redfish/v1/AccountService/Roles/Root")).status).toBe(404);
    expect((await getJson(s, "/redfish/v1/AccountService/Roles/toString")).status).toBe(404);
    expect((await s.request("/redfish/v1/AccountService/Roles")).status).toBe(401);
  });

  it("serves an empty task collection until tasks exist; tasks are visible with their system", async () => {
    const s = testService();
    expect((await getJson(s, "/redfish/v1/TaskService")).body).toMatchObject({ ServiceEnabled: true, Tasks: { "@odata.id": "/redfish/v1/TaskService/Tasks" } });
    expect((await getJson(s, "/redfish/v1/TaskService/Tasks")).body.Members).toEqual([]);
    expect((await getJson(s, "/redfish/v1/TaskService/Tasks/1")).status).toBe(404);

    const tasks = [
      { id: "t-a", namespace: "tenant1-vms", vmName: "vm-a", body: { Name: "Insert media", TaskState: "Running", PercentComplete: 42 } },
      { id: "t-c", namespace: "tenant2-vms", vmName: "vm-c", body: { Name: "Insert media", TaskState: "Completed", PercentComplete: 100 } },
    ];
    const withTasks = testService({ tasks: { list: () => tasks, get: id => tasks.find(t => t.id === id) } });
    expect((await getJson(withTasks, "/redfish/v1/TaskService/Tasks")).body.Members).toEqual([{ "@odata.id": "/redfish/v1/TaskService/Tasks/t-a" }]);
    expect((await getJson(withTasks, "/redfish/v1/TaskService/Tasks/t-a")).body).toMatchObject({
      "@odata.type": "#Task.v1_7_0.Task",
      Id: "t-a",
      TaskState: "Running",
      PercentComplete: 42,
    });
    expect((await getJson(withTasks, "/redfish/v1/TaskService/Tasks/t-c")).status).toBe(404);
    expect((await getJson(withTasks, "/redfish/v1/TaskService/Tasks/t-c", AUTH.bob)).status).toBe(200);
  });
});

describe("health endpoint", () => {
  it("is 503 until the cache has its initial lists, then 200", async () => {
    const s = testService();
    expect((await s.request("/healthz")).status).toBe(200);
    const { WatchCache } = await import("../../redfish/cache/store");
    const { createRedfishApp } = await import("../../redfish/app");
    const cold = createRedfishApp({ cache: new WatchCache(), config: () => testConfig() });
    expect((await cold.request("/healthz")).status).toBe(503);
  });
});
