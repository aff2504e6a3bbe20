import bcrypt from "bcryptjs";
import { metricsCollector } from "pepr";
import { describe, expect, it } from "vitest";
import YAML from "yaml";
import type { ConfigMapSource, SecretSource } from "../../capabilities/config/load";
import { createStorePublisher, decodePublishedConfig, publicConfig, publicConfigHash } from "../../capabilities/config/publish";
import { ConfigRuntime, peprConfigMetrics, type ConfigRuntimeDeps } from "../../capabilities/config/runtime";
import type { ModuleConfig } from "../../capabilities/config/schema";

const PLAIN_PASSWORD = "Pl41n-Text-Passw0rd";
const HASHED_PASSWORD = "an0ther-secret";
const HASH = bcrypt.hashSync(HASHED_PASSWORD, 4);

interface LogLine {
  level: "info" | "warn" | "error";
  obj: Record<string, unknown>;
  msg: string;
}

function harness(extra: Partial<ConfigRuntimeDeps> = {}) {
  const logs: LogLine[] = [];
  const events: { involved: { metadata?: { name?: string } }; type: string; reason: string; message: string }[] = [];
  const metrics = { applied: [] as [string, string | undefined][], refused: 0 };
  const published: string[] = [];
  const log = (level: LogLine["level"]) => (obj: object, msg: string) => logs.push({ level, obj: obj as Record<string, unknown>, msg });
  const runtime = new ConfigRuntime({
    log: { info: log("info"), warn: log("warn"), error: log("error") },
    recordEvent: async (involved, type, reason, message) => {
      events.push({ involved, type, reason, message });
    },
    metrics: { applied: (hash, previous) => metrics.applied.push([hash, previous]), refused: () => metrics.refused++ },
    env: {},
    ...extra,
  });
  const publisher = createStorePublisher(async value => {
    published.push(value);
  }, { info: () => {}, warn: () => {} });
  return { runtime, logs, events, metrics, published, publisher };
}

let resourceVersion = 100;
function configMap(doc: Record<string, unknown> | string): ConfigMapSource {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: "kubevirt-infra-config", namespace: "pepr-system", uid: "cm-uid", resourceVersion: String(++resourceVersion) },
    data: { "config.yaml": typeof doc === "string" ? doc : YAML.stringify(doc) },
  };
}

function usersSecret(users: unknown[]): SecretSource {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "kubevirt-infra-users", namespace: "pepr-system", uid: "secret-uid", resourceVersion: String(++resourceVersion) },
    data: { "users.yaml": Buffer.from(YAML.stringify(users)).toString("base64") },
  };
}

const goodDoc = {
  chassis: [
    { name: "tenant1", namespace: "tenant1-vms" },
    { name: "tenant2", namespace: "tenant2-vms" },
  ],
  infra: { namespace: "tenant1-vms", labels: "csi-driver/cluster=tenant1" },
  nodeIdentity: { enabled: true },
};
const users = [
  { username: "admin", password: PLAIN_PASSWORD, chassis: ["tenant1", "tenant2"] },
  { username: "ops", passwordHash: HASH, chassis: ["tenant2"] },
];

describe("applying the ConfigMap and Secret", () => {
  it("applies a valid config, notifies listeners, logs the generation and hash, and records an Event", async () => {
    const { runtime, logs, events, metrics } = harness();
    const seen: [ModuleConfig, ModuleConfig | undefined][] = [];
    runtime.onChange((config, previous) => seen.push([config, previous]));
    expect(runtime.current()).toBeUndefined();

    const cm = configMap(goodDoc);
    const outcome = await runtime.applySource({ configMap: cm, usersSecret: usersSecret(users) });
    expect(outcome).toEqual({
      status: "applied",
      warnings: ['users.yaml[0].password: user "admin" has a plain-text password; store a bcrypt hash in passwordHash instead'],
    });
    const config = runtime.current();
    expect(config?.chassis.map(c => c.name)).toEqual(["tenant1", "tenant2"]);
    expect(config?.authentication.users.map(u => u.username)).toEqual(["admin", "ops"]);
    expect(seen).toEqual([[config, undefined]]);

    const hash = publicConfigHash(config!);
    expect(runtime.status()).toEqual({ generation: 1, hash, configMapResourceVersion: cm.metadata?.resourceVersion, source: "ConfigMap" });
    expect(logs.filter(l => l.level === "info")).toEqual([
      {
        level: "info",
        obj: { configGeneration: 1, configHash: hash, configMapResourceVersion: cm.metadata?.resourceVersion, source: "ConfigMap", users: 2 },
        msg: `config applied generation=1 hash=${hash}`,
      },
    ]);
    expect(logs.filter(l => l.level === "warn").map(l => l.msg)).toEqual([
      'config warning: users.yaml[0].password: user "admin" has a plain-text password; store a bcrypt hash in passwordHash instead',
    ]);
    expect(events).toEqual([
      {
        involved: cm,
        type: "Normal",
        reason: "ConfigApplied",
        message: `kubevirt-infra configuration applied with 1 warning(s) (see the watcher log): generation 1, hash ${hash}`,
      },
    ]);
    expect(metrics.applied).toEqual([[hash, undefined]]);
    expect(() => {
      (config as { chassis: unknown[] }).chassis.push({ name: "sneaky" });
    }).toThrow(TypeError);
    expect(JSON.stringify(logs) + JSON.stringify(events)).not.toContain(PLAIN_PASSWORD);
  });

  it("refuses a bad change, keeps the last good config, names the field in the log and the Event", async () => {
    const { runtime, logs, events, metrics } = harness();
    const listener: ModuleConfig[] = [];
    runtime.onChange(config => listener.push(config));
    await runtime.applySource({ configMap: configMap(goodDoc) });
    const good = runtime.current();
    const goodHash = runtime.status().hash;

    const bad = configMap({ ...goodDoc, chassis: [goodDoc.chassis[0], { name: "tenant2", namespace: "Tenant_2" }] });
    const outcome = await runtime.applySource({ configMap: bad });
    const expectedError =
      'chassis[1].namespace: "Tenant_2" is not a valid namespace name (lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters)';
    expect(outcome).toEqual({ status: "refused", errors: [expectedError] });
    expect(runtime.current()).toBe(good);
    expect(runtime.status().generation).toBe(1);
    expect(listener).toHaveLength(1);
    expect(metrics.refused).toBe(1);

    const errorLines = logs.filter(l => l.level === "error");
    expect(errorLines).toEqual([
      {
        level: "error",
        obj: { errors: [expectedError], configHash: goodHash, configMapResourceVersion: bad.metadata?.resourceVersion, usersSecretResourceVersion: undefined },
        msg: `config refused, the previous configuration stays in force (hash ${goodHash}): ${expectedError}`,
      },
    ]);
    expect(events.at(-1)).toEqual({
      involved: bad,
      type: "Warning",
      reason: "ConfigRefused",
      message: `kubevirt-infra configuration refused; the previous configuration stays in force (hash ${goodHash}). ${expectedError}`,
    });

    // Pepr re-lists every 10 minutes and delivers the same object again: refused again, reported once.
    expect((await runtime.applySource({ configMap: bad })).status).toBe("refused");
    expect(logs.filter(l => l.level === "error")).toHaveLength(1);
    expect(events.filter(e => e.reason === "ConfigRefused")).toHaveLength(1);

    // Fixing it applies the fix.
    const fixed = configMap({ ...goodDoc, role: "nested" });
    expect((await runtime.applySource({ configMap: fixed })).status).toBe("applied");
    expect(runtime.current()?.role).toBe("nested");
    expect(listener).toHaveLength(2);
  });

  it("says when no config is in force at all", async () => {
    const { runtime, logs } = harness();
    await runtime.applySource({ configMap: configMap("redfish: {port: 80}\n") });
    expect(runtime.current()).toBeUndefined();
    expect(logs.find(l => l.level === "error")?.msg).toBe(
      "config refused, no configuration is in force (capabilities stay inert): redfish.port: must be at least 1024 (the module runs without privileges)",
    );
  });

  it("a bad users Secret is refused with an Event on the Secret that shows no password", async () => {
    const { runtime, events } = harness();
    await runtime.applySource({ configMap: configMap(goodDoc) });
    const secret = usersSecret([{ username: "admin", password: PLAIN_PASSWORD, passwordHash: HASH, chassis: ["tenant1"] }]);
    const outcome = await runtime.applySource({ usersSecret: secret });
    expect(outcome).toEqual({ status: "refused", errors: ['users.yaml[0]: user "admin" has both password and passwordHash; keep only one'] });
    const event = events.at(-1)!;
    expect(event.involved).toBe(secret);
    expect(event.reason).toBe("ConfigRefused");
    expect(event.message).not.toContain(PLAIN_PASSWORD);
    expect(event.message).not.toContain(HASH);
  });

  it("re-delivering the same objects changes nothing", async () => {
    const { runtime, logs } = harness();
    const calls: unknown[] = [];
    runtime.onChange(c => calls.push(c));
    const cm = configMap(goodDoc);
    await runtime.applySource({ configMap: cm });
    expect(await runtime.applySource({ configMap: cm })).toEqual({ status: "unchanged" });
    // A cosmetic edit (a comment) parses to the same config.
    expect(await runtime.applySource({ configMap: configMap(`# edited\n${YAML.stringify(goodDoc)}`) })).toEqual({ status: "unchanged" });
    expect(calls).toHaveLength(1);
    expect(logs.filter(l => l.msg.startsWith("config applied"))).toHaveLength(1);
  });

  it("deleting the ConfigMap applies the empty config: every capability inert, the Secret's users ignored", async () => {
    const { runtime } = harness();
    await runtime.applySource({ configMap: configMap(goodDoc), usersSecret: usersSecret(users) });
    expect(runtime.current()?.nodeIdentity.enabled).toBe(true);
    expect(await runtime.applySource({ configMap: null })).toEqual({
      status: "applied",
      warnings: ["users.yaml: users ignored because the ConfigMap pepr-system/kubevirt-infra-config does not exist (no chassis)"],
    });
    expect(runtime.current()?.chassis).toEqual([]);
    expect(runtime.current()?.authentication.users).toEqual([]);
    expect(runtime.current()?.nodeIdentity.enabled).toBe(false);
    expect(runtime.status().configMapResourceVersion).toBe("");
  });

  it("a throwing listener does not stop the others; unsubscribe works", async () => {
    const { runtime, logs } = harness();
    const seen: string[] = [];
    runtime.onChange(() => {
      throw new Error("listener bug");
    });
    const unsubscribe = runtime.onChange(config => seen.push(config.role));
    await runtime.applySource({ configMap: configMap({ role: "infra" }) });
    unsubscribe();
    await runtime.applySource({ configMap: configMap({ role: "nested" }) });
    expect(seen).toEqual(["infra"]);
    expect(logs.filter(l => l.msg === "a configuration listener failed")).toHaveLength(2);
  });

  it("in the watcher, waits until both sources were seen; the startup read does not override a Watch event", async () => {
    const { runtime, events } = harness();
    runtime.expectSources();
    // The Secret arrives first: evaluating now would report users of undefined chassis.
    expect(await runtime.applySource({ usersSecret: usersSecret(users) })).toEqual({ status: "waiting" });
    expect(runtime.current()).toBeUndefined();
    expect(events).toEqual([]);
    // The Watch delivers the ConfigMap; the startup read's answer, arriving later, must not replace either object.
    const watched = configMap(goodDoc);
    expect((await runtime.applySource({ configMap: watched })).status).toBe("applied");
    const stale = configMap("role: nested\n");
    expect(await runtime.applySource({ configMap: stale, usersSecret: null }, { onlyIfUnseen: true })).toEqual({ status: "unchanged" });
    expect(runtime.current()?.role).toBe("both");
    expect(runtime.current()?.authentication.users).toHaveLength(2);
  });

  it("the startup read settles an absent ConfigMap (deleted while the watcher was down)", async () => {
    const { runtime } = harness();
    runtime.expectSources();
    expect((await runtime.applySource({ configMap: null, usersSecret: null }, { onlyIfUnseen: true })).status).toBe("applied");
    expect(runtime.current()?.chassis).toEqual([]);
  });

  it("REDFISH_PORT from the environment overrides the ConfigMap", async () => {
    const { runtime } = harness({ env: { REDFISH_PORT: "18443" } });
    await runtime.applySource({ configMap: configMap({ redfish: { port: 8443 } }) });
    expect(runtime.current()?.redfish.port).toBe(18443);
  });
});

describe("publishing to the admission pods", () => {
  it("the Store payload carries the public config and no users or passwords", async () => {
    const { runtime, publisher, published } = harness();
    runtime.setPublisher(publisher);
    const cm = configMap(goodDoc);
    await runtime.applySource({ configMap: cm, usersSecret: usersSecret(users) });
    await publisher.idle();
    expect(published).toHaveLength(1);
    const payload = published[0];
    for (const secret of [PLAIN_PASSWORD, HASH, HASHED_PASSWORD, "passwordHash", '"password"', "admin", "ops"]) {
      expect(payload).not.toContain(secret);
    }
    const parsed = JSON.parse(payload);
    expect(parsed).toEqual({
      format: 1,
      hash: runtime.status().hash,
      configMapResourceVersion: cm.metadata?.resourceVersion,
      config: publicConfig(runtime.current()!),
    });
    expect(parsed.config.authentication.users).toEqual([]);
  });

  it("an admission runtime fed from the Store runs the same config (same hash) as the watcher", async () => {
    const watcher = harness();
    watcher.runtime.setPublisher(watcher.publisher);
    const admission = harness();
    const seen: ModuleConfig[] = [];
    admission.runtime.onChange(config => seen.push(config));

    expect(admission.runtime.applyPublished(null)).toEqual({ status: "waiting" });
    expect(admission.runtime.current()).toBeUndefined();

    const cm = configMap(goodDoc);
    await watcher.runtime.applySource({ configMap: cm, usersSecret: usersSecret(users) });
    await watcher.publisher.idle();
    expect(admission.runtime.applyPublished(watcher.published[0]).status).toBe("applied");
    expect(admission.runtime.current()).toEqual(publicConfig(watcher.runtime.current()!));
    expect(admission.runtime.status()).toEqual({
      generation: 1,
      hash: watcher.runtime.status().hash,
      configMapResourceVersion: cm.metadata?.resourceVersion,
      source: "Store",
    });
    expect(admission.logs.find(l => l.msg.startsWith("config applied"))?.obj).toEqual({
      configGeneration: 1,
      configHash: watcher.runtime.status().hash,
      configMapResourceVersion: cm.metadata?.resourceVersion,
      source: "Store",
    });
    expect(seen).toHaveLength(1);

    // The Store notifies on every PeprStore change; the same value is not applied twice.
    expect(admission.runtime.applyPublished(watcher.published[0])).toEqual({ status: "unchanged" });
  });

  it("a users-only change is applied in the watcher but not re-published", async () => {
    const { runtime, publisher, published } = harness();
    runtime.setPublisher(publisher);
    await runtime.applySource({ configMap: configMap(goodDoc), usersSecret: usersSecret(users) });
    await runtime.applySource({ usersSecret: usersSecret(users.slice(1)) });
    await publisher.idle();
    expect(runtime.status().generation).toBe(2);
    expect(published).toHaveLength(1);
    await runtime.applySource({ configMap: configMap({ ...goodDoc, role: "infra" }) });
    await publisher.idle();
    expect(published).toHaveLength(2);
    expect(decodePublishedConfig(published[1])).toMatchObject({ ok: true, published: { config: { role: "infra" } } });
  });

  it("an invalid Store value is refused and the last good config stays", async () => {
    const watcher = harness();
    watcher.runtime.setPublisher(watcher.publisher);
    await watcher.runtime.applySource({ configMap: configMap(goodDoc) });
    await watcher.publisher.idle();
    const admission = harness();
    admission.runtime.applyPublished(watcher.published[0]);
    const good = admission.runtime.current();

    const tampered = JSON.parse(watcher.published[0]);
    tampered.config.redfish.port = 3000;
    expect(admission.runtime.applyPublished(JSON.stringify(tampered))).toEqual({
      status: "refused",
      errors: ["redfish.port: must not be 3000 (the Pepr watcher's own port)"],
    });
    expect(admission.runtime.applyPublished("{not json")).toEqual({ status: "refused", errors: ["Store value is not JSON"] });
    expect(admission.runtime.applyPublished(JSON.stringify({ format: 2, config: {} }))).toMatchObject({ status: "refused" });
    expect(admission.runtime.current()).toBe(good);
    expect(admission.metrics.refused).toBe(3);
    expect(admission.logs.filter(l => l.level === "error")[0].msg).toBe(
      `published configuration refused, the previous configuration stays in force (hash ${watcher.runtime.status().hash}): redfish.port: must not be 3000 (the Pepr watcher's own port)`,
    );
    // The key disappearing does not switch the admission pod off.
    expect(admission.runtime.applyPublished(null)).toEqual({ status: "unchanged" });
    expect(admission.runtime.current()).toBe(good);
  });

  it("an admission pod whose Store holds only garbage stays inert without crashing", () => {
    const admission = harness();
    expect(admission.runtime.applyPublished('{"format":1}').status).toBe("refused");
    expect(admission.runtime.current()).toBeUndefined();
  });
});

describe("metrics on Pepr's /metrics", () => {
  it("exposes the generation, the hash in force and refusals", async () => {
    const { runtime } = harness({ metrics: peprConfigMetrics() });
    await runtime.applySource({ configMap: configMap({ role: "infra" }) });
    const first = runtime.status().hash!;
    await runtime.applySource({ configMap: configMap({ role: "nested" }) });
    const second = runtime.status().hash!;
    await runtime.applySource({ configMap: configMap({ role: "neither" }) });
    const text = await metricsCollector.getMetrics();
    expect(text).toMatch(/^pepr_kubevirt_infra_config_generation 2$/m);
    expect(text).toContain(`pepr_kubevirt_infra_config_info{hash="${first}"} 0`);
    expect(text).toContain(`pepr_kubevirt_infra_config_info{hash="${second}"} 1`);
    expect(text).toMatch(/^pepr_kubevirt_infra_config_refused_total 1$/m);
  });
});
