// The virtual-media settings this module needs, from the `datavolume` section of the module config.
import { quantityToBytes } from "../../capabilities/common/kube-values";
import type { ModuleConfig } from "../../capabilities/config/schema";

export interface MediaSettings {
  /** PVC size request, e.g. "11264Mi" (datavolume.storageSize plus sizeMarginPercent, rounded up to MiB). */
  storageRequest: string;
  storageClassName?: string;
  accessModes: readonly string[];
  importTimeoutSeconds: number;
  /** ConfigMap with CA certificates for https images, in the VM's namespace (CDI reads it there). */
  certConfigMap?: string;
}

const MIB = 2 ** 20;

/** The size request: the configured size grown by the margin, so an image of exactly that size still fits. */
export function storageRequest(storageSize: string, marginPercent: number): string {
  const bytes = quantityToBytes(storageSize);
  if (!Number.isFinite(bytes) || bytes <= 0) throw new Error(`invalid storage size ${JSON.stringify(storageSize)}`);
  return `${Math.ceil((bytes * (1 + marginPercent / 100)) / MIB)}Mi`;
}

export function mediaSettings(datavolume: ModuleConfig["datavolume"]): MediaSettings {
  return {
    storageRequest: storageRequest(datavolume.storageSize, datavolume.sizeMarginPercent),
    ...(datavolume.storageClassName ? { storageClassName: datavolume.storageClassName } : {}),
    accessModes: [...datavolume.accessModes],
    importTimeoutSeconds: datavolume.importTimeoutSeconds,
    ...(datavolume.certConfigMap ? { certConfigMap: datavolume.certConfigMap } : {}),
  };
}

const derived = new WeakMap<ModuleConfig, MediaSettings>();

/** Settings of a config object (derived once per object: the runtime hands out a new one per change). */
export function mediaSettingsOf(config: ModuleConfig | undefined): MediaSettings | undefined {
  if (!config) return undefined;
  let settings = derived.get(config);
  if (!settings) {
    settings = mediaSettings(config.datavolume);
    derived.set(config, settings);
  }
  return settings;
}
