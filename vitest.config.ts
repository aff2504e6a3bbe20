import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // PEPR_MODE=dev registers both admission and watch bindings, so callback tests reach every binding.
    env: { PEPR_MODE: "dev", PEPR_PRETTY_LOGS: "false", LOG_LEVEL: "warn" },
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 600_000,
  },
});
