/**
 * The esbuild options of every house Lambda bundle, in one place: `HouseFunction` hands them to
 * NodejsFunction's `bundling`, and `npm run bench:cold` (`bench/lib/bundle.ts`) runs esbuild's JS API
 * with the same object, so the bench measures what deploys. No imports: the bench loads this without CDK.
 */

/** ESM bundles have no `require`; some bundled CommonJS dependencies still call it. */
export const ESM_REQUIRE_BANNER =
  "import { createRequire as __houseCreateRequire } from 'node:module';const require = __houseCreateRequire(import.meta.url);";

/**
 * Packages replaced in every Lambda bundle (esbuild `alias`), by modules named relative to the
 * repository root (esbuild resolves an alias from its working directory: the project root).
 *
 * `@aws-sdk/credential-provider-node` is the SDK's default credential chain (environment, SSO, ini files,
 * credential processes, web identity, container and instance metadata). Every client's runtime config
 * imports it statically, and with it the STS/SSO clients of `@aws-sdk/nested-clients`: a large share
 * of a DynamoDB-only bundle and of its import time. A Lambda function
 * always gets its role's credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN,
 * which is the first link of that chain and the one it picks there, so the bundles take only that link
 * (`lambda-env-credentials.ts`, which fails loudly naming this alias when the variables are missing).
 * Only bundles are affected: tests, the local stack and the worker import the SDK unbundled. Remove the
 * alias if a function ever has to get credentials elsewhere (a profile, a container credentials endpoint).
 */
export const LAMBDA_ALIASES: Readonly<Record<string, string>> = {
  "@aws-sdk/credential-provider-node": "./infra/constructs/lambda-env-credentials.ts",
};

export const HOUSE_BUNDLING = {
  target: "node22",
  format: "esm",
  /** ESM builds first (`module`): every bundled package resolves to its ES module build, none to CommonJS. */
  mainFields: ["module", "main"],
  banner: ESM_REQUIRE_BANNER,
  minify: true,
  /**
   * With NODE_OPTIONS=--enable-source-maps (set by the construct), stack traces point at the TypeScript
   * sources. Node reads and parses the map when the bundle loads, which lengthens every cold import;
   * kept because a stack trace through minified code is useless.
   */
  sourceMap: true,
  /**
   * The map without the sources' text: several times smaller, so less for Node to parse at each cold
   * import. Stack traces need only the mappings; Node just prints an uncaught error's frame
   * without its source line.
   */
  sourcesContent: false,
  /** The AWS SDK is bundled (tested against the version locked here), nothing is external. */
  external: [] as string[],
  alias: LAMBDA_ALIASES,
} as const;
