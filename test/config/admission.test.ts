// The module-config capability as an admission pod runs it (PEPR_WATCH_MODE=false): no Watch bindings,
// the configuration arrives through Pepr's own Store object for this capability.
import { beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../capabilities/config/load";
import { encodePublishedConfig, publicConfig, STORE_CONFIG_DATA_KEY } from "../../capabilities/config/publish";
import type { ModuleConfig } from "../../capabilities/config/schema";

let capability: typeof import("../../capabilities/config");
let runtime: typeof import("../../capabilities/config/runtime");

function config(yaml: string, usersYaml?: string): ModuleConfig {
  const result = loadConfig({ configYaml: yaml, usersYaml, env: {} });
  if (!result.ok) throw new Error(result.errors.join("\n"));
  return result.config;
}

// What Pepr's StoreController hands each capability's Storage: the PeprStore data with the
// "<capability>-" prefix removed (pepr dist/lib.js, StoreController #receive).
function storeDataFor(data: Record<string, string>): Record<string, string> {
  const prefix = "module-config-";
  return Object.fromEntries(Object.entries(data).filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
}

beforeAll(async () => {
  process.env.PEPR_WATCH_MODE = "false";
  delete process.env.PEPR_MODE;
  capability = await import("../../capabilities/config");
  runtime = await import("../../capabilities/config/runtime");
});

describe("module-config in an admission pod", () => {
  it("registers no Watch bindings", () => {
    expect(capability.ModuleConfig.bindings.filter(b => b.isWatch)).toEqual([]);
  });

  it("the data key the watcher patches is the key Pepr's Store writes and reads for Store item \"config\"", () => {
    const storage = capability.ModuleConfig.registerStore();
    const sent: unknown[][] = [];
    storage.registerSender((...args: unknown[]) => {
      sent.push(args);
    });
    capability.ModuleConfig.Store.setItem("config", "probe");
    // Pepr's sender writes path `/data/<capability>-<key>`, i.e. data key "module-config-v2-config".
    expect(sent).toEqual([["add", ["v2-config"], "probe"]]);
    expect(STORE_CONFIG_DATA_KEY).toBe(`module-config-${(sent[0][1] as string[])[0]}`);

    // Until the watcher has published, the pod has no config and every capability is inert.
    storage.receive(storeDataFor({ "__pepr_do_not_delete__": "k-thx-bye" }));
    expect(runtime.currentConfig()).toBeUndefined();

    const published = config(
      "chassis: [{name: t1, namespace: t1-vms}]\ninfra: {namespace: t1-vms, labels: a=b}\ndatavolumePolicy: {enabled: true}\n",
      "- {username: admin, password: Never-In-Store-1, chassis: [t1]}\n",
    );
    const value = encodePublishedConfig(published, "77");
    expect(value).not.toContain("Never-In-Store-1");
    storage.receive(storeDataFor({ "__pepr_do_not_delete__": "k-thx-bye", [STORE_CONFIG_DATA_KEY]: value }));
    expect(runtime.currentConfig()).toEqual(publicConfig(published));
    expect(runtime.configStatus()).toMatchObject({ generation: 1, configMapResourceVersion: "77", source: "Store" });

    // Another capability's Store change notifies every subscriber; nothing is re-applied.
    storage.receive(storeDataFor({ [STORE_CONFIG_DATA_KEY]: value, "node-identity-v2-x": "1" }));
    expect(runtime.configStatus().generation).toBe(1);

    // A broken value (e.g. written by a newer watcher during an upgrade) keeps the last good config.
    const before = runtime.currentConfig();
    storage.receive(storeDataFor({ [STORE_CONFIG_DATA_KEY]: JSON.stringify({ format: 1, hash: "x", configMapResourceVersion: "78", config: { role: "everything" } }) }));
    expect(runtime.currentConfig()).toBe(before);

    // A new config replaces it.
    storage.receive(storeDataFor({ [STORE_CONFIG_DATA_KEY]: encodePublishedConfig(config("role: nested\n"), "79") }));
    expect(runtime.currentConfig()?.role).toBe("nested");
    expect(runtime.configStatus()).toMatchObject({ generation: 2, configMapResourceVersion: "79" });
  });
});
