// kube-apiserver's validation and defaulting of the built-in kinds beyond object metadata, for the fields
// the module and its tests touch: ConfigMap and Secret keys, kubernetes.io/tls Secrets, Event namespaces,
// and what a new Node gets (the TaintNodesByCondition admission plugin's taint, the status defaults).
import { badRequest, invalid, type FieldError } from "./errors";
import type { TypeInfo } from "./resources";
import type { KubeObject } from "./types";

const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;

export function isStringRecord(v: unknown): v is Record<string, string> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && Object.values(v).every(x => typeof x === "string");
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** kube's IsConfigMapKey, for ConfigMap data/binaryData and Secret data keys. */
function keyErrors(field: string, data: unknown): FieldError[] {
  if (!isRecord(data)) return [];
  const errors: FieldError[] = [];
  for (const key of Object.keys(data)) {
    const why =
      key.length > 253
        ? "must be no more than 253 characters"
        : !CONFIG_KEY.test(key)
          ? "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
          : key === "." || key === ".."
            ? `must not be '${key}'`
            : undefined;
    if (why) errors.push({ field: `${field}[${key}]`, type: "FieldValueInvalid", message: `${JSON.stringify(key)}: ${why}` });
  }
  return errors;
}

export function prepareConfigMap(t: TypeInfo, obj: KubeObject): void {
  const errors = [...keyErrors("data", obj.data), ...keyErrors("binaryData", obj.binaryData)];
  if (isRecord(obj.data) && isRecord(obj.binaryData)) {
    for (const key of Object.keys(obj.binaryData)) {
      if (key in obj.data) errors.push({ field: `data[${key}]`, type: "FieldValueInvalid", message: `${JSON.stringify(key)}: duplicate of key present in binaryData` });
    }
  }
  if (errors.length > 0) throw invalid(t, obj.metadata.name ?? "", errors);
}

/** stringData merged into data (write-only, never stored), type defaulted to Opaque, then kube's ValidateSecret. */
export function prepareSecret(t: TypeInfo, obj: KubeObject, old: KubeObject | undefined): void {
  if (obj.stringData !== undefined) {
    if (!isStringRecord(obj.stringData)) throw badRequest("stringData values must be strings");
    const data = isStringRecord(obj.data) ? { ...obj.data } : {};
    for (const [k, v] of Object.entries(obj.stringData)) data[k] = Buffer.from(v, "utf8").toString("base64");
    obj.data = data;
    delete obj.stringData;
  }
  obj.type ??= "Opaque";
  const errors = keyErrors("data", obj.data);
  const data = isRecord(obj.data) ? obj.data : {};
  if (obj.type === "kubernetes.io/tls") {
    for (const key of ["tls.crt", "tls.key"]) if (!(key in data)) errors.push({ field: `data[${key}]`, type: "FieldValueRequired", message: "" });
  }
  if (old && old.type !== obj.type) errors.push({ field: "type", type: "FieldValueInvalid", message: `${JSON.stringify(obj.type)}: field is immutable` });
  if (errors.length > 0) throw invalid(t, obj.metadata.name ?? "", errors);
}

/** An Event lives in its involved object's namespace (or default/no namespace for cluster-scoped objects). */
export function prepareEvent(t: TypeInfo, obj: KubeObject): void {
  const involved = isRecord(obj.involvedObject) ? obj.involvedObject : {};
  const involvedNs = typeof involved.namespace === "string" ? involved.namespace : "";
  const ns = obj.metadata.namespace ?? "";
  const matches = involvedNs === "" ? ns === "" || ns === "default" : involvedNs === ns;
  if (!matches) {
    throw invalid(t, obj.metadata.name ?? "", [
      { field: "involvedObject.namespace", type: "FieldValueInvalid", message: `${JSON.stringify(involvedNs)}: does not match event.namespace` },
    ]);
  }
}

const NOT_READY_TAINT = { key: "node.kubernetes.io/not-ready", effect: "NoSchedule" };

/** A new Node: not-ready taint (TaintNodesByCondition) and the status fields kube always serializes. */
export function prepareNode(obj: KubeObject, old: KubeObject | undefined): void {
  if (old) return;
  const spec = isRecord(obj.spec) ? obj.spec : {};
  const taints = Array.isArray(spec.taints) ? (spec.taints as { key?: string; effect?: string }[]) : [];
  if (!taints.some(tn => tn?.key === NOT_READY_TAINT.key && tn?.effect === NOT_READY_TAINT.effect)) taints.push({ ...NOT_READY_TAINT });
  obj.spec = { ...spec, taints };
  const status = isRecord(obj.status) ? obj.status : {};
  const nodeInfo = isRecord(status.nodeInfo) ? status.nodeInfo : {};
  obj.status = {
    ...status,
    daemonEndpoints: isRecord(status.daemonEndpoints) ? status.daemonEndpoints : { kubeletEndpoint: { Port: 0 } },
    nodeInfo: {
      machineID: "",
      systemUUID: "",
      bootID: "",
      kernelVersion: "",
      osImage: "",
      containerRuntimeVersion: "",
      kubeletVersion: "",
      kubeProxyVersion: "",
      operatingSystem: "",
      architecture: "",
      ...nodeInfo,
    },
  };
}
