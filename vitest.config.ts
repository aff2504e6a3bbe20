// One config, three vitest projects (select one with `vitest run --project NAME`):
//   unit         npm test: every test/**/*.test.ts (unit, callbacks, sandbox, end to end, conformance, Ironic)
//   reliability  npm run test:reliability: test/reliability/*.suite.ts
//   security     npm run test:security: test/security/*.suite.ts
// The two suites run the BUILT module against the sandbox cluster and are not part of npm test.
import { defineConfig, type TestProjectInlineConfiguration } from "vitest/config";

/** reliability and security: each file starts a cluster and real module processes. */
function suiteProject(name: "reliability" | "security"): TestProjectInlineConfiguration {
  return {
    extends: true,
    test: {
      name,
      include: [`test/${name}/**/*.suite.ts`],
      // The in-process sandbox (simulators) logs through Pepr's logger: warnings only.
      env: { PEPR_PRETTY_LOGS: "false", LOG_LEVEL: "warn" },
      // Files run one after another in one fork (fileParallelism is not a per-project setting).
      poolOptions: { forks: { singleFork: true } },
      testTimeout: 180_000,
      // The first suite may build the module (pepr build) before its cluster starts.
      hookTimeout: 600_000,
      // Module processes react over real HTTP and watches: awaited states get 20 s.
      expect: { poll: { timeout: 20_000, interval: 100 } },
    },
  };
}

export default defineConfig({
  test: {
    pool: "forks",
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["test/**/*.test.ts"],
          // PEPR_MODE=dev registers both admission and watch bindings, so callback tests reach every binding.
          env: { PEPR_MODE: "dev", PEPR_PRETTY_LOGS: "false", LOG_LEVEL: "warn" },
          testTimeout: 60_000,
          hookTimeout: 600_000,
          // Awaited states (a simulator step, a watch event, a module process) get 10 s under a loaded machine.
          expect: { poll: { timeout: 10_000, interval: 20 } },
        },
      },
      suiteProject("reliability"),
      suiteProject("security"),
    ],
  },
});
