// Bench row "GET with Kubernetes identities vs Basic" (issue 14): the same GET /redfish/v1/Systems/{id} over HTTPS,
// 50 connections at saturation, in alternating rounds with a users-Secret Basic header, a ServiceAccount bearer
// token and the same token as the password of Basic login under redfish.kubernetesIdentities.basicUserName (what
// Ironic sends). The reviews (TokenReview + SubjectAccessReview) are answered by the sandbox API server, then cached.
// The ratios are medians of the rounds' ratios, so drift of a shared machine hits every side alike. The bar: the
// bearer token within 10 % of Basic.
//
//   npm run bench:identities [-- --cpu-prof DIR]     (this row alone: its own sandbox cluster with the built module)
//
// --cpu-prof DIR: after the rounds, one more load per credential with the watcher's CPU profile
// (DIR/cpu-<pid>-<n>.cpuprofile, n in the order Basic, bearer, token login; scripts/bench/cpu-profile.ts);
// `npx tsx scripts/bench/profile-summary.ts FILE` prints where the time went.
//
// `compareIdentityGet` is the row itself, for a caller with its own cluster.
import bcrypt from "bcryptjs";
import { randomBytes, randomUUID } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { ensureBuild } from "../ensure-build";
import { ensureNamespace, startSandboxCluster } from "../../sandbox/cluster";
import { demoVirtualMachine } from "../../sandbox/demo";
import { waitForHttps } from "../../sandbox/module-process";
import { basicAuth } from "./client";
import { cpuPerResponse } from "./cpu";
import { profilingEnv, startProfile, writeProfile } from "./cpu-profile";
import { runLoad, type LoadResult } from "./load";
import { median } from "./stats";

/** The credentials compared: a configured user's Basic header, the token as Bearer, the token as a Basic password. */
const SIDES = ["basic", "bearer", "tokenLogin"] as const;
type Side = (typeof SIDES)[number];

export interface IdentityGetComparison {
  connections: number;
  rounds: Record<Side, LoadResult>[];
  requestsPerSecond: Record<Side, number>;
  p50Ms: Record<Side, number>;
  /** Bearer / Basic throughput, median of the rounds' ratios (the bar: >= 0.9). */
  throughputRatio: number;
  /** Token login (Basic header carrying the token) / Basic throughput, median of the rounds' ratios. */
  tokenLoginThroughputRatio: number;
  /**
   * With the watcher's pid: its CPU time per response (median of the rounds). The load generator shares the machine's
   * cores, and a Bearer request is 1 KB larger for it to encrypt and send: once the watcher needs little CPU per GET,
   * throughput follows the client, and this is the figure that says what each credential costs the watcher.
   */
  cpuMicrosPerResponse?: Record<Side, number>;
  /** With a profile: the watcher's CPU profile per credential. */
  profiles?: Record<Side, string>;
}

export interface IdentityGetPlan {
  connections: number;
  warmupSeconds: number;
  roundSeconds: number;
  rounds: number;
  /** Profile the watcher (started with profilingEnv(dir)) over one more load per credential. */
  profile?: { pid: number; dir: string };
  /** The watcher's pid, for its CPU time per response. */
  watcherPid?: number;
  progress?: (line: string) => void;
}

/** The row: `url` is a system every credential may GET. `tokenLogin` is the Basic header of the token login. */
export async function compareIdentityGet(url: string, credentials: { basic: string; bearerToken: string; tokenLogin: string }, plan: IdentityGetPlan): Promise<IdentityGetComparison> {
  const headers: Record<Side, Record<string, string>> = {
    basic: { Authorization: credentials.basic },
    bearer: { Authorization: `Bearer ${credentials.bearerToken}` },
    tokenLogin: { Authorization: credentials.tokenLogin },
  };
  const load = (side: Side, durationSeconds: number) => runLoad({ url, headers: headers[side], connections: plan.connections, durationSeconds });
  const measured = (side: Side, durationSeconds: number): Promise<LoadResult & { cpuMicrosPerResponse?: number }> =>
    plan.watcherPid === undefined ? load(side, durationSeconds) : cpuPerResponse(plan.watcherPid, () => load(side, durationSeconds));
  for (const side of SIDES) {
    plan.progress?.(`identity GET warm-up: ${side}`);
    const warm = await load(side, plan.warmupSeconds);
    if (warm.non2xx > 0 || warm.responses === 0) throw new Error(`${side} GET ${url}: ${JSON.stringify(warm.statusCodes)}`);
  }
  const rounds: IdentityGetComparison["rounds"] = [];
  const cpu: Record<Side, number>[] = [];
  for (let round = 0; round < plan.rounds; round++) {
    const results = {} as Record<Side, LoadResult>;
    const cpuOfRound = {} as Record<Side, number>;
    for (const side of SIDES) {
      const { cpuMicrosPerResponse, ...result } = await measured(side, plan.roundSeconds);
      results[side] = result;
      if (cpuMicrosPerResponse !== undefined) cpuOfRound[side] = cpuMicrosPerResponse;
    }
    if (Object.keys(cpuOfRound).length === SIDES.length) cpu.push(cpuOfRound);
    const failed = SIDES.filter(side => results[side].non2xx > 0);
    if (failed.length > 0) throw new Error(`non-2xx answers: ${failed.map(side => `${side} ${JSON.stringify(results[side].statusCodes)}`).join(", ")}`);
    plan.progress?.(`identity GET round ${round + 1}: ${SIDES.map(side => `${side} ${results[side].requestsPerSecond} req/s${cpuOfRound[side] !== undefined ? ` (${cpuOfRound[side]} µs CPU each)` : ""}`).join(", ")}`);
    rounds.push(results);
  }
  const round3 = (v: number) => Math.round(v * 1000) / 1000;
  const perSide = (value: (r: LoadResult) => number) => Object.fromEntries(SIDES.map(side => [side, median(rounds.map(r => value(r[side])))])) as Record<Side, number>;
  const ratio = (side: Side) => round3(median(rounds.map(r => r[side].requestsPerSecond / r.basic.requestsPerSecond)));
  return {
    connections: plan.connections,
    rounds,
    requestsPerSecond: perSide(r => r.requestsPerSecond),
    p50Ms: perSide(r => r.latencyMs.p50),
    throughputRatio: ratio("bearer"),
    tokenLoginThroughputRatio: ratio("tokenLogin"),
    ...(cpu.length > 0 ? { cpuMicrosPerResponse: Object.fromEntries(SIDES.map(side => [side, median(cpu.map(c => c[side]))])) as Record<Side, number> } : {}),
    ...(plan.profile ? { profiles: await profileSides(plan.profile, side => load(side, plan.roundSeconds), plan.progress) } : {}),
  };
}

/** One profiled load per credential, in SIDES order (the profiles' sequence numbers). */
async function profileSides(profile: { pid: number; dir: string }, load: (side: Side) => Promise<LoadResult>, progress?: (line: string) => void): Promise<Record<Side, string>> {
  const files = {} as Record<Side, string>;
  for (const [i, side] of SIDES.entries()) {
    startProfile(profile.pid);
    const result = await load(side);
    files[side] = await writeProfile(profile.dir, profile.pid, i + 1);
    progress?.(`identity GET profiled: ${side} ${result.requestsPerSecond} req/s, ${files[side]}`);
  }
  return files;
}

// ---- this row alone ----

const NAMESPACE = "bench-vms";
/** Shaped like a projected ServiceAccount token (an RS256 JWT, about 1 KB): its length is what a token lookup hashes. */
const TOKEN = [
  { alg: "RS256", kid: "bench-signing-key" },
  {
    aud: ["https://kubernetes.default.svc.cluster.local"],
    exp: 1_900_000_000,
    iat: 1_800_000_000,
    iss: "https://kubernetes.default.svc.cluster.local",
    jti: randomUUID(),
    "kubernetes.io": { namespace: NAMESPACE, node: { name: "bench-node", uid: randomUUID() }, pod: { name: "ironic-0", uid: randomUUID() }, serviceaccount: { name: "bmc", uid: randomUUID() } },
    nbf: 1_800_000_000,
    sub: `system:serviceaccount:${NAMESPACE}:bmc`,
  },
]
  .map(part => Buffer.from(JSON.stringify(part)).toString("base64url"))
  .concat(randomBytes(256).toString("base64url"))
  .join(".");
const SERVICE_ACCOUNT = { username: `system:serviceaccount:${NAMESPACE}:bmc`, groups: ["system:serviceaccounts", `system:serviceaccounts:${NAMESPACE}`, "system:authenticated"] };

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { "cpu-prof": { type: "string" } } });
  const profileDir = values["cpu-prof"] ? path.resolve(values["cpu-prof"]) : undefined;
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
    ...(profileDir ? { moduleEnv: profilingEnv(profileDir) } : {}),
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
      // "kubernetes": the default redfish.kubernetesIdentities.basicUserName.
      { basic: basicAuth("bench", password), bearerToken: TOKEN, tokenLogin: basicAuth("kubernetes", TOKEN) },
      {
        connections: 50,
        warmupSeconds: quick ? 1 : 2,
        roundSeconds: quick ? 2 : 3,
        rounds: quick ? 1 : 5,
        watcherPid: cluster.watcher!.child.pid!,
        ...(profileDir ? { profile: { pid: cluster.watcher!.child.pid!, dir: profileDir } } : {}),
        progress,
      },
    );
    const { rounds, ...summary } = result;
    console.log(JSON.stringify({ row: "GET with Kubernetes identities vs Basic", tokenLength: TOKEN.length, loadAverageAtStart, loadAverageAtEnd: os.loadavg().map(v => Math.round(v * 100) / 100), ...summary, roundsRequestsPerSecond: rounds.map(r => [r.basic.requestsPerSecond, r.bearer.requestsPerSecond, r.tokenLogin.requestsPerSecond]), bar: ">= 0.9", met: summary.throughputRatio >= 0.9 }, null, 2));
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
