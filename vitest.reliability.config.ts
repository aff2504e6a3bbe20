// npm run test:reliability: test/reliability/*.suite.ts against the sandbox cluster with the BUILT module.
import { suiteConfig } from "./vitest.suites";

export default suiteConfig("reliability");
