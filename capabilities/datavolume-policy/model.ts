// The part of a cdi.kubevirt.io/v1beta1 DataVolume the policy reads, parsed with zod at the edge (admission
// objects and watch events). Everything else in the object is ignored.
import { z } from "zod";

const optionalString = z.string().nullish();

const storageSection = z.object({ storageClassName: optionalString }).nullish();

export const dataVolumeSchema = z.object({
  apiVersion: optionalString,
  kind: optionalString,
  metadata: z.object({
    name: optionalString,
    generateName: optionalString,
    namespace: optionalString,
    uid: optionalString,
    labels: z.record(z.string(), z.string()).nullish(),
  }),
  spec: z.object({ storage: storageSection, pvc: storageSection }).nullish(),
});

/** Where a DataVolume names its storage class, and the value (undefined = absent: the infra cluster's default class). */
export interface StorageClassRef {
  readonly field: "spec.storage.storageClassName" | "spec.pvc.storageClassName";
  readonly storageClassName: string | undefined;
}

export interface DataVolumeFacts {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  /** Only meaningful while `name` is empty (a CREATE that relies on the server to generate the name). */
  readonly generateName: string;
  readonly namespace: string;
  readonly uid: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly storageClasses: readonly StorageClassRef[];
}

export type ParsedDataVolume = { ok: true; dataVolume: DataVolumeFacts } | { ok: false; error: string };

export function parseDataVolume(raw: unknown, fallbackNamespace?: string): ParsedDataVolume {
  const parsed = dataVolumeSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? issue.path.join(".") : "object";
    return { ok: false, error: `not a valid DataVolume (${where}: ${issue?.message ?? "invalid"})` };
  }
  const { metadata, spec } = parsed.data;
  // CDI requires exactly one of spec.storage / spec.pvc; checking each present section keeps a malformed object
  // from hiding a class in the section we did not look at.
  const storageClasses: StorageClassRef[] = [];
  if (spec?.storage) {
    storageClasses.push({ field: "spec.storage.storageClassName", storageClassName: spec.storage.storageClassName ?? undefined });
  }
  if (spec?.pvc) {
    storageClasses.push({ field: "spec.pvc.storageClassName", storageClassName: spec.pvc.storageClassName ?? undefined });
  }
  if (storageClasses.length === 0) {
    storageClasses.push({ field: "spec.storage.storageClassName", storageClassName: undefined });
  }
  return {
    ok: true,
    dataVolume: {
      apiVersion: parsed.data.apiVersion ?? "cdi.kubevirt.io/v1beta1",
      kind: parsed.data.kind ?? "DataVolume",
      name: metadata.name ?? "",
      generateName: metadata.generateName ?? "",
      namespace: metadata.namespace ?? fallbackNamespace ?? "",
      uid: metadata.uid ?? "",
      labels: metadata.labels ?? {},
      storageClasses,
    },
  };
}

export const displayName = (dv: DataVolumeFacts): string =>
  `${dv.namespace}/${dv.name || `${dv.generateName}<generated>`}`;
