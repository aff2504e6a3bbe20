// The response cache of the hot GETs (redfish/response-cache.ts): a changed record never serves the old body or
// ETag, principals with different views of a system never share a body, conditional requests stay right, and
// the headers of a cached response are those of any other Redfish response.
import { describe, expect, it } from "vitest";
import { MAX_VIEWS_PER_SYSTEM, ResponseCache } from "../../redfish/response-cache";
import { chassisDefinitions } from "../../redfish/settings";
import { basic, revise, testConfig, testService, vm, type TestService } from "./fixtures";

type Json = Record<string, any>;

const SYSTEM = "/redfish/v1/Systems/tenant1-vms.vm-a";

async function get(s: TestService, path: string, auth: string, headers: Record<string, string> = {}) {
  const res = await s.request(path, { headers: { Authorization: auth, ...headers } });
  return { res, status: res.status, etag: res.headers.get("ETag"), body: res.status === 200 ? ((await res.json()) as Json) : undefined };
}

const alice = basic("alice", "alice-Secret-1!");

describe("ResponseCache", () => {
  it("renders once per record and key, again when the VM's record is replaced", () => {
    const cache = new ResponseCache();
    let renders = 0;
    const render = (n: number) => () => {
      renders++;
      return { n };
    };
    const record = {};
    const first = cache.representation("uid-1", record, "a", render(1));
    expect(cache.representation("uid-1", record, "a", render(2))).toBe(first);
    expect(renders).toBe(1);
    expect(JSON.parse(first.body.toString())).toEqual({ n: 1 });
    const replaced = cache.representation("uid-1", {}, "a", render(3));
    expect(JSON.parse(replaced.body.toString())).toEqual({ n: 3 });
    expect(replaced.etag).not.toBe(first.etag);
    // The old record's entries went with it: the first record is a miss again.
    expect(JSON.parse(cache.representation("uid-1", record, "a", render(4)).body.toString())).toEqual({ n: 4 });
    expect(renders).toBe(3);
  });

  it("keeps at most MAX_VIEWS_PER_SYSTEM views per VM and the most recently used VMs up to its bound", () => {
    const cache = new ResponseCache(3);
    const record = {};
    let renders = 0;
    const render = () => {
      renders++;
      return { renders };
    };
    for (let i = 0; i <= MAX_VIEWS_PER_SYSTEM; i++) cache.representation("uid-1", record, `view-${i}`, render);
    expect(renders).toBe(MAX_VIEWS_PER_SYSTEM + 1);
    cache.representation("uid-1", record, `view-${MAX_VIEWS_PER_SYSTEM}`, render); // still there
    expect(renders).toBe(MAX_VIEWS_PER_SYSTEM + 1);
    cache.representation("uid-1", record, "view-0", render); // the oldest view went
    expect(renders).toBe(MAX_VIEWS_PER_SYSTEM + 2);

    const records = [{}, {}, {}, {}];
    for (const [i, r] of records.entries()) cache.representation(`vm-${i}`, r, "v", render);
    expect(cache.size).toBe(3);
    const before = renders;
    cache.representation("vm-3", records[3], "v", render);
    cache.representation("vm-2", records[2], "v", render);
    cache.representation("vm-1", records[1], "v", render);
    expect(renders).toBe(before); // the three most recent are cached
    cache.representation("vm-0", records[0], "v", render);
    expect(renders).toBe(before + 1); // vm-0 was the least recently used
    cache.representation("vm-3", records[3], "v", render);
    expect(renders).toBe(before + 2); // vm-0 pushed out vm-3, now the least recently used
  });
});

describe("cached GETs through the app", () => {
  it("a change of the VM or its VMI is served at once, with a new ETag; the old ETag no longer gives 304", async () => {
    const s = testService();
    const before = await get(s, SYSTEM, alice);
    expect(before.status).toBe(200);
    expect(before.body!.SerialNumber).toBe("serial-vm-a");
    expect(before.body!.PowerState).toBe("On");
    expect((await get(s, SYSTEM, alice)).etag).toBe(before.etag);
    expect((await get(s, SYSTEM, alice, { "If-None-Match": before.etag! })).status).toBe(304);

    const oldVm = s.cache.getVm("tenant1-vms", "vm-a")!.vm;
    s.cache.apply("VirtualMachine", "MODIFIED", revise(structuredClone(oldVm) as any, (v: any) => (v.spec.template.spec.domain.firmware.serial = "serial-changed")));
    const afterSerial = await get(s, SYSTEM, alice, { "If-None-Match": before.etag! });
    expect(afterSerial.status).toBe(200);
    expect(afterSerial.body!.SerialNumber).toBe("serial-changed");
    expect(afterSerial.etag).not.toBe(before.etag);

    // The VMI goes away (the guest stopped; runStrategy Always starts it again): the same VM object, a new record.
    const vmi = s.cache.getVm("tenant1-vms", "vm-a")!.vmi!;
    s.cache.apply("VirtualMachineInstance", "DELETED", vmi as any);
    const afterOff = await get(s, SYSTEM, alice);
    expect(afterOff.body!.PowerState).toBe("PoweringOn");
    expect(afterOff.etag).not.toBe(afterSerial.etag);
    expect((await get(s, SYSTEM, alice, { "If-None-Match": afterSerial.etag! })).status).toBe(200);
    expect((await get(s, SYSTEM, alice, { "If-None-Match": afterOff.etag! })).status).toBe(304);
  });

  it("SecureBoot and the Manager follow a change of their system too", async () => {
    const s = testService();
    const secureBoot = `${SYSTEM}/SecureBoot`;
    const manager = "/redfish/v1/Managers/tenant1-vms.vm-a";
    const sbBefore = await get(s, secureBoot, alice);
    const mgrBefore = await get(s, manager, alice);
    expect(sbBefore.body!.SecureBootEnable).toBe(false);

    const oldVm = s.cache.getVm("tenant1-vms", "vm-a")!.vm;
    s.cache.apply(
      "VirtualMachine",
      "MODIFIED",
      revise(structuredClone(oldVm) as any, (v: any) => {
        v.spec.template.spec.domain.firmware.bootloader = { efi: { secureBoot: true } };
        v.spec.template.spec.domain.firmware.uuid = "6e307ca9-b3ef-428c-8861-06e72d69f224";
      }),
    );
    const sbAfter = await get(s, secureBoot, alice);
    expect(sbAfter.body!.SecureBootEnable).toBe(true);
    expect(sbAfter.etag).not.toBe(sbBefore.etag);
    const mgrAfter = await get(s, manager, alice);
    expect(mgrAfter.body!.UUID).not.toBe(mgrBefore.body!.UUID);
    expect(mgrAfter.etag).not.toBe(mgrBefore.etag);
  });

  it("principals who see a system through different chassis never get each other's body", async () => {
    // tenant1 holds every VM of tenant1-vms, gold only those labelled tier=gold: vm-g is in both.
    const config = testConfig({
      chassis: [
        { name: "tenant1", namespace: "tenant1-vms" },
        { name: "gold", namespace: "tenant1-vms", vmSelector: { matchLabels: { tier: "gold" } } },
        { name: "tenant2", namespace: "tenant2-vms" },
      ],
      authentication: {
        users: [
          { username: "alice", password: "alice-pass-1", chassis: ["tenant1"] },
          { username: "gina", password: "gina-pass-1", chassis: ["gold"] },
          { username: "carol", password: "carol-pass-1", chassis: ["tenant1", "gold"] },
          { username: "tom", password: "tom-pass-1", chassis: ["tenant2"] },
        ],
      },
    });
    const s = testService();
    s.config.current = config;
    s.cache.setChassis(chassisDefinitions(config));
    s.cache.apply("VirtualMachine", "ADDED", vm("tenant1-vms", "vm-g", { labels: { tier: "gold" } }));
    const users = {
      alice: { auth: basic("alice", "alice-pass-1"), chassis: ["tenant1"] },
      gina: { auth: basic("gina", "gina-pass-1"), chassis: ["gold"] },
      carol: { auth: basic("carol", "carol-pass-1"), chassis: ["tenant1", "gold"] },
    };
    const paths = {
      system: { path: "/redfish/v1/Systems/tenant1-vms.vm-g", links: (b: Json) => b.Links.Chassis },
      manager: { path: "/redfish/v1/Managers/tenant1-vms.vm-g", links: (b: Json) => b.Links.ManagerForChassis },
    };
    // Interleaved, twice: the second round is served from the cache.
    for (let round = 0; round < 2; round++) {
      for (const { path, links } of Object.values(paths)) {
        const etags = new Set<string>();
        for (const [name, user] of Object.entries(users)) {
          const answer = await get(s, path, user.auth);
          expect(answer.status, `${name} ${path}`).toBe(200);
          expect(links(answer.body!), `${name} ${path}`).toEqual(user.chassis.map(c => ({ "@odata.id": `/redfish/v1/Chassis/${c}` })));
          etags.add(answer.etag!);
        }
        expect(etags.size, path).toBe(3);
      }
    }
    // Someone who sees none of those chassis gets the 404 of a missing system, cache or not.
    const tom = await get(s, paths.system.path, basic("tom", "tom-pass-1"));
    expect(tom.status).toBe(404);
  });

  it("a cached response has the headers of any Redfish GET, and HEAD the same ones without a body", async () => {
    const s = testService();
    for (let i = 0; i < 2; i++) {
      const { res, body } = await get(s, SYSTEM, alice);
      expect(res.headers.get("OData-Version")).toBe("4.0");
      expect(res.headers.get("Cache-Control")).toBe("private, no-cache");
      expect(res.headers.get("Allow")).toBe("GET, HEAD, PATCH");
      expect(res.headers.get("Content-Type")).toBe("application/json; charset=utf-8");
      expect(res.headers.get("Link")).toBe("<http://redfish.dmtf.org/schemas/v1/ComputerSystem.v1_20_0.json>; rel=describedby");
      expect(Number(res.headers.get("Content-Length"))).toBe(Buffer.byteLength(JSON.stringify(body)));
    }
    const head = await s.request(SYSTEM, { method: "HEAD", headers: { Authorization: alice } });
    expect(head.status).toBe(200);
    expect(head.headers.get("Allow")).toBe("GET, HEAD, PATCH");
    expect(head.headers.get("OData-Version")).toBe("4.0");
    expect(await head.text()).toBe("");
    const notModified = await get(s, SYSTEM, alice, { "If-None-Match": (await get(s, SYSTEM, alice)).etag! });
    expect(notModified.status).toBe(304);
    expect(notModified.res.headers.get("OData-Version")).toBe("4.0");
    expect(notModified.res.headers.get("Allow")).toBe("GET, HEAD, PATCH");
    // Errors thrown before the resource (authentication) and after it (a missing system) carry them too.
    for (const [auth, status] of [[basic("alice", "wrong-password"), 401], [alice, 404]] as const) {
      const error = await s.request("/redfish/v1/Systems/tenant1-vms.nope", { headers: { Authorization: auth } });
      expect(error.status).toBe(status);
      expect(error.headers.get("OData-Version")).toBe("4.0");
      expect(error.headers.get("Cache-Control")).toBe("private, no-cache");
    }
  });
});
