// capabilities/common/pepr-store.ts describes Pepr's PRIVATE Store format. This test is pinned to the Pepr
// release that file describes and checks every fact in it against the installed Pepr's own code: the CRD
// its controller applies, and its StoreController + Storage running against the sandbox API server (Pepr
// creates its Store object there; the module's patch reaches Pepr's `Store.getItem`; Pepr's `Store.setItem`
// lands under the module's data key). A Pepr upgrade fails here first, with the file to re-check named.
import fs from "node:fs";
import Module from "node:module";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import YAML from "yaml";
import "pepr";
import { modelToGroupVersionKind } from "kubernetes-fluent-client";
import { startApiServer, type ApiServer } from "../../sandbox/apiserver";
import { closeSharedKubeClient } from "../../capabilities/common/kube-client";
import { setPeprStoreData } from "../../capabilities/common/gateway";
import {
  MODULE_PEPR_STORE,
  PEPR_STORE_CRD_NAME,
  PEPR_STORE_FORMAT_VERSION,
  PEPR_STORE_NAMESPACE,
  PEPR_STORE_RESOURCE,
  peprStoreDataKey,
  peprStoreRefs,
  peprStoreSetPatch,
} from "../../capabilities/common/pepr-store";

const PEPR_DIR = path.join(__dirname, "../../node_modules/pepr");
const ROOT = path.join(__dirname, "../..");

/**
 * Loads one of Pepr's built CommonJS files (the code that runs in the pods) and hands back top-level
 * bindings it does not export. `drop` removes statements that would act on load (the controller's start-up).
 */
function peprInternals<T>(file: string, names: string[], drop: string[] = []): T {
  const filename = path.join(PEPR_DIR, "dist", file);
  let source = fs.readFileSync(filename, "utf8").replace(/^#!.*\n/, "");
  for (const statement of drop) {
    expect(source, `pepr ${file} no longer contains the statement this test removes: ${statement}`).toContain(statement);
    source = source.replace(statement, "");
  }
  for (const name of names) expect(source, `pepr ${file} no longer defines ${name}`).toMatch(new RegExp(`\\bvar ${name} = `));
  const loaded = new Module(filename) as Module & { _compile(code: string, filename: string): void };
  loaded.filename = filename;
  loaded.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(path.dirname(filename));
  loaded._compile(`${source}\nmodule.exports.__internals = { ${names.join(", ")} };`, filename);
  return (loaded.exports as { __internals: T }).__internals;
}

interface PeprStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}
interface PeprCapability {
  name: string;
  Store: PeprStorage;
}
interface PeprLib {
  Capability: new (cfg: { name: string; description: string }) => PeprCapability;
  StoreController: new (capabilities: PeprCapability[], name: string, onReady?: () => void) => unknown;
  peprStoreGVK: { group: string; version: string; kind: string };
}

describe(`Pepr's private Store format (capabilities/common/pepr-store.ts, written for pepr ${PEPR_STORE_FORMAT_VERSION})`, () => {
  it("the installed Pepr is the release the format was read from", () => {
    const installed = (JSON.parse(fs.readFileSync(path.join(PEPR_DIR, "package.json"), "utf8")) as { version: string }).version;
    expect(
      installed,
      `pepr ${installed} is installed, but capabilities/common/pepr-store.ts describes the private Store format of pepr ` +
        `${PEPR_STORE_FORMAT_VERSION}: re-read Pepr's StoreController and Storage (src/lib/controller/store.ts, storeCache.ts, ` +
        `src/lib/core/storage.ts), update that file, then PEPR_STORE_FORMAT_VERSION`,
    ).toBe(PEPR_STORE_FORMAT_VERSION);
  });

  it("the module's Store object is named after package.json's pepr.uuid", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { pepr: { uuid: string } };
    expect(MODULE_PEPR_STORE).toEqual(peprStoreRefs(pkg.pepr.uuid).store);
  });

  it("the PeprStore resource is the CRD Pepr's controller applies (and the sandbox serves)", () => {
    const { peprStoreCRD } = peprInternals<{ peprStoreCRD: Record<string, any> }>("controller.js", ["peprStoreCRD"], [
      "startup(hash).catch((err) => logger_default.error(err, `Error starting Pepr Controller`));",
      "(0, import_kubernetes_fluent_client.RegisterKind)(Store, peprStoreGVK);",
    ]);
    expect(peprStoreCRD.metadata.name).toBe(PEPR_STORE_CRD_NAME);
    expect(peprStoreCRD.spec).toMatchObject({
      group: PEPR_STORE_RESOURCE.group,
      scope: "Namespaced",
      names: { plural: PEPR_STORE_RESOURCE.plural, kind: PEPR_STORE_RESOURCE.kind },
      versions: [{ name: PEPR_STORE_RESOURCE.version, served: true, storage: true }],
    });
    // Values are strings: what peprStoreSetPatch writes.
    expect(peprStoreCRD.spec.versions[0].schema.openAPIV3Schema.properties.data.additionalProperties).toEqual({ type: "string" });
    const sandboxCrd = YAML.parse(fs.readFileSync(path.join(ROOT, "sandbox/crds/pepr-peprstore.yaml"), "utf8"));
    expect(sandboxCrd).toEqual(JSON.parse(JSON.stringify(peprStoreCRD)));
  });

  describe("Pepr's own StoreController and Storage against the sandbox API server", () => {
    const UUID = "store-format-probe";
    const CAPABILITY = "probe-capability";
    let api: ApiServer;
    let stateDir: string;
    let pepr: PeprLib;
    let capability: PeprCapability;

    beforeAll(async () => {
      api = await startApiServer();
      stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "pepr-store-"));
      const kubeconfig = path.join(stateDir, "kubeconfig");
      await api.writeKubeconfig(kubeconfig);
      // Pepr's kubernetes-fluent-client and the module's client both read KUBECONFIG.
      process.env.KUBECONFIG = kubeconfig;
      await closeSharedKubeClient();
      api.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: PEPR_STORE_NAMESPACE } });

      // The Store kind is registered once per process, by `import "pepr"` above (the same lib.js).
      pepr = peprInternals<PeprLib>("lib.js", ["Capability", "StoreController", "peprStoreGVK"], [
        "(0, import_kubernetes_fluent_client3.RegisterKind)(Store, peprStoreGVK);",
      ]);
      capability = new pepr.Capability({ name: CAPABILITY, description: "probe" });
      const ready = new Promise<void>(resolve => new pepr.StoreController([capability], peprStoreRefs(UUID).store.name, resolve));
      await ready;
    });

    afterAll(async () => {
      await closeSharedKubeClient();
      await api?.close();
      if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
    });

    it("the resource is Pepr's kind, and Pepr creates its Store object where peprStoreRefs says", () => {
      const gvk = { group: PEPR_STORE_RESOURCE.group, version: PEPR_STORE_RESOURCE.version, kind: PEPR_STORE_RESOURCE.kind };
      expect(pepr.peprStoreGVK).toEqual(gvk);
      expect(modelToGroupVersionKind("Store")).toEqual(gvk);
      const { namespace, name } = peprStoreRefs(UUID).store;
      expect(api.store.get(PEPR_STORE_CRD_NAME, namespace, name)?.metadata).toMatchObject({ namespace, name });
    });

    it("a value the module patches under peprStoreDataKey is what Pepr's Store.getItem returns", async () => {
      // '/' and '~' in the key exercise the JSON-pointer escaping of the patch path.
      const key = "module/written~key";
      expect(peprStoreSetPatch(peprStoreDataKey(CAPABILITY, key), "v")[0].path).toBe(`/data/${CAPABILITY}-v2-module~1written~0key`);
      await setPeprStoreData(peprStoreRefs(UUID).store, peprStoreDataKey(CAPABILITY, key), "from the module");
      await vi.waitFor(() => expect(capability.Store.getItem(key)).toBe("from the module"), { timeout: 15_000, interval: 50 });
    });

    it("what Pepr's Store.setItem writes lands under peprStoreDataKey", async () => {
      const key = "pepr/written~key";
      capability.Store.setItem(key, "from Pepr");
      const { namespace, name } = peprStoreRefs(UUID).store;
      // Pepr flushes its Store writes every 4 s.
      await vi.waitFor(
        () => expect((api.store.get(PEPR_STORE_CRD_NAME, namespace, name)?.data as Record<string, string>)[peprStoreDataKey(CAPABILITY, key)]).toBe("from Pepr"),
        { timeout: 15_000, interval: 50 },
      );
    });
  });
});
