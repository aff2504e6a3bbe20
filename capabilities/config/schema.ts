// The one schema of the module's configuration (ConfigMap `config.yaml` + users Secret `users.yaml`).
// Key names follow the legacy charts (kubevirt-redfish, kubevirt-csi-driver) in camelCase; their snake_case
// and map shapes are translated by ./legacy-values.ts before this schema sees the document.
// Every object is strict: an unknown key is an error naming the key (a typo must not silently become a
// default). Messages set here name what is allowed; ./errors.ts renders the rest and the field paths.
// Kubernetes value rules (names, labels, selectors, quantities) are in ../common/kube-values.ts.
import { BlockList, isIP } from "node:net";
import { z } from "zod";
import { imageUrlPolicySchema } from "../../redfish/url-policy";
import {
  isDns1123Label,
  isDns1123Subdomain,
  isPositiveQuantity,
  labelKeyProblem,
  labelValueProblem,
  parseLabelList,
  showValue,
  tryParseLabelList,
} from "../common/kube-values";
import { describeKind } from "./errors";

const SECRET_KEY = /^[-._a-zA-Z0-9]+$/;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
// bcrypt modular crypt format: $2a$/$2b$/$2y$, two-digit cost 04-31, 22 salt + 31 hash chars.
const BCRYPT_HASH = /^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$/;
const SERVICE_ACCOUNT_USER = /^system:serviceaccount:([^:]+):([^:]+)$/;

// ---------------------------------------------------------------------------------------------------
// Field schemas
// ---------------------------------------------------------------------------------------------------

const namespaceName = z.string().refine(isDns1123Label, {
  error: iss =>
    `${showValue(iss.input)} is not a valid namespace name (lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters)`,
});

const objectName = (what: string) =>
  z.string().refine(isDns1123Subdomain, {
    error: iss =>
      `${showValue(iss.input)} is not a valid ${what} name (lowercase letters, digits, "-" and ".", starting and ending with a letter or digit, at most 253 characters)`,
  });

const optionalObjectName = (what: string) =>
  z
    .string()
    .default("")
    .refine(v => v === "" || isDns1123Subdomain(v), {
      error: iss => `${showValue(iss.input)} is not a valid ${what} name (lowercase letters, digits, "-" and "."; empty for none)`,
    });

const labelMap = z.record(z.string(), z.string()).superRefine((labels, ctx) => {
  for (const [key, value] of Object.entries(labels)) {
    const problem = labelKeyProblem(key) ?? labelValueProblem(key, value);
    if (problem) ctx.addIssue({ code: "custom", message: problem, path: [key] });
  }
});

const labelListText = z
  .string({
    error: iss =>
      iss.input === undefined ? undefined : `must be text in the CSI driver's format "key=value,key=value" (got ${describeKind(iss.input)})`,
  })
  .superRefine((text, ctx) => {
    const result = tryParseLabelList(text);
    if (!result.ok) ctx.addIssue({ code: "custom", message: result.problem });
  });

const serviceAccountUser = z.string().superRefine((value, ctx) => {
  const match = SERVICE_ACCOUNT_USER.exec(value);
  if (!match || !isDns1123Label(match[1]) || !isDns1123Subdomain(match[2])) {
    ctx.addIssue({
      code: "custom",
      message: `${showValue(value)} is not a service account user name; the format is "system:serviceaccount:<namespace>:<name>"`,
    });
  }
});

const ruleMode = z.enum(["enforce", "warn", "audit"]);
export type RuleMode = z.infer<typeof ruleMode>;

const labelSelectorRequirement = z
  .strictObject({
    key: z.string(),
    operator: z.enum(["In", "NotIn", "Exists", "DoesNotExist"]),
    values: z.array(z.string()).optional(),
  })
  .superRefine((req, ctx) => {
    const keyProblem = labelKeyProblem(req.key);
    if (keyProblem) ctx.addIssue({ code: "custom", message: keyProblem, path: ["key"] });
    const needsValues = req.operator === "In" || req.operator === "NotIn";
    if (needsValues && (req.values ?? []).length === 0) {
      ctx.addIssue({ code: "custom", message: `operator ${req.operator} needs at least one value`, path: ["values"] });
    }
    if (!needsValues && req.values !== undefined && req.values.length > 0) {
      ctx.addIssue({ code: "custom", message: `operator ${req.operator} takes no values`, path: ["values"] });
    }
  });

const labelSelector = z.strictObject({
  matchLabels: labelMap.optional(),
  matchExpressions: z.array(labelSelectorRequirement).optional(),
});

const chassisSchema = z.strictObject({
  // Chassis names appear in Redfish URLs (/redfish/v1/Chassis/{name}) and in users' chassis lists.
  name: z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9._-]{0,62})$/, {
    error: iss =>
      `${showValue(iss.input)} is not a valid chassis name (1-63 characters: letters, digits, ".", "_", "-", starting with a letter or digit)`,
  }),
  namespace: namespaceName,
  description: z.string().max(256).default(""),
  vmSelector: labelSelector.optional(),
});
export type ChassisConfig = z.infer<typeof chassisSchema>;

const userSchema = z
  .strictObject({
    // Basic auth splits user:password at the first ":", so a username cannot contain one.
    username: z.string().regex(/^[^:\s\p{Cc}]{1,64}$/u, {
      error: iss =>
        `${showValue(iss.input)} is not a valid username (1-64 characters, no spaces, no ":", no control characters)`,
    }),
    password: z.string().min(1).optional(),
    passwordHash: z
      .string()
      .regex(BCRYPT_HASH, {
        error: "is not a bcrypt hash (expected $2a$, $2b$ or $2y$, a two-digit cost 04-31, then 53 characters of salt and hash)",
      })
      .optional(),
    chassis: z.array(z.string()).min(1, { error: "must list at least one chassis (a user without chassis can see nothing)" }),
  })
  .superRefine((user, ctx) => {
    if (user.password !== undefined && user.passwordHash !== undefined) {
      ctx.addIssue({ code: "custom", message: `user ${showValue(user.username)} has both password and passwordHash; keep only one` });
    }
    if (user.password === undefined && user.passwordHash === undefined) {
      ctx.addIssue({ code: "custom", message: `user ${showValue(user.username)} needs a passwordHash (bcrypt) or a password` });
    }
  });
export type UserConfig = z.infer<typeof userSchema>;

const trustedProxy = z.string().refine(isIpOrCidr, {
  error: iss => `${showValue(iss.input)} is not an IP address or CIDR range (like "10.0.0.5" or "10.128.0.0/14")`,
});

const lockoutSchema = z
  .strictObject({
    maxFailures: z.int().min(1).max(1000).default(5),
    baseDelaySeconds: z.number().positive().max(3600).default(1),
    maxDelaySeconds: z.number().positive().max(86_400).default(300),
  })
  .superRefine((lockout, ctx) => {
    if (lockout.maxDelaySeconds < lockout.baseDelaySeconds) {
      ctx.addIssue({
        code: "custom",
        message: `must be at least baseDelaySeconds (${lockout.baseDelaySeconds})`,
        path: ["maxDelaySeconds"],
      });
    }
  });

const authenticationSchema = z.strictObject({
  users: z.array(userSchema).default([]),
  sessionTimeoutSeconds: z.int().min(60).max(86_400).default(1800),
  trustedProxies: z.array(trustedProxy).default([]),
  lockout: lockoutSchema.prefault({}),
});

/** Ports the Redfish server may use: unprivileged, and not the Pepr watcher's own port 3000. */
export const redfishPortSchema = z
  .int()
  .min(1024, { error: "must be at least 1024 (the module runs without privileges)" })
  .max(65_535)
  .refine(port => port !== 3000, { error: "must not be 3000 (the Pepr watcher's own port)" });

/**
 * Kubernetes bearer tokens as Redfish credentials (redfish/auth/kubernetes.ts): validated by TokenReview, each
 * request authorized by SubjectAccessReview in the VM's namespace. Off by default; the chart grants the
 * tokenreviews/subjectaccessreviews create rights only when enabled.
 */
export const kubernetesIdentitiesSchema = z.strictObject({
  enabled: z.boolean().default(false),
  /** TokenReview spec.audiences; empty = the API server's own audiences. */
  audiences: z.array(z.string().min(1).max(256)).max(16).default([]),
  /** How long a token's review is reused (a revoked token keeps working at most this long). */
  tokenReviewCacheSeconds: z.int().min(1).max(600).default(60),
  /** How long an access decision is reused (a removed RoleBinding takes effect within this time). */
  accessReviewCacheSeconds: z.int().min(1).max(300).default(10),
  /**
   * The Basic / session-login user name that means "the password is a Kubernetes token" (Ironic sends only a user
   * name and a password). It must not be a configured user's name.
   */
  basicUserName: z
    .string()
    .regex(/^[^:\s\p{Cc}]{1,64}$/u, {
      error: iss => `${showValue(iss.input)} is not a valid user name (1-64 characters, no spaces, no ":", no control characters)`,
    })
    .default("kubernetes"),
});
export type KubernetesIdentitiesConfig = z.infer<typeof kubernetesIdentitiesSchema>;

const redfishSchema = z.strictObject({
  enabled: z.boolean().default(true),
  port: redfishPortSchema.default(8443),
  tls: z
    .strictObject({
      enabled: z.boolean().default(true),
      secretName: objectName("Secret").default("kubevirt-infra-redfish-tls"),
    })
    .prefault({}),
  serviceUUID: z
    .string()
    .default("")
    .refine(v => v === "" || UUID.test(v), {
      error: iss => `${showValue(iss.input)} is not a UUID (like "0b1c3a5e-8d2f-4e6a-9c7b-1a2b3c4d5e6f"; empty for a generated one)`,
    }),
  powerOffStaysOff: z.boolean().default(true),
  /** Which image URLs InsertMedia accepts (redfish/url-policy.ts). */
  imageUrlPolicy: imageUrlPolicySchema.prefault({}),
  /** InsertMedia per user (redfish/media/image-policy.ts): a token bucket of `burst`, one more every `refillSeconds`. */
  insertMediaRate: z
    .strictObject({
      burst: z.int().min(1).max(10_000).default(60),
      refillSeconds: z.number().positive().max(3600).default(1),
    })
    .prefault({}),
  kubernetesIdentities: kubernetesIdentitiesSchema.prefault({}),
});

const datavolumeSchema = z.strictObject({
  storageSize: z
    .string({ error: iss => (iss.input === undefined ? undefined : `must be a Kubernetes quantity in quotes, like "10Gi"`) })
    .default("10Gi")
    .refine(isPositiveQuantity, {
      error: iss => `${showValue(iss.input)} is not a positive Kubernetes quantity (like "10Gi" or "500Mi")`,
    }),
  sizeMarginPercent: z.number().min(0).max(1000).default(10),
  storageClassName: optionalObjectName("StorageClass"),
  accessModes: z
    .array(z.enum(["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]))
    .min(1)
    .default(["ReadWriteOnce"])
    .refine(modes => new Set(modes).size === modes.length, { error: "lists an access mode twice" }),
  importTimeoutSeconds: z.int().min(30).max(7 * 86_400).default(3600),
  certConfigMap: optionalObjectName("ConfigMap"),
});

const infraSchema = z.strictObject({
  namespace: z
    .string()
    .default("")
    .refine(v => v === "" || isDns1123Label(v), {
      error: iss => `${showValue(iss.input)} is not a valid namespace name (lowercase letters, digits and "-", at most 63 characters)`,
    }),
  labels: labelListText.default(""),
  kubeconfigSecret: z
    .strictObject({
      name: objectName("Secret"),
      key: z
        .string()
        .regex(SECRET_KEY, { error: iss => `${showValue(iss.input)} is not a valid Secret key (letters, digits, "-", "_", ".")` })
        .default("kubeconfig"),
    })
    .optional(),
});

const nodeMappingEntry = z.strictObject({
  nodeName: objectName("Node"),
  vmName: objectName("VirtualMachine"),
  vmNamespace: namespaceName.optional(),
});

const nodeIdentitySchema = z.strictObject({
  enabled: z.boolean().default(false),
  mode: z.enum(["enforce", "report"]).default("enforce"),
  setProviderID: z.boolean().default(false),
  identityMapping: z.boolean().default(false),
});

const ruleSet = z.strictObject({ mode: ruleMode.optional() });

const tenantSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, {
    error: iss => `${showValue(iss.input)} is not a valid tenant name (lowercase letters, digits and "-", at most 63 characters)`,
  }),
  labels: labelListText.refine(text => text !== "", { error: "must name at least one label (key=value)" }),
  serviceAccounts: z.array(serviceAccountUser).default([]),
});

const datavolumePolicySchema = z.strictObject({
  enabled: z.boolean().default(false),
  mode: ruleMode.default("enforce"),
  namespaces: z.array(namespaceName).default([]),
  csiNamePrefix: z
    .string()
    .default("pvc-")
    .refine(v => v === "" || /^[a-z0-9][-a-z0-9.]*$/.test(v), {
      error: iss => `${showValue(iss.input)} is not a valid DataVolume name prefix (lowercase letters, digits, "-", ".")`,
    }),
  csiServiceAccounts: z.array(serviceAccountUser).default([]),
  requiredLabels: ruleSet.prefault({}),
  tenants: z.array(tenantSchema).default([]),
  tenantBinding: ruleSet.prefault({}),
  storageClassEnforcement: z
    .strictObject({
      mode: ruleMode.optional(),
      allowAll: z.boolean().default(true),
      allowDefault: z.boolean().default(true),
      allowList: z.array(objectName("StorageClass")).default([]),
    })
    .prefault({}),
});

// ---------------------------------------------------------------------------------------------------
// The whole document
// ---------------------------------------------------------------------------------------------------

const moduleConfigObject = z.strictObject({
  role: z.enum(["nested", "infra", "both"]).default("both"),
  chassis: z.array(chassisSchema).default([]),
  authentication: authenticationSchema.prefault({}),
  redfish: redfishSchema.prefault({}),
  datavolume: datavolumeSchema.prefault({}),
  infra: infraSchema.prefault({}),
  nodeMapping: z.array(nodeMappingEntry).default([]),
  nodeIdentity: nodeIdentitySchema.prefault({}),
  datavolumePolicy: datavolumePolicySchema.prefault({}),
});
type ParsedObject = z.infer<typeof moduleConfigObject>;
type Ctx = z.core.$RefinementCtx<ParsedObject>;

function addIssue(ctx: Ctx, path: (string | number)[], message: string): void {
  ctx.addIssue({ code: "custom", message, path });
}

function checkChassisAndUsers(cfg: ParsedObject, ctx: Ctx): void {
  const chassisIndex = new Map<string, number>();
  cfg.chassis.forEach((chassis, i) => {
    const first = chassisIndex.get(chassis.name);
    if (first !== undefined) addIssue(ctx, ["chassis", i, "name"], `chassis ${showValue(chassis.name)} is already defined at chassis[${first}]`);
    else chassisIndex.set(chassis.name, i);
  });
  const userIndex = new Map<string, number>();
  cfg.authentication.users.forEach((user, i) => {
    const first = userIndex.get(user.username);
    if (first !== undefined) {
      addIssue(ctx, ["authentication", "users", i, "username"], `user ${showValue(user.username)} is defined twice`);
    } else userIndex.set(user.username, i);
    const identities = cfg.redfish.kubernetesIdentities;
    if (identities.enabled && user.username === identities.basicUserName) {
      addIssue(
        ctx,
        ["authentication", "users", i, "username"],
        `user ${showValue(user.username)} has the name redfish.kubernetesIdentities.basicUserName, which means "the password is a Kubernetes token"; rename one of them`,
      );
    }
    user.chassis.forEach((name, j) => {
      if (!chassisIndex.has(name)) {
        const known = [...chassisIndex.keys()];
        addIssue(
          ctx,
          ["authentication", "users", i, "chassis", j],
          `chassis ${showValue(name)} of user ${showValue(user.username)} is not defined in chassis[] (${known.length > 0 ? `defined: ${known.join(", ")}` : "no chassis are defined"})`,
        );
      }
    });
  });
}

function checkNodeMapping(cfg: ParsedObject, ctx: Ctx): void {
  const byNode = new Map<string, number>();
  const byVm = new Map<string, number>();
  cfg.nodeMapping.forEach((entry, i) => {
    const firstNode = byNode.get(entry.nodeName);
    if (firstNode !== undefined) {
      addIssue(ctx, ["nodeMapping", i, "nodeName"], `node ${showValue(entry.nodeName)} is already mapped at nodeMapping[${firstNode}]`);
    } else byNode.set(entry.nodeName, i);
    const vmNamespace = entry.vmNamespace ?? cfg.infra.namespace;
    if (vmNamespace === "") {
      addIssue(ctx, ["nodeMapping", i, "vmNamespace"], "is required because infra.namespace is not set");
      return;
    }
    // Two nodes on one VM would hot-plug one tenant's disks into the other node's VM.
    const vmKey = `${vmNamespace}/${entry.vmName}`;
    const firstVm = byVm.get(vmKey);
    if (firstVm !== undefined) {
      addIssue(
        ctx,
        ["nodeMapping", i, "vmName"],
        `VM ${vmKey} is already mapped to node ${showValue(cfg.nodeMapping[firstVm].nodeName)} (nodeMapping[${firstVm}]); a VM can back only one node`,
      );
    } else byVm.set(vmKey, i);
  });
}

function checkDataVolumePolicy(cfg: ParsedObject, ctx: Ctx): void {
  const policy = cfg.datavolumePolicy;
  if (policy.enabled && policy.namespaces.length === 0 && cfg.infra.namespace === "") {
    addIssue(ctx, ["datavolumePolicy", "namespaces"], "the policy is enabled but has no namespace to police; set datavolumePolicy.namespaces or infra.namespace");
  }
  if (policy.enabled && policy.csiNamePrefix === "" && policy.csiServiceAccounts.length === 0) {
    addIssue(
      ctx,
      ["datavolumePolicy", "csiNamePrefix"],
      "is empty and csiServiceAccounts is empty too, so every DataVolume (VM disks, ISO imports) would be policed; set one of them",
    );
  }
  const tenantIndex = new Map<string, number>();
  const labelsIndex = new Map<string, number>();
  const accountOwner = new Map<string, number>();
  policy.tenants.forEach((tenant, i) => {
    const first = tenantIndex.get(tenant.name);
    if (first !== undefined) addIssue(ctx, ["datavolumePolicy", "tenants", i, "name"], `tenant ${showValue(tenant.name)} is already defined at tenants[${first}]`);
    else tenantIndex.set(tenant.name, i);
    const canonicalLabels = canonicalLabelList(tenant.labels);
    const sameLabels = labelsIndex.get(canonicalLabels);
    if (sameLabels !== undefined) {
      addIssue(ctx, ["datavolumePolicy", "tenants", i, "labels"], `are the same as tenants[${sameLabels}].labels; tenants must be told apart by their labels`);
    } else labelsIndex.set(canonicalLabels, i);
    tenant.serviceAccounts.forEach((account, j) => {
      const owner = accountOwner.get(account);
      if (owner !== undefined && owner !== i) {
        addIssue(ctx, ["datavolumePolicy", "tenants", i, "serviceAccounts", j], `${showValue(account)} already belongs to tenant ${showValue(policy.tenants[owner].name)}`);
      } else accountOwner.set(account, i);
    });
  });
}

function canonicalLabelList(text: string): string {
  const result = tryParseLabelList(text);
  if (!result.ok) return text;
  return Object.entries(result.labels)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
}

/**
 * The module configuration schema. Output = input with every default filled in, plus:
 * `nodeMapping[].vmNamespace` defaults to `infra.namespace`, `datavolumePolicy.namespaces` defaults to
 * `[infra.namespace]`, and each policy rule set's `mode` defaults to `datavolumePolicy.mode`.
 * The output is itself valid input (the admission pods re-parse what the watcher publishes).
 */
export const moduleConfigSchema = moduleConfigObject
  .superRefine((cfg, ctx) => {
    checkChassisAndUsers(cfg, ctx);
    checkNodeMapping(cfg, ctx);
    checkDataVolumePolicy(cfg, ctx);
  })
  .transform(cfg => {
    const policy = cfg.datavolumePolicy;
    const mode = policy.mode;
    return {
      ...cfg,
      nodeMapping: cfg.nodeMapping.map(entry => ({ ...entry, vmNamespace: entry.vmNamespace ?? cfg.infra.namespace })),
      datavolumePolicy: {
        ...policy,
        namespaces: policy.namespaces.length > 0 || cfg.infra.namespace === "" ? policy.namespaces : [cfg.infra.namespace],
        requiredLabels: { mode: policy.requiredLabels.mode ?? mode },
        tenantBinding: { mode: policy.tenantBinding.mode ?? mode },
        storageClassEnforcement: { ...policy.storageClassEnforcement, mode: policy.storageClassEnforcement.mode ?? mode },
      },
    };
  });

export type ModuleConfig = z.output<typeof moduleConfigSchema>;
export type NodeMappingEntry = ModuleConfig["nodeMapping"][number];
export type TenantConfig = ModuleConfig["datavolumePolicy"]["tenants"][number];
export type DataVolumePolicyConfig = ModuleConfig["datavolumePolicy"];

// ---------------------------------------------------------------------------------------------------
// Accessors other code needs
// ---------------------------------------------------------------------------------------------------

function isIpOrCidr(value: string): boolean {
  if (isIP(value) !== 0) return true;
  const slash = value.indexOf("/");
  if (slash < 0) return false;
  const address = value.slice(0, slash);
  const bits = value.slice(slash + 1);
  const family = isIP(address);
  if (family === 0 || !/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

/**
 * A matcher for `authentication.trustedProxies` (addresses and CIDR ranges). Socket addresses in the
 * IPv4-mapped IPv6 form (`::ffff:10.0.0.1`) match their IPv4 entries.
 */
export function trustedProxyMatcher(entries: readonly string[]): (address: string) => boolean {
  const list = new BlockList();
  for (const entry of entries) {
    const [address, bits] = entry.split("/");
    const type = isIP(address) === 6 ? "ipv6" : "ipv4";
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(bits), type);
  }
  return address => {
    const plain = address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
    const family = isIP(plain);
    if (family === 0) return false;
    return list.check(plain, family === 6 ? "ipv6" : "ipv4");
  };
}

/** The labels every CSI DataVolume must carry (`infra.labels`), as a map. */
export function infraLabels(config: ModuleConfig): Record<string, string> {
  return parseLabelList(config.infra.labels, "infra.labels");
}

/** A tenant's labels as a map. */
export function tenantLabels(tenant: TenantConfig): Record<string, string> {
  return parseLabelList(tenant.labels, `tenant ${tenant.name} labels`);
}

/** node-identity acts only in a nested cluster (role nested or both) and when enabled. */
export function nodeIdentityActive(config: ModuleConfig | undefined): boolean {
  return config !== undefined && config.role !== "infra" && config.nodeIdentity.enabled;
}

/** datavolume-policy acts only in an infra cluster (role infra or both), when enabled and with namespaces to police. */
export function datavolumePolicyActive(config: ModuleConfig | undefined): boolean {
  return config !== undefined && config.role !== "nested" && config.datavolumePolicy.enabled && config.datavolumePolicy.namespaces.length > 0;
}

/** The Redfish service acts only in an infra cluster, when enabled and with at least one chassis. */
export function redfishActive(config: ModuleConfig | undefined): boolean {
  return config !== undefined && config.role !== "nested" && config.redfish.enabled && config.chassis.length > 0;
}
