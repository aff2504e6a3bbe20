// Memory of the response cache per VM, from the heap (not RSS, which garbage of the requests blurs): N VMs in a
// watch cache, each VM's System, SecureBoot and Manager GET once through an app (what a power sync reads); heap and
// ArrayBuffer bytes after a full GC, before and after. A first app with a one-VM response cache serves the same
// requests first, so whatever the records themselves keep from being rendered is there before the measurement.
//   node --expose-gc --import tsx scripts/bench/response-cache-memory.ts [VMS]
import { moduleConfigSchema } from "../../capabilities/config/schema";
import { createRedfishApp } from "../../redfish/app";
import { WatchCache } from "../../redfish/cache/store";
import { chassisDefinitions } from "../../redfish/settings";
import { demoVirtualMachine } from "../../sandbox/demo";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc");
const vms = Number(process.argv[2] ?? 2_000); // at most MAX_CACHED_SYSTEMS are kept
const used = () => {
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

async function main(): Promise<void> {
  const config = moduleConfigSchema.parse({
    role: "infra",
    chassis: [{ name: "fleet", namespace: "fleet-vms" }],
    authentication: { users: [{ username: "ironic", password: "ironic-password-1", chassis: ["fleet"] }] },
  });
  const cache = new WatchCache(chassisDefinitions(config));
  const names = Array.from({ length: vms }, (_, i) => `node-${String(i).padStart(5, "0")}`);
  cache.applyList(
    "VirtualMachine",
    names.map((name, i) => demoVirtualMachine("fleet-vms", name, `5e1d0000-0000-4000-8000-${String(i).padStart(12, "0")}`, `02:00:00:00:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 0xff).toString(16).padStart(2, "0")}`)),
  );
  cache.applyList("VirtualMachineInstance", []);
  cache.applyList("DataVolume", []);
  const auth = `Basic ${Buffer.from("ironic:ironic-password-1").toString("base64")}`;
  const fill = async (app: ReturnType<typeof createRedfishApp>) => {
    for (const name of names) {
      for (const path of [`/redfish/v1/Systems/fleet-vms.${name}`, `/redfish/v1/Systems/fleet-vms.${name}/SecureBoot`, `/redfish/v1/Managers/fleet-vms.${name}`]) {
        const res = await app.request(path, { headers: { Authorization: auth } });
        if (res.status !== 200) throw new Error(`GET ${path}: ${res.status}`);
        await res.arrayBuffer();
      }
    }
  };
  await fill(createRedfishApp({ cache, config: () => config, responseCacheSystems: 1 }));
  const app = createRedfishApp({ cache, config: () => config });
  await app.request(`/redfish/v1/Systems/fleet-vms.${names[0]}`, { headers: { Authorization: auth } });
  const empty = used();
  await fill(app);
  const filled = used();
  // A second pass is served from the cache: it must add nothing (nothing else is kept per request).
  await fill(app);
  const again = used();
  process.stdout.write(`${JSON.stringify({ vms, bytesPerVm: Math.round((filled - empty) / vms), secondPassBytesPerVm: Math.round((again - filled) / vms) })}\n`);
  process.exit(0);
}

void main();
