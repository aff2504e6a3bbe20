// Dynamic admission like kube-apiserver's: Mutating then Validating webhook configurations, matched by
// rules / namespaceSelector / objectSelector, called over HTTPS with an admission.k8s.io/v1 AdmissionReview,
// the server certificate verified against clientConfig.caBundle. Not supported: `service` references
// (the sandbox has no cluster DNS: such a webhook counts as unreachable and its failurePolicy applies),
// matchConditions (CEL; ignored, the webhook is treated as matching) and matchPolicy conversion.
import https from "node:https";
import { randomUUID } from "node:crypto";
import { z } from "zod";
import { badRequest, internalError, invalid, type FieldError } from "./errors";
import { applyJsonPatch, type Json } from "./patch";
import { apiVersionOf, builtinTypes, type TypeInfo } from "./resources";
import { labelSelectorObjectToSelector, matchesLabels, type LabelSelectorObject } from "./selectors";
import type { MemoryStore } from "./store";
import { ApiError, type KubeObject, type UserInfo } from "./types";

export const MUTATING_KEY = "mutatingwebhookconfigurations.admissionregistration.k8s.io";
export const VALIDATING_KEY = "validatingwebhookconfigurations.admissionregistration.k8s.io";

export interface AdmissionAttributes {
  operation: "CREATE" | "UPDATE" | "DELETE";
  type: TypeInfo;
  /** The version the client used (AdmissionReview kind/resource carry it). */
  version: string;
  subResource?: string;
  namespace?: string;
  name: string;
  user: UserInfo;
  dryRun: boolean;
  /** CreateOptions / UpdateOptions / PatchOptions / DeleteOptions as kube sends them. */
  options: object;
  /** Webhook warnings are appended here; the REST layer returns them as Warning headers. */
  warnings: string[];
}

export interface Admission {
  /** Runs mutating webhooks; returns the (possibly patched) object. `object` is undefined for DELETE. */
  mutate(attrs: AdmissionAttributes, object: KubeObject | undefined, oldObject: KubeObject | undefined): Promise<KubeObject | undefined>;
  /** Runs validating webhooks; throws the denial (or call failure under failurePolicy Fail). */
  validate(attrs: AdmissionAttributes, object: KubeObject | undefined, oldObject: KubeObject | undefined): Promise<void>;
}

const labelSelectorSchema = z
  .object({
    matchLabels: z.record(z.string(), z.string()).optional(),
    matchExpressions: z
      .array(z.object({ key: z.string().min(1), operator: z.enum(["In", "NotIn", "Exists", "DoesNotExist"]), values: z.array(z.string()).optional() }))
      .optional(),
  })
  .passthrough();

const ruleSchema = z
  .object({
    apiGroups: z.array(z.string()).default([]),
    apiVersions: z.array(z.string()).default([]),
    operations: z.array(z.enum(["*", "CREATE", "UPDATE", "DELETE", "CONNECT"])).default([]),
    resources: z.array(z.string()).default([]),
    scope: z.enum(["Cluster", "Namespaced", "*"]).default("*"),
  })
  .passthrough();

const webhookSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$/, "should be a domain with at least three segments separated by dots"),
    clientConfig: z
      .object({
        url: z.string().optional(),
        service: z.object({ namespace: z.string(), name: z.string(), path: z.string().optional(), port: z.number().int().optional() }).passthrough().optional(),
        caBundle: z.string().optional(),
      })
      .passthrough()
      .refine(c => (c.url === undefined) !== (c.service === undefined), "exactly one of url or service is required")
      .refine(c => c.url === undefined || c.url.startsWith("https://"), "'https' is the only allowed URL scheme"),
    rules: z.array(ruleSchema).default([]),
    failurePolicy: z.enum(["Ignore", "Fail"]).default("Fail"),
    matchPolicy: z.enum(["Exact", "Equivalent"]).default("Equivalent"),
    namespaceSelector: labelSelectorSchema.default({}),
    objectSelector: labelSelectorSchema.default({}),
    sideEffects: z.enum(["None", "NoneOnDryRun"], { message: "must specify one of None, NoneOnDryRun" }),
    timeoutSeconds: z.number().int().min(1).max(30).default(10),
    admissionReviewVersions: z.array(z.string()).refine(v => v.includes("v1") || v.includes("v1beta1"), "must include at least one of v1, v1beta1"),
    reinvocationPolicy: z.enum(["Never", "IfNeeded"]).optional(),
    matchConditions: z.array(z.unknown()).optional(),
  })
  .passthrough();
type Webhook = z.infer<typeof webhookSchema>;

const admissionResponseSchema = z.object({
  apiVersion: z.literal("admission.k8s.io/v1", { message: "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview" }),
  kind: z.literal("AdmissionReview", { message: "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview" }),
  response: z.object({
    uid: z.string(),
    allowed: z.boolean(),
    status: z.object({ code: z.number().int().optional(), message: z.string().optional(), reason: z.string().optional() }).passthrough().optional(),
    patch: z.string().optional(),
    patchType: z.string().optional(),
    warnings: z.array(z.string()).optional(),
  }).passthrough(),
});

/** Validation and defaulting of Mutating/ValidatingWebhookConfiguration objects (kube's v1 rules). */
export function prepareWebhookConfiguration(kind: "Mutating" | "Validating"): (obj: KubeObject) => void {
  const type = builtinTypes.find(t => t.key === (kind === "Mutating" ? MUTATING_KEY : VALIDATING_KEY))!;
  return obj => {
    const raw = obj.webhooks;
    if (raw === undefined || raw === null) return;
    if (!Array.isArray(raw)) throw invalid(type, obj.metadata.name ?? "", [{ field: "webhooks", type: "FieldValueInvalid", message: "must be a list" }]);
    const errors: FieldError[] = [];
    const names = new Set<string>();
    const defaulted = raw.map((w, i) => {
      const parsed = webhookSchema.safeParse(w);
      if (!parsed.success) {
        for (const issue of parsed.error.issues) {
          let value: unknown = w;
          for (const seg of issue.path) value = typeof value === "object" && value !== null ? (value as Record<PropertyKey, unknown>)[seg as PropertyKey] : undefined;
          const missing = value === undefined;
          errors.push({ field: `webhooks[${i}].${issue.path.join(".")}`, type: missing ? "FieldValueRequired" : "FieldValueInvalid", message: issue.message });
        }
        return w;
      }
      if (names.has(parsed.data.name)) errors.push({ field: `webhooks[${i}].name`, type: "FieldValueDuplicate", message: JSON.stringify(parsed.data.name) });
      names.add(parsed.data.name);
      const out: Record<string, unknown> = { ...parsed.data };
      if (kind === "Mutating") out.reinvocationPolicy = parsed.data.reinvocationPolicy ?? "Never";
      else delete out.reinvocationPolicy;
      return out;
    });
    if (errors.length > 0) throw invalid(type, obj.metadata.name ?? "", errors);
    obj.webhooks = defaulted;
  };
}

interface CallResult {
  response?: z.infer<typeof admissionResponseSchema>["response"];
  error?: string;
}

function ruleMatches(hook: Webhook, a: AdmissionAttributes): boolean {
  const sub = a.subResource ?? "";
  return hook.rules.some(rule => {
    if (!rule.operations.includes("*") && !rule.operations.includes(a.operation)) return false;
    if (!rule.apiGroups.includes("*") && !rule.apiGroups.includes(a.type.group)) return false;
    if (!rule.apiVersions.includes("*") && !rule.apiVersions.includes(a.version)) return false;
    if (rule.scope === "Cluster" && a.type.namespaced) return false;
    if (rule.scope === "Namespaced" && !a.type.namespaced) return false;
    return rule.resources.some(spec => {
      const [res, subSpec] = spec.split("/", 2);
      const resOk = res === "*" || res === a.type.resource;
      if (subSpec === undefined) return resOk && sub === "";
      return resOk && (subSpec === "*" ? (res === "*" || sub !== "") : subSpec === sub);
    });
  });
}

export class WebhookAdmission implements Admission {
  readonly #store: MemoryStore;
  readonly #log: (line: string) => void;
  readonly #agents = new Map<string, https.Agent>();
  /** Each stored configuration's webhooks, parsed once: a write replaces the stored object, so a changed one is parsed anew. */
  readonly #parsedWebhooks = new WeakMap<KubeObject, Webhook[]>();

  constructor(store: MemoryStore, log: (line: string) => void) {
    this.#store = store;
    this.#log = log;
  }

  close(): void {
    for (const agent of this.#agents.values()) agent.destroy();
    this.#agents.clear();
  }

  #webhooks(key: string): Webhook[] {
    const out: Webhook[] = [];
    // kube orders by configuration name, then by the order within the configuration.
    for (const cfg of this.#store.listRaw(key)) {
      let hooks = this.#parsedWebhooks.get(cfg);
      if (!hooks) {
        hooks = [];
        for (const w of (cfg.webhooks as unknown[] | undefined) ?? []) {
          const parsed = webhookSchema.safeParse(w);
          if (parsed.success) hooks.push(parsed.data);
        }
        this.#parsedWebhooks.set(cfg, hooks);
      }
      out.push(...hooks);
    }
    return out;
  }

  #matches(hook: Webhook, a: AdmissionAttributes, obj: KubeObject | undefined, old: KubeObject | undefined): boolean {
    if (!ruleMatches(hook, a)) return false;
    const nsSelector = labelSelectorObjectToSelector(hook.namespaceSelector as LabelSelectorObject);
    if (nsSelector.length > 0) {
      if (a.type.key === "namespaces") {
        // A Namespace is matched on its own labels.
        if (!matchesLabels(nsSelector, (obj ?? old)?.metadata.labels)) return false;
      } else if (a.type.namespaced) {
        const ns = this.#store.getRaw("namespaces", undefined, a.namespace ?? "");
        if (!matchesLabels(nsSelector, ns?.metadata.labels)) return false;
      }
      // Other cluster-scoped objects are never excluded by a namespaceSelector.
    }
    const objSelector = labelSelectorObjectToSelector(hook.objectSelector as LabelSelectorObject);
    if (objSelector.length > 0) {
      const candidates = [obj, old].filter((o): o is KubeObject => o !== undefined);
      if (!candidates.some(o => matchesLabels(objSelector, o.metadata.labels))) return false;
    }
    return true;
  }

  #agent(caBundle: string | undefined): https.Agent {
    const key = caBundle ?? "";
    let agent = this.#agents.get(key);
    if (!agent) {
      const ca = caBundle ? Buffer.from(caBundle, "base64").toString("utf8") : undefined;
      agent = new https.Agent({ keepAlive: true, ca });
      this.#agents.set(key, agent);
    }
    return agent;
  }

  #review(uid: string, a: AdmissionAttributes, obj: KubeObject | undefined, old: KubeObject | undefined): object {
    const apiVersion = apiVersionOf(a.type.group, a.version);
    const present = (o: KubeObject | undefined) => (o === undefined ? null : { ...o, apiVersion });
    const kind = { group: a.type.group, version: a.version, kind: a.type.kind };
    const resource = { group: a.type.group, version: a.version, resource: a.type.resource };
    return {
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      request: {
        uid,
        kind,
        resource,
        ...(a.subResource ? { subResource: a.subResource } : {}),
        requestKind: kind,
        requestResource: resource,
        ...(a.subResource ? { requestSubResource: a.subResource } : {}),
        name: a.name,
        ...(a.namespace ? { namespace: a.namespace } : {}),
        operation: a.operation,
        userInfo: { username: a.user.username, ...(a.user.uid ? { uid: a.user.uid } : {}), groups: a.user.groups },
        object: present(obj),
        oldObject: present(old),
        dryRun: a.dryRun,
        options: a.options,
      },
    };
  }

  /** POSTs the review; resolves with the parsed response or a kube-style description of the failure. */
  async #call(hook: Webhook, review: object, uid: string): Promise<CallResult> {
    const url = hook.clientConfig.url;
    if (!url) {
      const svc = hook.clientConfig.service!;
      return { error: `failed to call webhook: service "${svc.namespace}/${svc.name}" cannot be reached from the sandbox (no cluster DNS; use clientConfig.url)` };
    }
    let target: URL;
    try {
      target = new URL(url);
      target.searchParams.set("timeout", `${hook.timeoutSeconds}s`);
    } catch {
      return { error: `failed to call webhook: invalid URL ${JSON.stringify(url)}` };
    }
    const body = JSON.stringify(review);
    const post = `Post "${target.toString()}"`;
    return new Promise<CallResult>(resolve => {
      const req = https.request(
        target,
        {
          method: "POST",
          agent: this.#agent(hook.clientConfig.caBundle),
          headers: { "Content-Type": "application/json", Accept: "application/json", "Content-Length": Buffer.byteLength(body) },
        },
        res => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            size += c.length;
            if (size > 3 * 1024 * 1024) req.destroy(new Error("webhook response too large"));
            else chunks.push(c);
          });
          res.on("end", () => {
            clearTimeout(timer);
            const text = Buffer.concat(chunks).toString("utf8");
            if (res.statusCode !== 200) {
              resolve({ error: `failed to call webhook: an error on the server (${JSON.stringify(text.slice(0, 200))}) has prevented the request from succeeding (status ${res.statusCode})` });
              return;
            }
            let json: unknown;
            try {
              json = JSON.parse(text);
            } catch {
              resolve({ error: "received invalid webhook response: the response body is not JSON" });
              return;
            }
            const parsed = admissionResponseSchema.safeParse(json);
            if (!parsed.success) {
              resolve({ error: `received invalid webhook response: ${parsed.error.issues[0]?.message ?? "invalid AdmissionReview"}` });
              return;
            }
            if (parsed.data.response.uid !== uid) {
              resolve({ error: `received invalid webhook response: expected response.uid="${uid}", got "${parsed.data.response.uid}"` });
              return;
            }
            resolve({ response: parsed.data.response });
          });
          res.on("error", err => {
            clearTimeout(timer);
            resolve({ error: `failed to call webhook: ${post}: ${err.message}` });
          });
        },
      );
      const timer = setTimeout(() => req.destroy(new Error("context deadline exceeded")), hook.timeoutSeconds * 1000);
      req.on("error", err => {
        clearTimeout(timer);
        resolve({ error: `failed to call webhook: ${post}: ${err.message}` });
      });
      req.end(body);
    });
  }

  /** One webhook round trip with kube's error semantics; returns the response when the request may proceed. */
  async #invoke(
    hook: Webhook,
    kind: "mutating" | "validating",
    a: AdmissionAttributes,
    obj: KubeObject | undefined,
    old: KubeObject | undefined,
  ): Promise<CallResult["response"] | undefined> {
    if (a.dryRun && hook.sideEffects !== "None" && hook.sideEffects !== "NoneOnDryRun") {
      throw badRequest(`admission webhook "${hook.name}" does not support dry run`);
    }
    const uid = randomUUID();
    const started = performance.now();
    const result = await this.#call(hook, this.#review(uid, a, obj, old), uid);
    const ms = (performance.now() - started).toFixed(1);
    const target = `${a.type.resource}${a.subResource ? `/${a.subResource}` : ""} ${a.namespace ? `${a.namespace}/` : ""}${a.name}`;
    if (result.error !== undefined) {
      this.#log(`admission webhook "${hook.name}" (${kind}) ${a.operation} ${target}: call failed in ${ms}ms, failurePolicy=${hook.failurePolicy}: ${result.error}`);
      if (hook.failurePolicy === "Ignore") return undefined;
      throw internalError(`failed calling webhook "${hook.name}": ${result.error}`);
    }
    const response = result.response!;
    this.#log(`admission webhook "${hook.name}" (${kind}) ${a.operation} ${target}: ${response.allowed ? "allowed" : "denied"} in ${ms}ms`);
    a.warnings.push(...(response.warnings ?? []));
    if (!response.allowed) throw denial(hook.name, response.status);
    return response;
  }

  async mutate(a: AdmissionAttributes, object: KubeObject | undefined, oldObject: KubeObject | undefined): Promise<KubeObject | undefined> {
    if (a.type.group === "admissionregistration.k8s.io") return object;
    let current = object;
    const invoked: { hook: Webhook; atChange: number }[] = [];
    let changes = 0;
    const run = async (hook: Webhook) => {
      const response = await this.#invoke(hook, "mutating", a, current, oldObject);
      if (!response?.patch || current === undefined) return;
      if (response.patchType !== undefined && response.patchType !== "JSONPatch") {
        throw internalError(`failed calling webhook "${hook.name}": unsupported patch type ${JSON.stringify(response.patchType)}`);
      }
      let ops: unknown;
      try {
        ops = JSON.parse(Buffer.from(response.patch, "base64").toString("utf8"));
      } catch {
        throw internalError(`failed calling webhook "${hook.name}": the patch is not base64-encoded JSON`);
      }
      let patched: Json;
      try {
        patched = applyJsonPatch(structuredClone(current) as unknown as Json, ops);
      } catch (err) {
        const detail = err instanceof ApiError ? (err.details?.causes?.[0]?.message ?? err.message) : String(err);
        throw internalError(`admission webhook "${hook.name}" returned a patch that does not apply: ${detail}`);
      }
      if (JSON.stringify(patched) !== JSON.stringify(current)) changes++;
      current = patched as unknown as KubeObject;
    };
    for (const hook of this.#webhooks(MUTATING_KEY)) {
      if (!this.#matches(hook, a, current, oldObject)) continue;
      invoked.push({ hook, atChange: changes });
      await run(hook);
    }
    // reinvocationPolicy IfNeeded: called once more if a later webhook changed the object after it ran.
    for (const { hook, atChange } of invoked) {
      if (hook.reinvocationPolicy === "IfNeeded" && changes > atChange && this.#matches(hook, a, current, oldObject)) await run(hook);
    }
    return current;
  }

  async validate(a: AdmissionAttributes, object: KubeObject | undefined, oldObject: KubeObject | undefined): Promise<void> {
    if (a.type.group === "admissionregistration.k8s.io") return;
    const hooks = this.#webhooks(VALIDATING_KEY).filter(h => this.#matches(h, a, object, oldObject));
    // kube calls validating webhooks in parallel; the first failure in webhook order is reported.
    const outcomes = await Promise.allSettled(hooks.map(h => this.#invoke(h, "validating", a, object, oldObject)));
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected");
    if (failed) throw failed.reason;
  }
}

/** kube's ToStatusErr: "admission webhook "x" denied the request: <message>", code >= 400 (default 400). */
function denial(name: string, status: { code?: number; message?: string; reason?: string } | undefined): ApiError {
  const deniedBy = `admission webhook "${name}" denied the request`;
  const code = status?.code !== undefined && status.code >= 400 ? status.code : 400;
  const message = status?.message ? `${deniedBy}: ${status.message}` : status?.reason ? `${deniedBy}: ${status.reason}` : `${deniedBy} without explanation`;
  return new ApiError(code, status?.reason ?? "", message);
}
