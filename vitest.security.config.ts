// npm run test:security: test/security/*.suite.ts against the sandbox cluster with the BUILT module.
import { suiteConfig } from "./vitest.suites";

export default suiteConfig("security");
