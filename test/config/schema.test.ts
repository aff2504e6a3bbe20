import bcrypt from "bcryptjs";
import { describe, expect, it } from "vitest";
import { configErrorMap, formatIssues, formatPath } from "../../capabilities/config/errors";
import {
  datavolumePolicyActive,
  infraLabels,
  moduleConfigSchema,
  nodeIdentityActive,
  redfishActive,
  tenantLabels,
  trustedProxyMatcher,
  type ModuleConfig,
} from "../../capabilities/config/schema";

function parse(doc: unknown): ModuleConfig {
  const result = moduleConfigSchema.safeParse(doc, { error: configErrorMap });
  if (!result.success) throw new Error(formatIssues(result.error.issues).join("\n"));
  return result.data;
}

function errorsOf(doc: unknown): string[] {
  const result = moduleConfigSchema.safeParse(doc, { error: configErrorMap });
  expect(result.success, "expected the document to be refused").toBe(false);
  return result.success ? [] : formatIssues(result.error.issues);
}

const HASH = bcrypt.hashSync("s3cret-pass", 4);
const twoChassis = [
  { name: "tenant1", namespace: "tenant1-vms" },
  { name: "tenant2", namespace: "tenant2-vms" },
];

describe("defaults", () => {
  it("an empty document is a complete, inert configuration", () => {
    const config = parse({});
    expect(config).toEqual({
      role: "both",
      chassis: [],
      authentication: {
        users: [],
        sessionTimeoutSeconds: 1800,
        trustedProxies: [],
        lockout: { maxFailures: 5, baseDelaySeconds: 1, maxDelaySeconds: 300 },
      },
      redfish: {
        enabled: true,
        port: 8443,
        tls: { enabled: true, secretName: "kubevirt-infra-redfish-tls" },
        serviceUUID: "",
        powerOffStaysOff: true,
        imageUrlPolicy: {
          allowAllDestinations: false,
          allowHosts: [],
          allowCidrs: [],
          serviceCidrs: [],
          denyCidrs: [],
          clusterDomain: "cluster.local",
          resolveTimeoutMs: 5000,
        },
        insertMediaRate: { burst: 60, refillSeconds: 1 },
        kubernetesIdentities: { enabled: false, audiences: [], tokenReviewCacheSeconds: 60, accessReviewCacheSeconds: 10, basicUserName: "kubernetes" },
      },
      datavolume: {
        storageSize: "10Gi",
        sizeMarginPercent: 10,
        storageClassName: "",
        accessModes: ["ReadWriteOnce"],
        importTimeoutSeconds: 3600,
        certConfigMap: "",
      },
      infra: { namespace: "", labels: "" },
      nodeMapping: [],
      nodeIdentity: { enabled: false, mode: "enforce", setProviderID: false, identityMapping: false },
      datavolumePolicy: {
        enabled: false,
        mode: "enforce",
        namespaces: [],
        csiNamePrefix: "pvc-",
        csiServiceAccounts: [],
        requiredLabels: { mode: "enforce" },
        tenants: [],
        tenantBinding: { mode: "enforce" },
        storageClassEnforcement: { mode: "enforce", allowAll: true, allowDefault: true, allowList: [] },
      },
    });
    expect(nodeIdentityActive(config)).toBe(false);
    expect(datavolumePolicyActive(config)).toBe(false);
    expect(redfishActive(config)).toBe(false);
  });

  it("fills partial sections and derives the documented defaults", () => {
    const config = parse({
      infra: { namespace: "tenant1-vms", labels: "csi-driver/cluster=tenant1" },
      nodeMapping: [{ nodeName: "worker-0", vmName: "vm-1" }, { nodeName: "worker-1", vmName: "vm-2", vmNamespace: "other" }],
      datavolumePolicy: { enabled: true, mode: "warn", tenantBinding: { mode: "audit" } },
      redfish: { tls: { enabled: false } },
    });
    expect(config.nodeMapping).toEqual([
      { nodeName: "worker-0", vmName: "vm-1", vmNamespace: "tenant1-vms" },
      { nodeName: "worker-1", vmName: "vm-2", vmNamespace: "other" },
    ]);
    expect(config.datavolumePolicy.namespaces).toEqual(["tenant1-vms"]);
    expect(config.datavolumePolicy.requiredLabels.mode).toBe("warn");
    expect(config.datavolumePolicy.tenantBinding.mode).toBe("audit");
    expect(config.datavolumePolicy.storageClassEnforcement.mode).toBe("warn");
    expect(config.redfish.tls).toEqual({ enabled: false, secretName: "kubevirt-infra-redfish-tls" });
    expect(datavolumePolicyActive(config)).toBe(true);
  });

  it("its output is valid input and parses to itself (admission pods re-parse what the watcher publishes)", () => {
    const once = parse({
      chassis: twoChassis,
      authentication: { users: [{ username: "admin", passwordHash: HASH, chassis: ["tenant1"] }] },
      infra: { namespace: "ns1", labels: "a=b" },
      nodeMapping: [{ nodeName: "n1", vmName: "v1" }],
      datavolumePolicy: { enabled: true, tenants: [{ name: "t1", labels: "a=b" }] },
    });
    expect(parse(once)).toEqual(once);
  });
});

describe("the agreed outline and the sandbox demo are accepted", () => {
  it("accepts every key of the outline", () => {
    const config = parse({
      role: "both",
      chassis: [
        { name: "tenant1", namespace: "tenant1-vms", description: "Tenant 1 VMs", vmSelector: { matchLabels: { redfish: "true" } } },
        { name: "tenant2", namespace: "tenant2-vms" },
      ],
      authentication: {
        users: [
          { username: "admin", password: "admin123", chassis: ["tenant1", "tenant2"] },
          { username: "ops", passwordHash: HASH, chassis: ["tenant2"] },
        ],
        sessionTimeoutSeconds: 1800,
        trustedProxies: ["10.0.0.1", "10.128.0.0/14", "fd00::/8"],
        lockout: { maxFailures: 5, baseDelaySeconds: 1, maxDelaySeconds: 300 },
      },
      redfish: {
        enabled: true,
        port: 8443,
        tls: { enabled: true, secretName: "kubevirt-infra-redfish-tls" },
        serviceUUID: "0b1c3a5e-8d2f-4e6a-9c7b-1a2b3c4d5e6f",
        powerOffStaysOff: true,
      },
      datavolume: {
        storageSize: "10Gi",
        sizeMarginPercent: 10,
        storageClassName: "fast",
        accessModes: ["ReadWriteOnce"],
        importTimeoutSeconds: 3600,
        certConfigMap: "iso-ca",
      },
      infra: { namespace: "tenant1-vms", labels: "csi-driver/cluster=tenant1", kubeconfigSecret: { name: "infra-kubeconfig", key: "kubeconfig" } },
      nodeMapping: [{ nodeName: "worker-0", vmName: "vm-1", vmNamespace: "tenant1-vms" }],
      nodeIdentity: { enabled: true, mode: "report", setProviderID: true, identityMapping: true },
      datavolumePolicy: {
        enabled: true,
        mode: "enforce",
        namespaces: ["tenant1-vms"],
        csiNamePrefix: "pvc-",
        csiServiceAccounts: ["system:serviceaccount:tenant1-csi:kubevirt-csi-controller"],
        requiredLabels: { mode: "enforce" },
        tenants: [{ name: "tenant1", labels: "csi-driver/cluster=tenant1", serviceAccounts: ["system:serviceaccount:tenant1-csi:kubevirt-csi-controller"] }],
        tenantBinding: { mode: "enforce" },
        storageClassEnforcement: { mode: "enforce", allowAll: false, allowDefault: true, allowList: ["fast"] },
      },
    });
    expect(config.chassis[0].vmSelector).toEqual({ matchLabels: { redfish: "true" } });
    expect(config.infra.kubeconfigSecret).toEqual({ name: "infra-kubeconfig", key: "kubeconfig" });
    expect(redfishActive(config)).toBe(true);
    expect(nodeIdentityActive(config)).toBe(true);
  });

  it("accepts the sandbox demo configuration", () => {
    const config = parse({
      role: "both",
      chassis: twoChassis,
      redfish: { enabled: true, tls: { enabled: true, secretName: "kubevirt-infra-redfish-tls" } },
      datavolume: { storageSize: "1Gi" },
      infra: { namespace: "tenant1-vms", labels: "csi-driver/cluster=tenant1" },
      nodeMapping: [
        { nodeName: "worker-0", vmName: "vm-1", vmNamespace: "tenant1-vms" },
        { nodeName: "worker-1", vmName: "vm-2", vmNamespace: "tenant1-vms" },
      ],
      nodeIdentity: { enabled: true },
      datavolumePolicy: { enabled: true, mode: "enforce", namespaces: ["tenant1-vms"], csiNamePrefix: "pvc-" },
    });
    expect(config.datavolume.storageSize).toBe("1Gi");
  });
});

describe("redfish.kubernetesIdentities", () => {
  it("refuses a configured user with the token user name while identities are on, and bounds the cache times", () => {
    const users = [{ username: "kubernetes", passwordHash: HASH, chassis: ["tenant1"] }];
    expect(errorsOf({ chassis: twoChassis, authentication: { users }, redfish: { kubernetesIdentities: { enabled: true } } })).toEqual([
      'authentication.users[0].username: user "kubernetes" has the name redfish.kubernetesIdentities.basicUserName, which means "the password is a Kubernetes token"; rename one of them',
    ]);
    // Another token user name, or identities off: the user "kubernetes" is an ordinary user.
    expect(moduleConfigSchema.safeParse({ chassis: twoChassis, authentication: { users }, redfish: { kubernetesIdentities: { enabled: true, basicUserName: "k8s-token" } } }).success).toBe(true);
    expect(moduleConfigSchema.safeParse({ chassis: twoChassis, authentication: { users } }).success).toBe(true);
    expect(errorsOf({ redfish: { kubernetesIdentities: { accessReviewCacheSeconds: 0, basicUserName: "a:b" } } })).toHaveLength(2);
  });
});

describe("unknown keys and wrong types", () => {
  it("names an unknown key, suggests the intended one and lists the allowed keys", () => {
    expect(errorsOf({ redfish: { prot: 9000 } })).toEqual([
      'redfish: unknown key "prot" (did you mean "port"?); allowed keys here: enabled, port, tls, serviceUUID, powerOffStaysOff, imageUrlPolicy, insertMediaRate, kubernetesIdentities',
    ]);
    expect(errorsOf({ chasis: [] })).toEqual([
      'top level: unknown key "chasis" (did you mean "chassis"?); allowed keys here: role, chassis, authentication, redfish, datavolume, infra, nodeMapping, nodeIdentity, datavolumePolicy',
    ]);
    expect(errorsOf({ chassis: [{ name: "a", namespace: "a", selector: {} }] })).toEqual([
      'chassis[0]: unknown key "selector" (did you mean "vmSelector"?); allowed keys here: name, namespace, description, vmSelector',
    ]);
  });

  it("says what type was expected and what was given", () => {
    expect(errorsOf({ redfish: { enabled: "yes" } })).toEqual(['redfish.enabled: must be true or false (got text "yes")']);
    expect(errorsOf({ redfish: { port: "8443" } })).toEqual(['redfish.port: must be a whole number (got text "8443")']);
    expect(errorsOf({ chassis: { name: "a" } })).toEqual(["chassis: must be a list (got a mapping)"]);
    expect(errorsOf({ chassis: [{ name: "a" }] })).toEqual(["chassis[0].namespace: is required"]);
    expect(errorsOf({ role: "tenant" })).toEqual(['role: must be one of "nested", "infra", "both" (got text "tenant")']);
    expect(errorsOf({ infra: { labels: { a: "b" } } })).toEqual([
      'infra.labels: must be text in the CSI driver\'s format "key=value,key=value" (got a mapping)',
    ]);
  });

  it("does not echo a wrongly typed password", () => {
    const errors = errorsOf({
      chassis: twoChassis,
      authentication: { users: [{ username: "a", password: 123456789, chassis: ["tenant1"] }] },
    });
    expect(errors).toEqual(["authentication.users[0].password: must be text (got the number 123456789)"]);
  });
});

describe("chassis", () => {
  it("chassis names are unique", () => {
    expect(errorsOf({ chassis: [twoChassis[0], { name: "tenant1", namespace: "other" }] })).toEqual([
      'chassis[1].name: chassis "tenant1" is already defined at chassis[0]',
    ]);
  });

  it("namespaces are DNS-1123 labels", () => {
    expect(errorsOf({ chassis: [twoChassis[0], { name: "t2", namespace: "Tenant_2" }] })).toEqual([
      'chassis[1].namespace: "Tenant_2" is not a valid namespace name (lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters)',
    ]);
    expect(errorsOf({ chassis: [{ name: "t", namespace: "a".repeat(64) }] })).toEqual([
      `chassis[0].namespace: "${"a".repeat(64)}" is not a valid namespace name (lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters)`,
    ]);
  });

  it("chassis names are usable in Redfish URLs", () => {
    expect(errorsOf({ chassis: [{ name: "a/b", namespace: "a" }] })).toEqual([
      'chassis[0].name: "a/b" is not a valid chassis name (1-63 characters: letters, digits, ".", "_", "-", starting with a letter or digit)',
    ]);
  });

  it("vmSelector labels and expressions follow Kubernetes rules", () => {
    expect(
      errorsOf({
        chassis: [
          {
            name: "a",
            namespace: "a",
            vmSelector: {
              matchLabels: { "app.kubernetes.io/name": "ok", "bad key": "x" },
              matchExpressions: [{ key: "tier", operator: "In" }, { key: "x", operator: "Exists", values: ["y"] }],
            },
          },
        ],
      }),
    ).toEqual([
      'chassis[0].vmSelector.matchLabels["bad key"]: label key "bad key" is not a valid Kubernetes label key (name part: 1-63 characters, letters, digits, "-", "_", ".", starting and ending with a letter or digit)',
      "chassis[0].vmSelector.matchExpressions[0].values: operator In needs at least one value",
      "chassis[0].vmSelector.matchExpressions[1].values: operator Exists takes no values",
    ]);
  });
});

describe("users", () => {
  const withUsers = (users: unknown[]) => ({ chassis: twoChassis, authentication: { users } });

  it("every chassis of a user exists", () => {
    expect(errorsOf(withUsers([{ username: "admin", passwordHash: HASH, chassis: ["tenant1", "tenant3"] }]))).toEqual([
      'authentication.users[0].chassis[1]: chassis "tenant3" of user "admin" is not defined in chassis[] (defined: tenant1, tenant2)',
    ]);
    expect(errorsOf({ authentication: { users: [{ username: "admin", passwordHash: HASH, chassis: ["x"] }] } })).toEqual([
      'authentication.users[0].chassis[0]: chassis "x" of user "admin" is not defined in chassis[] (no chassis are defined)',
    ]);
  });

  it("usernames are unique", () => {
    expect(
      errorsOf(withUsers([
        { username: "admin", passwordHash: HASH, chassis: ["tenant1"] },
        { username: "admin", password: "other", chassis: ["tenant2"] },
      ])),
    ).toEqual(['authentication.users[1].username: user "admin" is defined twice']);
  });

  it("each user has exactly one of password and passwordHash", () => {
    expect(errorsOf(withUsers([{ username: "a", password: "x", passwordHash: HASH, chassis: ["tenant1"] }]))).toEqual([
      'authentication.users[0]: user "a" has both password and passwordHash; keep only one',
    ]);
    expect(errorsOf(withUsers([{ username: "a", chassis: ["tenant1"] }]))).toEqual([
      'authentication.users[0]: user "a" needs a passwordHash (bcrypt) or a password',
    ]);
    expect(errorsOf(withUsers([{ username: "a", password: "", chassis: ["tenant1"] }]))).toEqual(["authentication.users[0].password: must not be empty"]);
  });

  it("accepts real bcrypt hashes with $2a$, $2b$ and $2y$", () => {
    for (const prefix of ["$2a$", "$2b$", "$2y$"]) {
      const hash = prefix + HASH.slice(4);
      expect(parse(withUsers([{ username: "a", passwordHash: hash, chassis: ["tenant1"] }])).authentication.users[0].passwordHash).toBe(hash);
    }
  });

  it("refuses malformed hashes without showing them", () => {
    const message =
      "authentication.users[0].passwordHash: is not a bcrypt hash (expected $2a$, $2b$ or $2y$, a two-digit cost 04-31, then 53 characters of salt and hash)";
    for (const hash of ["$2x$" + HASH.slice(4), "$2b$03$" + HASH.slice(7), HASH.slice(0, -1), "$1$abc$def", "plain"]) {
      expect(errorsOf(withUsers([{ username: "a", passwordHash: hash, chassis: ["tenant1"] }]))).toEqual([message]);
    }
  });

  it("usernames cannot contain what breaks Basic auth", () => {
    expect(errorsOf(withUsers([{ username: "a:b", password: "x", chassis: ["tenant1"] }]))).toEqual([
      'authentication.users[0].username: "a:b" is not a valid username (1-64 characters, no spaces, no ":", no control characters)',
    ]);
  });

  it("a user lists at least one chassis", () => {
    expect(errorsOf(withUsers([{ username: "a", password: "x", chassis: [] }]))).toEqual([
      "authentication.users[0].chassis: must list at least one chassis (a user without chassis can see nothing)",
    ]);
  });

  it("session, lockout and trusted proxy settings are checked", () => {
    expect(errorsOf({ authentication: { sessionTimeoutSeconds: 10 } })).toEqual(["authentication.sessionTimeoutSeconds: must be at least 60"]);
    expect(errorsOf({ authentication: { lockout: { baseDelaySeconds: 10, maxDelaySeconds: 5 } } })).toEqual([
      "authentication.lockout.maxDelaySeconds: must be at least baseDelaySeconds (10)",
    ]);
    expect(errorsOf({ authentication: { trustedProxies: ["10.0.0.1", "10.0.0.0/33", "proxy.local"] } })).toEqual([
      'authentication.trustedProxies[1]: "10.0.0.0/33" is not an IP address or CIDR range (like "10.0.0.5" or "10.128.0.0/14")',
      'authentication.trustedProxies[2]: "proxy.local" is not an IP address or CIDR range (like "10.0.0.5" or "10.128.0.0/14")',
    ]);
  });
});

describe("redfish", () => {
  it("port is >= 1024, not 3000, at most 65535, whole", () => {
    expect(errorsOf({ redfish: { port: 443 } })).toEqual(["redfish.port: must be at least 1024 (the module runs without privileges)"]);
    expect(errorsOf({ redfish: { port: 3000 } })).toEqual(["redfish.port: must not be 3000 (the Pepr watcher's own port)"]);
    expect(errorsOf({ redfish: { port: 70000 } })).toEqual(["redfish.port: must be at most 65535"]);
    expect(errorsOf({ redfish: { port: 8443.5 } })).toEqual(["redfish.port: must be a whole number (got the number 8443.5)"]);
    expect(parse({ redfish: { port: 1024 } }).redfish.port).toBe(1024);
  });

  it("serviceUUID is empty or a UUID; the TLS Secret name is a valid name", () => {
    expect(errorsOf({ redfish: { serviceUUID: "1234" } })).toEqual([
      'redfish.serviceUUID: "1234" is not a UUID (like "0b1c3a5e-8d2f-4e6a-9c7b-1a2b3c4d5e6f"; empty for a generated one)',
    ]);
    expect(errorsOf({ redfish: { tls: { secretName: "My_Secret" } } })).toEqual([
      'redfish.tls.secretName: "My_Secret" is not a valid Secret name (lowercase letters, digits, "-" and ".", starting and ending with a letter or digit, at most 253 characters)',
    ]);
  });
});

describe("datavolume", () => {
  it("storageSize is a positive quantity; access modes are known and unique", () => {
    expect(errorsOf({ datavolume: { storageSize: "10GB" } })).toEqual([
      'datavolume.storageSize: "10GB" is not a positive Kubernetes quantity (like "10Gi" or "500Mi")',
    ]);
    expect(errorsOf({ datavolume: { storageSize: "0" } })).toEqual(['datavolume.storageSize: "0" is not a positive Kubernetes quantity (like "10Gi" or "500Mi")']);
    expect(errorsOf({ datavolume: { storageSize: 10 } })).toEqual(['datavolume.storageSize: must be a Kubernetes quantity in quotes, like "10Gi"']);
    expect(errorsOf({ datavolume: { accessModes: ["ReadWriteOnce", "ReadWriteOnce"] } })).toEqual(["datavolume.accessModes: lists an access mode twice"]);
    expect(errorsOf({ datavolume: { accessModes: ["RWO"] } })).toEqual([
      'datavolume.accessModes[0]: must be one of "ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod" (got text "RWO")',
    ]);
    expect(errorsOf({ datavolume: { importTimeoutSeconds: 5 } })).toEqual(["datavolume.importTimeoutSeconds: must be at least 30"]);
  });
});

describe("labels in the CSI driver's format", () => {
  it("infra.labels and tenant labels are validated in the schema and read by accessors", () => {
    expect(errorsOf({ infra: { labels: "a=b,,c=d" } })).toEqual(['infra.labels: entry 2 ("") is not key=value; the format is "key=value,key=value"']);
    const config = parse({
      infra: { namespace: "ns", labels: "csi-driver/cluster=t1" },
      datavolumePolicy: { tenants: [{ name: "t1", labels: "csi-driver/cluster=t1,x=y" }] },
    });
    expect(infraLabels(config)).toEqual({ "csi-driver/cluster": "t1" });
    expect(tenantLabels(config.datavolumePolicy.tenants[0])).toEqual({ "csi-driver/cluster": "t1", x: "y" });
  });
});

describe("node mapping", () => {
  it("node names are unique", () => {
    expect(
      errorsOf({ infra: { namespace: "ns" }, nodeMapping: [{ nodeName: "w0", vmName: "v0" }, { nodeName: "w0", vmName: "v1" }] }),
    ).toEqual(['nodeMapping[1].nodeName: node "w0" is already mapped at nodeMapping[0]']);
  });

  it("a VM backs only one node", () => {
    expect(
      errorsOf({
        infra: { namespace: "ns" },
        nodeMapping: [{ nodeName: "w0", vmName: "v0" }, { nodeName: "w1", vmName: "v0", vmNamespace: "ns" }],
      }),
    ).toEqual(['nodeMapping[1].vmName: VM ns/v0 is already mapped to node "w0" (nodeMapping[0]); a VM can back only one node']);
    // The same VM name in another namespace is another VM.
    expect(parse({ infra: { namespace: "ns" }, nodeMapping: [{ nodeName: "w0", vmName: "v0" }, { nodeName: "w1", vmName: "v0", vmNamespace: "other" }] }).nodeMapping).toHaveLength(2);
  });

  it("vmNamespace is required without infra.namespace", () => {
    expect(errorsOf({ nodeMapping: [{ nodeName: "w0", vmName: "v0" }] })).toEqual(["nodeMapping[0].vmNamespace: is required because infra.namespace is not set"]);
  });

  it("names follow Kubernetes rules", () => {
    expect(errorsOf({ infra: { namespace: "ns" }, nodeMapping: [{ nodeName: "Worker_0", vmName: "v0" }] })).toEqual([
      'nodeMapping[0].nodeName: "Worker_0" is not a valid Node name (lowercase letters, digits, "-" and ".", starting and ending with a letter or digit, at most 253 characters)',
    ]);
  });
});

describe("datavolume policy", () => {
  it("an enabled policy needs namespaces to police", () => {
    expect(errorsOf({ datavolumePolicy: { enabled: true } })).toEqual([
      "datavolumePolicy.namespaces: the policy is enabled but has no namespace to police; set datavolumePolicy.namespaces or infra.namespace",
    ]);
  });

  it("refuses a scope that would police every DataVolume", () => {
    expect(errorsOf({ infra: { namespace: "ns" }, datavolumePolicy: { enabled: true, csiNamePrefix: "" } })).toEqual([
      "datavolumePolicy.csiNamePrefix: is empty and csiServiceAccounts is empty too, so every DataVolume (VM disks, ISO imports) would be policed; set one of them",
    ]);
    expect(parse({ infra: { namespace: "ns" }, datavolumePolicy: { enabled: true, csiNamePrefix: "", csiServiceAccounts: ["system:serviceaccount:csi:ctrl"] } }).datavolumePolicy.csiNamePrefix).toBe("");
  });

  it("service accounts use the Kubernetes user name format", () => {
    expect(errorsOf({ datavolumePolicy: { csiServiceAccounts: ["csi:ctrl"] } })).toEqual([
      'datavolumePolicy.csiServiceAccounts[0]: "csi:ctrl" is not a service account user name; the format is "system:serviceaccount:<namespace>:<name>"',
    ]);
  });

  it("tenants: unique names, parseable and distinct labels, each service account in one tenant", () => {
    const sa = "system:serviceaccount:t1-csi:ctrl";
    expect(
      errorsOf({
        datavolumePolicy: {
          tenants: [
            { name: "t1", labels: "c=t1", serviceAccounts: [sa] },
            { name: "t1", labels: "c=t2" },
            { name: "t3", labels: "c=t1" },
            { name: "t4", labels: "c=t4", serviceAccounts: [sa] },
          ],
        },
      }),
    ).toEqual([
      'datavolumePolicy.tenants[1].name: tenant "t1" is already defined at tenants[0]',
      "datavolumePolicy.tenants[2].labels: are the same as tenants[0].labels; tenants must be told apart by their labels",
      'datavolumePolicy.tenants[3].serviceAccounts[0]: "system:serviceaccount:t1-csi:ctrl" already belongs to tenant "t1"',
    ]);
    expect(errorsOf({ datavolumePolicy: { tenants: [{ name: "t1", labels: "" }] } })).toEqual(["datavolumePolicy.tenants[0].labels: must name at least one label (key=value)"]);
    expect(errorsOf({ datavolumePolicy: { tenants: [{ name: "t1", labels: "c" }] } })).toEqual([
      'datavolumePolicy.tenants[0].labels: entry 1 ("c") is not key=value; the format is "key=value,key=value"',
    ]);
  });

  it("rule-set modes are checked", () => {
    expect(errorsOf({ datavolumePolicy: { storageClassEnforcement: { mode: "deny" } } })).toEqual([
      'datavolumePolicy.storageClassEnforcement.mode: must be one of "enforce", "warn", "audit" (got text "deny")',
    ]);
  });
});

describe("roles decide which capabilities act", () => {
  const base = {
    chassis: twoChassis,
    infra: { namespace: "ns" },
    nodeIdentity: { enabled: true },
    datavolumePolicy: { enabled: true },
  };
  it.each([
    ["nested", true, false, false],
    ["infra", false, true, true],
    ["both", true, true, true],
  ] as const)("role %s: node identity %s, datavolume policy %s, redfish %s", (role, node, dv, redfish) => {
    const config = parse({ ...base, role });
    expect([nodeIdentityActive(config), datavolumePolicyActive(config), redfishActive(config)]).toEqual([node, dv, redfish]);
  });
  it("nothing acts without a config", () => {
    expect([nodeIdentityActive(undefined), datavolumePolicyActive(undefined), redfishActive(undefined)]).toEqual([false, false, false]);
  });
});

describe("accessors", () => {

  it("trustedProxyMatcher handles addresses, CIDR ranges and IPv4-mapped IPv6", () => {
    const trusted = trustedProxyMatcher(["10.0.0.1", "10.128.0.0/14", "fd00::/8"]);
    expect(trusted("10.0.0.1")).toBe(true);
    expect(trusted("::ffff:10.0.0.1")).toBe(true);
    expect(trusted("10.130.1.2")).toBe(true);
    expect(trusted("10.0.0.2")).toBe(false);
    expect(trusted("fd12::1")).toBe(true);
    expect(trusted("2001:db8::1")).toBe(false);
    expect(trusted("not-an-ip")).toBe(false);
    expect(trustedProxyMatcher([])("10.0.0.1")).toBe(false);
  });

  it("formatPath quotes keys that are not identifiers", () => {
    expect(formatPath(["chassis", 1, "namespace"])).toBe("chassis[1].namespace");
    expect(formatPath(["chassis", 0, "vmSelector", "matchLabels", "app.kubernetes.io/name"])).toBe('chassis[0].vmSelector.matchLabels["app.kubernetes.io/name"]');
    expect(formatPath([])).toBe("");
  });
});
