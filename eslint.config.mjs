// Used by `pepr build`'s format check and `npx eslint .`. Not type-aware on purpose: a type-aware lint of the
// whole tree doubles the build time, and `tsc --noEmit` (CI) already type-checks everything.
import tsParser from "@typescript-eslint/parser";
import typescriptEslint from "@typescript-eslint/eslint-plugin";
import globals from "globals";

export default [
  { ignores: ["**/node_modules", "**/dist", "test/conformance/**", ".sandbox/**"] },
  {
    files: ["**/*.ts"],
    plugins: { "@typescript-eslint": typescriptEslint },
    languageOptions: { parser: tsParser, sourceType: "module", globals: { ...globals.node } },
    rules: {
      ...typescriptEslint.configs.recommended.rules,
      "@typescript-eslint/no-explicit-any": "off",
      // A leading underscore marks a value left out on purpose (rest-destructuring, unused callback parameters).
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrorsIgnorePattern: "^_", ignoreRestSiblings: true }],
    },
  },
  {
    // The Redfish service is a plain module: Pepr only through its adapter, never the sandbox, and of the
    // config only the public schema (docs/ARCHITECTURE.md, "Seams").
    files: ["redfish/**/*.ts"],
    ignores: ["redfish/platform.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            { group: ["pepr", "pepr/*"], message: "redfish/ reaches Pepr only through redfish/platform.ts" },
            { group: ["**/sandbox", "**/sandbox/**"], message: "redfish/ must not depend on the sandbox" },
            { group: ["**/capabilities/config/*", "!**/capabilities/config/schema"], message: "redfish/ may import only the config's public schema" },
          ],
        },
      ],
    },
  },
  {
    // Kubernetes value helpers are imported by Redfish and the config alike: they import neither (nor Pepr).
    files: ["capabilities/common/kube-values.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        { patterns: [{ group: ["pepr", "pepr/*", "**/config/*", "**/redfish/**"], message: "kube-values.ts is plain: no config, Redfish or Pepr imports" }] },
      ],
    },
  },
];
