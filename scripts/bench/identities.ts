// Bench row "GET with Kubernetes identities vs Basic" (issue 14): the same GET /redfish/v1/Systems/{id} over HTTPS,
// 50 connections at saturation, in alternating rounds with a users-Secret Basic header and a ServiceAccount bearer
// token (TokenReview + SubjectAccessReview answered by the sandbox API server, then cached). The ratio is the
// median of the rounds' ratios, so drift of a shared machine hits both sides alike. The bar: within 10 %.
//
//   npx tsx scripts/bench/identities.ts       (this row alone: its own sandbox cluster with the built module)
//
// `compareIdentityGet` is the row itself, for scripts/bench/index.ts to call with its own cluster.
import bcrypt from "bcryptjs";
import os from "node:os";
import { ensureBuild } from "../ensure-build";
import { ensureNamespace, startSandboxCluster } from "../../sandbox/cluster";
import { demoVirtualMachine } from "../../sandbox/demo";
import { waitForHttps } from "../../sandbox/module-process";
import { basicAuth } from "./client";
import { runLoad, type LoadResult } from "./load";
import { median } from "./stats";

export interface IdentityGetComparison {
  connections: number;
  rounds: { basic: LoadResult; identity: LoadResult }[];
  basicRequestsPerSecond: number;
  identityRequestsPerSecond: number;
  basicP50Ms: number;
  identityP50Ms: number;
  /** identity / Basic throughput, median of the rounds' ratios (the bar: >= 0.9). */
  throughputRatio: number;
}

export interface IdentityGetPlan {
  connections: number;
  warmupSeconds: number;
  roundSeconds: number;
  rounds: number;
  progress?: (line: string) => void;
}

/** The row: `url` is a system both credentials may GET. */
export async function compareIdentityGet(url: string, credentials: { basic: string; bearerToken: string }, plan: IdentityGetPlan): Promise<IdentityGetComparison> {
  const targets = { basic: { Authorization: credentials.basic }, identity: { Authorization: `Bearer ${credentials.bearerToken}` } };
  for (const [name, headers] of Object.entries(targets)) {
    plan.progress?.(`identity GET warm-up: ${name}`);
    const warm = await runLoad({ url, headers, connections: plan.connections, durationSeconds: plan.warmupSeconds });
    if (warm.non2xx > 0 || warm.responses === 0) throw new Error(`${name} GET ${url}: ${JSON.stringify(warm.statusCodes)}`);
  }
  const rounds: IdentityGetComparison["rounds"] = [];
  for (let round = 0; round < plan.rounds; round++) {
    const basic = await runLoad({ url, headers: targets.basic, connections: plan.connections, durationSeconds: plan.roundSeconds });
    const identity = await runLoad({ url, headers: targets.identity, connections: plan.connections, durationSeconds: plan.roundSeconds });
    if (basic.non2xx + identity.non2xx > 0) throw new Error(`non-2xx answers: Basic ${JSON.stringify(basic.statusCodes)}, identity ${JSON.stringify(identity.statusCodes)}`);
    plan.progress?.(`identity GET round ${round + 1}: Basic ${basic.requestsPerSecond} req/s, identity ${identity.requestsPerSecond} req/s`);
    rounds.push({ basic, identity });
  }
  const round3 = (v: number) => Math.round(v * 1000) / 1000;
  return {
    connections: plan.connections,
    rounds,
    basicRequestsPerSecond: median(rounds.map(r => r.basic.requestsPerSecond)),
    identityRequestsPerSecond: median(rounds.map(r => r.identity.requestsPerSecond)),
    basicP50Ms: median(rounds.map(r => r.basic.latencyMs.p50)),
    identityP50Ms: median(rounds.map(r => r.identity.latencyMs.p50)),
    throughputRatio: round3(median(rounds.map(r => r.identity.requestsPerSecond / r.basic.requestsPerSecond))),
  };
}

// ---- this row alone ----

const NAMESPACE = "bench-vms";
const TOKEN = "bench-serviceaccount-token-3c1e9a7d";
const SERVICE_ACCOUNT = { username: `system:serviceaccount:${NAMESPACE}:bmc`, groups: ["system:serviceaccounts", `system:serviceaccounts:${NAMESPACE}`, "system:authenticated"] };

async function main(): Promise<void> {
  const quick = process.env.BENCH_QUICK === "1";
  const progress = (line: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
  await ensureBuild(line => progress(line));
  const password = "bench-password-1";
  const cluster = await startSandboxCluster({
    config: {
      role: "infra",
      chassis: [{ name: "bench", namespace: NAMESPACE }],
      redfish: { kubernetesIdentities: { enabled: true } },
    },
    // bcrypt cost 10 like the main bench: a repeated Basic header is a map lookup either way.
    users: [{ username: "bench", passwordHash: bcrypt.hashSync(password, 10), chassis: ["bench"] }],
    tokens: [{ token: TOKEN, user: SERVICE_ACCOUNT }],
  });
  try {
    ensureNamespace(cluster.api, NAMESPACE);
    cluster.api.store.create("virtualmachines.kubevirt.io", demoVirtualMachine(NAMESPACE, "probe", "5f0c1d2e-0000-4000-8000-000000000001", "02:00:00:00:00:01"));
    cluster.api.store.create("roles.rbac.authorization.k8s.io", {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: { name: "bmc", namespace: NAMESPACE },
      rules: [{ apiGroups: ["kubevirt.io"], resources: ["virtualmachines"], verbs: ["get"] }],
    });
    cluster.api.store.create("rolebindings.rbac.authorization.k8s.io", {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: "bmc", namespace: NAMESPACE },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "bmc" },
      subjects: [{ kind: "ServiceAccount", name: "bmc", namespace: NAMESPACE }],
    });
    await waitForHttps(cluster.redfishPort, "/healthz", cluster.caPem, 60_000);
    const url = `${cluster.redfishUrl.replace("localhost", "127.0.0.1")}/redfish/v1/Systems/${NAMESPACE}.probe`;
    const loadAverageAtStart = os.loadavg().map(v => Math.round(v * 100) / 100);
    const result = await compareIdentityGet(
      url,
      { basic: basicAuth("bench", password), bearerToken: TOKEN },
      { connections: 50, warmupSeconds: quick ? 1 : 2, roundSeconds: quick ? 2 : 3, rounds: quick ? 1 : 5, progress },
    );
    const { rounds, ...summary } = result;
    console.log(JSON.stringify({ row: "GET with Kubernetes identities vs Basic", loadAverageAtStart, loadAverageAtEnd: os.loadavg().map(v => Math.round(v * 100) / 100), ...summary, roundsRequestsPerSecond: rounds.map(r => [r.basic.requestsPerSecond, r.identity.requestsPerSecond]), bar: ">= 0.9", met: summary.throughputRatio >= 0.9 }, null, 2));
  } finally {
    await cluster.stop();
  }
}

if (require.main === module) {
  main().catch(err => {
    console.error(err);
    process.exit(1);
  });
}
