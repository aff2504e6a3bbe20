// Shared settings of the suites that run the BUILT module against the sandbox outside `npm test`:
// npm run test:reliability (vitest.reliability.config.ts) and npm run test:security (vitest.security.config.ts).
import { defineConfig } from "vitest/config";

export function suiteConfig(folder: "reliability" | "security") {
  return defineConfig({
    test: {
      include: [`test/${folder}/**/*.suite.ts`],
      // The in-process sandbox (simulators) logs through Pepr's logger: warnings only.
      env: { PEPR_PRETTY_LOGS: "false", LOG_LEVEL: "warn" },
      pool: "forks",
      // Files run one after another: each starts a cluster and real module processes.
      fileParallelism: false,
      testTimeout: 180_000,
      // The first suite may build the module (pepr build) before its cluster starts.
      hookTimeout: 600_000,
    },
  });
}
