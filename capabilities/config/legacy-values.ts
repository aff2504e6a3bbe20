// Reads the shapes of the two legacy charts so their values can be copied over unchanged:
// - kubevirt-redfish `config.yaml` (server.*, chassis[].vm_selector/service_account, kubevirt.*, cdi.*,
//   datavolume.storage_size/storage_class/iso_download_timeout/...),
// - kubevirt-csi-driver chart values (nodeMapping as a {node: vm} map, infra.kubeconfig, infra.storageClassName).
// Each translated key produces a warning naming the module's own key, so users can migrate at leisure;
// keys with no meaning here are dropped with a warning saying why. A credential in the ConfigMap is an error.

type Doc = Record<string, unknown>;

export interface LegacyTranslation {
  doc: unknown;
  warnings: string[];
  errors: string[];
}

function isMap(value: unknown): value is Doc {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Moves `from[fromKey]` to `to[toKey]`; an error when both spellings are given. */
function move(from: Doc, fromKey: string, to: Doc, toKey: string, fromPath: string, toPath: string, out: LegacyTranslation): void {
  if (!Object.hasOwn(from, fromKey)) return;
  if (Object.hasOwn(to, toKey)) {
    out.errors.push(`${fromPath}: also given as ${toPath}; keep only ${toPath}`);
  } else {
    to[toKey] = from[fromKey];
    out.warnings.push(`${fromPath}: legacy kubevirt-redfish key, read as ${toPath}; rename it`);
  }
  delete from[fromKey];
}

function drop(from: Doc, key: string, path: string, reason: string, out: LegacyTranslation): void {
  if (!Object.hasOwn(from, key)) return;
  delete from[key];
  out.warnings.push(`${path}: legacy chart key ignored: ${reason}`);
}

/** The mapping at `doc[key]`, created when absent; a detached one when `doc[key]` is not a mapping (the schema reports that). */
function child(doc: Doc, key: string): Doc {
  if (doc[key] === undefined) doc[key] = {};
  const value = doc[key];
  return isMap(value) ? value : {};
}

/** Go duration ("30m", "1h30m", "90s") → whole seconds, rounded up; undefined when not a duration. */
export function goDurationSeconds(text: string): number | undefined {
  if (!/^(\d+(\.\d+)?(h|m|s|ms|us|µs|ns))+$/.test(text)) return undefined;
  const unit: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 1e-3, us: 1e-6, µs: 1e-6, ns: 1e-9 };
  let seconds = 0;
  for (const match of text.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/g)) seconds += Number(match[1]) * unit[match[2]];
  return Math.ceil(seconds);
}

function translateServer(doc: Doc, out: LegacyTranslation): void {
  const server = doc.server;
  if (!isMap(server)) return;
  const redfish = child(doc, "redfish");
  move(server, "port", redfish, "port", "server.port", "redfish.port", out);
  drop(server, "host", "server.host", "the Redfish server listens on all addresses of the watcher pod", out);
  drop(server, "system_id_convention", "server.system_id_convention", 'Systems are "<namespace>.<vm>" and a bare "<vm>" is accepted when unique', out);
  drop(server, "worker_count", "server.worker_count", "not needed (the server is asynchronous)", out);
  if (isMap(server.tls)) {
    const tls = server.tls;
    move(tls, "enabled", child(redfish, "tls"), "enabled", "server.tls.enabled", "redfish.tls.enabled", out);
    drop(tls, "cert_file", "server.tls.cert_file", "put the certificate in a kubernetes.io/tls Secret named by redfish.tls.secretName", out);
    drop(tls, "key_file", "server.tls.key_file", "put the key in a kubernetes.io/tls Secret named by redfish.tls.secretName", out);
    for (const key of Object.keys(tls)) out.errors.push(`server.tls.${key}: unknown key of the legacy chart's server.tls section`);
    delete server.tls;
  }
  for (const key of Object.keys(server)) out.errors.push(`server.${key}: unknown key of the legacy chart's server section`);
  delete doc.server;
}

function translateChassis(doc: Doc, out: LegacyTranslation): void {
  if (!Array.isArray(doc.chassis)) return;
  let serviceAccountWarned = false;
  doc.chassis.forEach((chassis: unknown, i) => {
    if (!isMap(chassis)) return;
    if (Object.hasOwn(chassis, "service_account")) {
      delete chassis.service_account;
      if (!serviceAccountWarned) {
        out.warnings.push(`chassis[${i}].service_account: legacy chart key ignored: the module acts with its own service account`);
        serviceAccountWarned = true;
      }
    }
    const selector = chassis.vm_selector;
    if (selector === undefined) return;
    if (Object.hasOwn(chassis, "vmSelector")) {
      out.errors.push(`chassis[${i}].vm_selector: also given as chassis[${i}].vmSelector; keep only vmSelector`);
    } else if (isMap(selector) && Object.hasOwn(selector, "labels")) {
      const { labels, ...rest } = selector;
      chassis.vmSelector = { ...rest, matchLabels: labels };
      out.warnings.push(`chassis[${i}].vm_selector.labels: legacy kubevirt-redfish key, read as chassis[${i}].vmSelector.matchLabels; rename it`);
    } else {
      chassis.vmSelector = selector;
      out.warnings.push(`chassis[${i}].vm_selector: legacy kubevirt-redfish key, read as chassis[${i}].vmSelector; rename it`);
    }
    delete chassis.vm_selector;
  });
}

function translateDatavolume(doc: Doc, out: LegacyTranslation): void {
  const dv = doc.datavolume;
  if (!isMap(dv)) return;
  move(dv, "storage_size", dv, "storageSize", "datavolume.storage_size", "datavolume.storageSize", out);
  move(dv, "storage_class", dv, "storageClassName", "datavolume.storage_class", "datavolume.storageClassName", out);
  if (Object.hasOwn(dv, "iso_download_timeout")) {
    const raw = dv.iso_download_timeout;
    const seconds = typeof raw === "string" ? goDurationSeconds(raw) : undefined;
    if (Object.hasOwn(dv, "importTimeoutSeconds")) {
      out.errors.push("datavolume.iso_download_timeout: also given as datavolume.importTimeoutSeconds; keep only importTimeoutSeconds");
    } else if (seconds === undefined) {
      out.errors.push(`datavolume.iso_download_timeout: ${JSON.stringify(raw)} is not a duration like "30m" or "1h30m"`);
    } else {
      dv.importTimeoutSeconds = seconds;
      out.warnings.push(`datavolume.iso_download_timeout: legacy kubevirt-redfish key, read as datavolume.importTimeoutSeconds: ${seconds}; rename it`);
    }
    delete dv.iso_download_timeout;
  }
  drop(dv, "vm_update_timeout", "datavolume.vm_update_timeout", "VM updates are single API writes here", out);
  drop(dv, "helper_image", "datavolume.helper_image", "no helper pod is used (CDI imports the image)", out);
  drop(
    dv,
    "allow_insecure_tls",
    "datavolume.allow_insecure_tls",
    "CDI http imports cannot skip certificate checks; put the image server's CA in a ConfigMap named by datavolume.certConfigMap",
    out,
  );
}

function translateInfra(doc: Doc, out: LegacyTranslation): void {
  const infra = doc.infra;
  if (!isMap(infra)) return;
  if (Object.hasOwn(infra, "kubeconfig")) {
    if (infra.kubeconfig !== "" && infra.kubeconfig !== null) {
      out.errors.push(
        "infra.kubeconfig: a kubeconfig holds credentials and must not be in the ConfigMap (it would also be copied to the Pepr Store); put it in a Secret in pepr-system and set infra.kubeconfigSecret: {name, key}",
      );
    }
    delete infra.kubeconfig;
  }
  drop(
    infra,
    "storageClassName",
    "infra.storageClassName",
    "it configures the CSI driver; to restrict StorageClasses of CSI DataVolumes use datavolumePolicy.storageClassEnforcement.allowList",
    out,
  );
}

function translateNodeMapping(doc: Doc, out: LegacyTranslation): void {
  const mapping = doc.nodeMapping;
  if (!isMap(mapping)) return;
  // CSI chart form: { "<tenant node name>": "<infra VM name>" }, VMs in infra.namespace.
  const entries: Doc[] = [];
  for (const [nodeName, vmName] of Object.entries(mapping)) {
    if (typeof vmName !== "string") {
      out.errors.push(`nodeMapping[${JSON.stringify(nodeName)}]: must be the VM name as text (the CSI chart's "node: vm" form)`);
      continue;
    }
    entries.push({ nodeName, vmName });
  }
  doc.nodeMapping = entries;
}

/** Translates legacy chart shapes in a parsed config.yaml document (the input is not modified). */
export function translateLegacyShapes(input: unknown): LegacyTranslation {
  const out: LegacyTranslation = { doc: input, warnings: [], errors: [] };
  if (!isMap(input)) return out;
  const doc = structuredClone(input);
  out.doc = doc;
  translateServer(doc, out);
  drop(doc, "kubevirt", "kubevirt", "the module talks to KubeVirt through its own Kubernetes client", out);
  drop(doc, "cdi", "cdi", "virtual media is imported by CDI from an http(s) DataVolume source, not through the upload proxy", out);
  translateChassis(doc, out);
  translateDatavolume(doc, out);
  translateInfra(doc, out);
  translateNodeMapping(doc, out);
  return out;
}
