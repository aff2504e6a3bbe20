// npm run test:reliability: the reliability suite (test/reliability/*.suite.ts) against the sandbox cluster
// with the BUILT module. Files run one after another: each starts a cluster and real module processes.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/reliability/**/*.suite.ts"],
    // The in-process sandbox (simulators) logs through Pepr's logger: warnings only.
    env: { PEPR_PRETTY_LOGS: "false", LOG_LEVEL: "warn" },
    pool: "forks",
    fileParallelism: false,
    testTimeout: 180_000,
    // The first suite may build the module (pepr build) before its cluster starts.
    hookTimeout: 600_000,
  },
});
