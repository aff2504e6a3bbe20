// The Helm chart the post-build step writes. `helm` is not available here, so: values.yaml and user values
// are validated against values.schema.json with a JSON Schema validator (as `helm install` does), the
// module-config part of the schema is checked against the zod schema it is generated from, every
// `.Values.*` a template reads must exist in the schema, and template actions must balance. The templates printed
// from the manifest's descriptions (the module's objects, webhooks, RBAC) are rendered and compared with the manifest
// in chart-objects.test.ts.
import Ajv from "ajv";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import { z } from "zod";
import { loadConfig } from "../../capabilities/config/load";
import { moduleConfigSchema } from "../../capabilities/config/schema";
import { DEFAULT_DENIED_RANGES } from "../../redfish/url-policy";
import { deployValuesSchema } from "../../scripts/deploy/values";
import { build, copyDist, fullValues, helmMerge, isMap, removeDir, UUID } from "./helpers";

type Json = Record<string, any>;

let dist: string;
let chart: string;
let values: Json;
let schema: Json;
let templates: Record<string, string>;

beforeAll(async () => {
  dist = await copyDist();
  await build(dist);
  chart = path.join(dist, `${UUID}-chart`);
  values = YAML.parse(fs.readFileSync(path.join(chart, "values.yaml"), "utf8"));
  schema = JSON.parse(fs.readFileSync(path.join(chart, "values.schema.json"), "utf8"));
  templates = Object.fromEntries(
    fs.readdirSync(path.join(chart, "templates")).map(f => [f, fs.readFileSync(path.join(chart, "templates", f), "utf8")]),
  );
});

afterAll(() => removeDir(dist));

let compiled: ReturnType<Ajv["compile"]> | undefined;
function validator() {
  compiled ??= new Ajv({ allErrors: true, strict: false }).compile(schema);
  return compiled;
}

describe("values.yaml and values.schema.json", () => {
  it("keep Pepr's keys and add the module config and deploy", () => {
    for (const key of ["admission", "watcher", "hash", "uuid", "secrets", "rbac"]) expect(values).toHaveProperty(key);
    const configKeys = Object.keys((z.toJSONSchema(moduleConfigSchema, { io: "input" }) as Json).properties);
    for (const key of [...configKeys, "deploy"]) expect(values, key).toHaveProperty(key);
    expect(values.rbac).toEqual([]);
    expect(values.admission.securityContext.seccompProfile).toEqual({ type: "RuntimeDefault" });
  });

  it("validates the chart's own values.yaml", () => {
    const validate = validator();
    expect(validate(values), JSON.stringify(validate.errors)).toBe(true);
  });

  it("validates a full user values file merged over the defaults, as helm install -f does", () => {
    const validate = validator();
    const merged = helmMerge(values, fullValues());
    expect(validate(merged), JSON.stringify(validate.errors)).toBe(true);
    // OpenShift without a fixed UID: the user unsets the UIDs.
    const unset = helmMerge(values, { admission: { securityContext: { runAsUser: null, runAsGroup: null, fsGroup: null } } });
    expect(validate(unset), JSON.stringify(validate.errors)).toBe(true);
  });

  it.each([
    [{ role: "tenant" }, "/role"],
    [{ chasis: [] }, "chasis"],
    [{ deploy: { route: { termination: "passthrough" } } }, "/deploy/route/termination"],
    [{ redfish: { port: "8443" } }, "/redfish/port"],
    [{ chassis: [{ name: "c" }] }, "/chassis/0"],
    [{ authentication: { users: [{ username: "a", chassis: ["c"], pasword: "x" }] } }, "pasword"],
    [{ admission: { failurePolicy: "Fail" } }, "failurePolicy"],
  ])("rejects %j", (bad, where) => {
    const validate = validator();
    expect(validate(helmMerge(values, bad))).toBe(false);
    expect(JSON.stringify(validate.errors)).toContain(where);
  });

  it("has the module-config part generated from the zod schema, and the same for deploy", () => {
    const props = schema.definitions.Values.properties;
    const config = z.toJSONSchema(moduleConfigSchema, { io: "input", target: "draft-7" }) as Json;
    for (const [key, property] of Object.entries(config.properties)) expect(props[key], key).toEqual(property);
    const { $schema: _s, ...deploy } = z.toJSONSchema(deployValuesSchema, { io: "input", target: "draft-7" }) as Json;
    expect(props.deploy).toEqual(deploy);
  });

  it("uses only regular expressions Helm's Go (RE2) validator can compile", () => {
    const patterns: string[] = [];
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) node.forEach(walk);
      else if (isMap(node)) {
        for (const [k, v] of Object.entries(node)) {
          if (k === "pattern" && typeof v === "string") patterns.push(v);
          else walk(v);
        }
      }
    };
    walk(schema);
    expect(patterns.length).toBeGreaterThan(0);
    // RE2 has no lookaround and no backreferences; JavaScript-only syntax would make `helm install` fail.
    expect(patterns.filter(p => /\(\?[=!<]|\\[1-9]|\\k</.test(p))).toEqual([]);
  });

  it("has config defaults the module accepts, and deploy defaults the deploy schema accepts", () => {
    const configKeys = Object.keys((z.toJSONSchema(moduleConfigSchema, { io: "input" }) as Json).properties);
    const { users, ...authentication } = values.authentication;
    const config = { ...Object.fromEntries(configKeys.map(k => [k, values[k]])), authentication };
    const loaded = loadConfig({ configYaml: YAML.stringify(config), usersYaml: YAML.stringify(users), env: {} });
    expect(loaded.ok, loaded.ok ? "" : loaded.errors.join("\n")).toBe(true);
    expect(deployValuesSchema.safeParse(values.deploy).success).toBe(true);
    // Rule-set modes are left out so that datavolumePolicy.mode still cascades when a user sets it.
    expect(values.datavolumePolicy.requiredLabels).toEqual({});
  });
});

describe("templates", () => {
  const OPEN = /\{\{-?\s*(if|with|range|define)\b/g;
  const END = /\{\{-?\s*end\s*-?\}\}/g;

  it("balance their block actions", () => {
    for (const [file, text] of Object.entries(templates)) {
      expect((text.match(OPEN) ?? []).length, file).toBe((text.match(END) ?? []).length);
    }
  });

  /** Follows a .Values path through the schema ($ref, properties, free-form maps). */
  function schemaHas(pathParts: string[]): boolean {
    const resolve = (node: Json): Json => (node.$ref ? schema.definitions[node.$ref.replace("#/definitions/", "")] : node);
    let node: Json = resolve(schema.definitions.Values);
    for (const part of pathParts) {
      node = resolve(node);
      if (node.properties?.[part]) node = node.properties[part];
      else if (node.additionalProperties === true || isMap(node.additionalProperties)) return true;
      else return false;
    }
    return true;
  }

  it("only read values the schema defines", () => {
    const missing: string[] = [];
    for (const [file, text] of Object.entries(templates)) {
      for (const match of text.matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) {
        const parts = match[1].slice(1).split(".");
        if (parts[0] === "AsMap") continue;
        if (!schemaHas(parts)) missing.push(`${file}: .Values.${parts.join(".")}`);
      }
      for (const match of text.matchAll(/dig ((?:"[^"]+" )+)"" \.Values\.AsMap/g)) {
        const parts = [...match[1].matchAll(/"([^"]+)"/g)].map(m => m[1]);
        if (!schemaHas(parts)) missing.push(`${file}: dig ${parts.join(".")}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it("add the Redfish Service, Route, config objects and SCC binding, and keep Pepr's webhooks' CA and paths", () => {
    for (const file of [
      "kubevirt-infra-redfish-service.yaml",
      "kubevirt-infra-redfish-route.yaml",
      "kubevirt-infra-config.yaml",
      "kubevirt-infra-users.yaml",
      "kubevirt-infra-nonroot-scc.yaml",
    ]) {
      expect(templates[file], file).toBeDefined();
    }
    const manifest = fs.readFileSync(path.join(dist, ".pepr-original", `pepr-module-${UUID}.yaml`), "utf8");
    for (const file of ["mutation-webhook.yaml", "validation-webhook.yaml"]) {
      const ca = /caBundle: (\S+)/.exec(templates[file])?.[1];
      const webhookPath = /path: "([^"]+)"/.exec(templates[file])?.[1];
      expect(ca && manifest.includes(ca), `${file} caBundle`).toBe(true);
      expect(webhookPath && manifest.includes(webhookPath), `${file} path`).toBe(true);
    }
    expect(templates["mutation-webhook.yaml"]).toMatch(/failurePolicy: Ignore\n/);
    expect(templates["validation-webhook.yaml"]).toContain('failurePolicy: {{ ternary "Ignore" "Fail" (eq .Values.deploy.dataVolumeWebhook.failurePolicy "Ignore") }}');
    expect(templates["validation-webhook.yaml"]).toContain("{{- $policed := and $policy.enabled (gt (len $namespaces) 0) }}");
    expect(templates["kubevirt-infra-config.yaml"]).toContain('omit .Values.authentication "users"');
    expect(templates["watcher-deployment.yaml"]).toContain("path: /healthz");
    expect(templates["watcher-deployment.yaml"]).toContain("serviceAccountName: {{ .Values.uuid }}-watcher\n");
    expect(templates["watcher-rbac.yaml"]).toContain("kind: ServiceAccount");
    // A Role per chassis namespace with Redfish's rights there, none of them in a ClusterRole.
    expect(templates["chassis-roles.yaml"]).toContain("{{- range $chassisNamespaces }}");
    // The importer NetworkPolicy excepts the same default-denied ranges as the URL policy and the manifest.
    const netpol = templates["kubevirt-infra-importer-network-policy.yaml"];
    for (const range of DEFAULT_DENIED_RANGES) expect(netpol).toContain(JSON.stringify(range));
    expect(netpol).toContain("{{- if and .Values.deploy.importerNetworkPolicy.enabled (ne .Values.role \"nested\") }}");
    expect(templates["chassis-roles.yaml"]).toContain('resources: ["virtualmachines/start"]');
    expect(templates["chassis-roles.yaml"]).toContain('resources: ["datavolumes"]');
    // The DataVolume audit's list+watch: a Role in each policed namespace, with nothing else in it.
    expect(templates["datavolume-audit-roles.yaml"]).toContain("{{- range sortAlpha (uniq $namespaces) }}");
    expect(templates["datavolume-audit-roles.yaml"]).toContain('resources: ["datavolumes"]\n    verbs: ["list", "watch"]');
    expect(templates["datavolume-audit-roles.yaml"]).not.toMatch(/virtualmachines|secrets/);
    for (const file of ["cluster-role.yaml", "watcher-cluster-role.yaml"]) {
      expect(templates[file], file).not.toMatch(/virtualmachines\/start|"patch"\]\n.*virtualmachines|resources: \["secrets"\]\n\s+verbs: \["create"\]/);
    }
  });
});
