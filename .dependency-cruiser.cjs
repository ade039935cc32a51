/**
 * The dependency direction of the layers (README, "Layout"), checked on every test run:
 * http → graphql → domain (ca, policy, revocation, audit) → common; store and signer/pkcs11 implement
 * the domain's ports; only src/main.ts (and the CLI entry points) wire concrete implementations together.
 */
const DOMAIN = "^src/(ca|policy|revocation|audit)/";

module.exports = {
  forbidden: [
    {
      name: "domain-stays-pure",
      comment: "The domain never imports the transport, the store, or the native modules.",
      severity: "error",
      from: { path: DOMAIN },
      to: { path: ["^src/(graphql|http|store|cli|config)/", "^src/signer/pkcs11/", "^src/main\\.ts$"] },
    },
    {
      name: "domain-no-infrastructure-packages",
      severity: "error",
      from: { path: DOMAIN },
      to: { path: "node_modules/(graphql|graphql-yoga|better-sqlite3|pkcs11js|pino)/" },
    },
    {
      name: "node-http-only-in-http",
      comment: "node:http and node:https belong to src/http (and the composition root).",
      severity: "error",
      from: { path: "^src/", pathNot: ["^src/http/", "^src/main\\.ts$"] },
      to: { path: "^(http|https)$", dependencyTypes: ["core"] },
    },
    {
      name: "sql-only-in-store",
      severity: "error",
      from: { path: "^src/", pathNot: "^src/store/" },
      to: { path: "node_modules/(better-sqlite3|pg)/" },
    },
    {
      name: "pkcs11-only-in-signer",
      severity: "error",
      from: { path: "^src/", pathNot: "^src/signer/pkcs11/" },
      to: { path: "node_modules/pkcs11js/" },
    },
    {
      name: "common-imports-nothing-else",
      severity: "error",
      from: { path: "^src/common/" },
      to: { path: "^src/", pathNot: "^src/common/" },
    },
    {
      name: "graphql-not-into-http",
      severity: "error",
      from: { path: "^src/graphql/" },
      to: { path: "^src/(http|store|cli)/|^src/signer/pkcs11/" },
    },
    {
      name: "concrete-wiring-only-in-composition-roots",
      comment: "Store and PKCS#11 implementations are created by src/main.ts and the CLI only.",
      severity: "error",
      from: { path: "^src/", pathNot: ["^src/main\\.ts$", "^src/cli/", "^src/store/", "^src/signer/pkcs11/"] },
      to: { path: ["^src/store/", "^src/signer/pkcs11/"] },
    },
    { name: "no-circular", severity: "error", from: {}, to: { circular: true } },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".js"] },
    exclude: { path: "src/graphql/generated/" },
  },
};
