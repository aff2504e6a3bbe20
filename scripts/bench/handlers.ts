// The admission handlers themselves, without HTTP: time per call of the Node mutate decision (NodeAdmission) and
// the DataVolume validate decision (decideAdmission) as the configuration grows from 10 to 10,000 node mappings
// and tenants. O(1) in the size of the configuration means the time per call stays flat. CPU-bound and short
// (the fastest of several batches: other processes and GC pauses only ever add time), so it is far less
// sensitive to a busy machine than latency over the network.
import { NodeAdmission } from "../../capabilities/node-identity/admission";
import { decideAdmission } from "../../capabilities/datavolume-policy/admission";
import { policySettingsFromConfig } from "../../capabilities/datavolume-policy/from-config";
import { moduleConfigSchema } from "../../capabilities/config/schema";

const NAMESPACE = "bench-vms";
const SIZES = [10, 1_000, 10_000];
const CALLS_PER_BATCH = 10_000;
const BATCHES = 9;

export interface HandlerScaling {
  /** Mean time per call in microseconds (fastest batch), by configuration size. */
  nodeMutate: { mappings: number; microsPerCall: number }[];
  dvValidate: { tenants: number; microsPerCall: number }[];
  /** Time per call at the largest size / at the smallest. */
  nodeMutateRatio: number;
  dvValidateRatio: number;
}

function microsPerCall(call: () => unknown): number {
  for (let i = 0; i < CALLS_PER_BATCH; i++) call(); // warm-up: JIT and caches of the config object
  const batches: number[] = [];
  for (let b = 0; b < BATCHES; b++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < CALLS_PER_BATCH; i++) call();
    batches.push(Number(process.hrtime.bigint() - start) / 1e3 / CALLS_PER_BATCH);
  }
  return Math.round(Math.min(...batches) * 1000) / 1000;
}

function nodeMutateCost(mappings: number): number {
  const config = moduleConfigSchema.parse({
    role: "both",
    infra: { namespace: NAMESPACE },
    nodeIdentity: { enabled: true },
    // The Node under review is mapped by the entry in the middle of the list.
    nodeMapping: Array.from({ length: mappings }, (_, i) => ({ nodeName: `node-${i}`, vmName: `vm-${i}` })),
  });
  const node = {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name: `node-${Math.floor(mappings / 2)}`, labels: { "kubernetes.io/hostname": `node-${Math.floor(mappings / 2)}` } },
    spec: {},
    status: { nodeInfo: { systemUUID: "5e1d0000-0000-4000-8000-000000000001" } },
  };
  const admission = new NodeAdmission({ warn: () => undefined });
  if (!admission.evaluate(config, node)?.decision.resolution) throw new Error(`node-identity did not resolve the mapped Node with ${mappings} mappings`);
  return microsPerCall(() => admission.evaluate(config, node));
}

function dvValidateCost(tenants: number): number {
  const account = (i: number) => `system:serviceaccount:t${i}-csi:kubevirt-csi-controller`;
  const config = moduleConfigSchema.parse({
    role: "both",
    datavolumePolicy: {
      enabled: true,
      mode: "enforce",
      namespaces: [NAMESPACE],
      csiNamePrefix: "pvc-",
      tenants: Array.from({ length: tenants }, (_, i) => ({ name: `t${i}`, labels: `csi-driver/cluster=t${i}`, serviceAccounts: [account(i)] })),
    },
  });
  const settings = policySettingsFromConfig(config);
  const tenant = Math.floor(tenants / 2);
  const input = {
    operation: "CREATE",
    namespace: NAMESPACE,
    name: "pvc-0b1c3a5e-8d2f-4e6a-9c7b-1a2b3c4d5e6f",
    username: account(tenant),
    object: {
      apiVersion: "cdi.kubevirt.io/v1beta1",
      kind: "DataVolume",
      metadata: { name: "pvc-0b1c3a5e-8d2f-4e6a-9c7b-1a2b3c4d5e6f", namespace: NAMESPACE, labels: { "csi-driver/cluster": `t${tenant}` } },
      spec: { source: { blank: {} }, storage: { resources: { requests: { storage: "1Gi" } }, storageClassName: "standard" } },
    },
  };
  const decision = decideAdmission(input, settings);
  if (!decision.allowed || !decision.scope?.inScope) throw new Error(`the DataVolume was not evaluated as an allowed in-scope CSI volume with ${tenants} tenants`);
  return microsPerCall(() => decideAdmission(input, settings));
}

export function measureHandlerScaling(): HandlerScaling {
  // A first pass over every size only warms the JIT: otherwise the first size measured looks the slowest.
  for (const size of SIZES) {
    nodeMutateCost(size);
    dvValidateCost(size);
  }
  const nodeMutate = SIZES.map(mappings => ({ mappings, microsPerCall: nodeMutateCost(mappings) }));
  const dvValidate = SIZES.map(tenants => ({ tenants, microsPerCall: dvValidateCost(tenants) }));
  const ratio = (xs: { microsPerCall: number }[]) => Math.round((xs[xs.length - 1].microsPerCall / xs[0].microsPerCall) * 100) / 100;
  return { nodeMutate, dvValidate, nodeMutateRatio: ratio(nodeMutate), dvValidateRatio: ratio(dvValidate) };
}
