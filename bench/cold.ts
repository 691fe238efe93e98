/**
 * `npm run bench:cold [-- --runs N --json --explain]`
 *
 * Cold start of every Lambda function, against its SDK floor: what the AWS SDK it uses costs by itself.
 *
 * 1. Bundles each `functions/*.ts` and an empty handler (`export const handler = async () => ({})`) with
 *    esbuild's JS API and the construct's own options (`infra/constructs/house-bundling.ts` via
 *    `bench/lib/bundle.ts`) into a temp dir (`.mjs`). Size = the minified bundle's bytes, its source map
 *    excluded.
 * 2. Reads from each function's esbuild metafile which AWS SDK clients it bundles (`@aws-sdk/client-*`,
 *    plus `@aws-sdk/lib-dynamodb`: `bench/lib/sdk-floor.ts`), and bundles, alike, one "SDK floor" per set
 *    found: an entry that imports exactly those packages and `@smithy/node-http-handler` (the house gives
 *    every client a request handler with timeouts) and constructs each client as its house factory does
 *    (`SDK_CLIENTS`), nothing else. What those pull in themselves (`@smithy/*`, `@aws-sdk/core`, the
 *    credential chain) is floor; everything else in the function's bundle is ours: our code and the
 *    libraries we chose (zod, Powertools, middy, lib-storage, the presigner...). The floor's own metafile
 *    must show the same SDK clients (checked).
 * 3. Per bundle, one uncounted run in a fresh `node` with a network guard (any socket connect or DNS
 *    lookup during init, or within 250 ms after it, is recorded and refused): it warms the file cache
 *    and proves init makes no network call. A bundle that reaches for the network is not timed.
 * 4. N timed runs per bundle (round robin, so drift hits every bundle alike), each in a fresh `node`
 *    that takes `performance.now()` before and after `await import(bundle)`, with the environment a
 *    Lambda would see: NODE_OPTIONS=--enable-source-maps (the construct sets it), a region, dummy
 *    credentials, and the function's required variables (from its zod schema in
 *    `shared/schemas/config.ts`) at plausible dummy values, secrets as plain values so that
 *    `resolveSecret` short-circuits (so the function does not construct its Secrets Manager client
 *    here, while its floor does, as the function does in Lambda). The median is reported.
 * 5. Prints, per function, its bundle KB (KiB) and import ms, its floor's, the ratios and what ours adds
 *    (KB, ms), and a verdict. Budget (issue #8): bundle and import p50 each <= 1.5x the function's SDK
 *    floor's, i.e. our code adds at most half of what the SDK alone costs. The empty handler's import is
 *    printed for scale only. Exit 1 when a function does not meet the budget (or on a network call at
 *    init), 2 on bad usage.
 *    `--explain` adds the biggest packages of each bundle (esbuild metafile). With `--json` the last
 *    line is one JSON object with every figure.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type * as z from "zod/mini";
import { lambdaCatalog } from "../infra/config.ts";
import { LOCAL_SELF_HOSTED_MODELS } from "../local/template.ts";
import { AWS_CLIENT_DEFAULTS } from "../shared/adapters/aws-client.ts";
import { S3_CLIENT_DEFAULTS } from "../shared/adapters/s3/object-store.ts";
import {
  apiConfig,
  authorizerConfig,
  callbackConfig,
  dispatchConfig,
  finalizeConfig,
  loadConfig,
  notifyConfig,
  reconcileConfig,
} from "../shared/schemas/config.ts";
import { parseArgs, UsageError } from "./lib/args.ts";
import { type BundleResult, bundleLikeHouse, bytesByPackage } from "./lib/bundle.ts";
import { ms, ratio, table } from "./lib/print.ts";
import {
  type AgainstFloor,
  againstFloor,
  type FloorClient,
  floorKey,
  floorSource,
  sdkPackagesIn,
} from "./lib/sdk-floor.ts";
import { percentile } from "./lib/stats.ts";

const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));
/** Budget: a function's bundle and its import p50 each at most this many times its SDK floor's. */
const MAX_OVER_FLOOR = 1.5;
/** After init, how long the guard run keeps watching for a connection that init set off. */
const GUARD_LINGER_MS = 250;
const EMPTY = "(empty handler)";

type ConfigSchema = z.ZodMiniObject;

/**
 * How an SDK floor imports and constructs each AWS SDK package a function may bundle, keyed by package: as its house factory does (same options; the
 * timeouts and attempts come from the house constants, `AWS_CLIENT_DEFAULTS` and `S3_CLIENT_DEFAULTS`),
 * but straight from the SDK packages, so that whatever a house module imports besides its client counts
 * as ours, not as the SDK's.
 * Secrets Manager: `resolveSecret` fetches through a Powertools Parameters provider whose client
 * `createSecretsProvider` builds with the same bounds.
 */
const handlerOptions = (requestTimeoutMs: number, connectionTimeoutMs: number) =>
  `requestHandler: new NodeHttpHandler({ connectionTimeout: ${connectionTimeoutMs}, requestTimeout: ${requestTimeoutMs}, ` +
  "throwOnRequestTimeout: true, socketTimeout: 0 })";
const AWS = AWS_CLIENT_DEFAULTS;
const FLOOR_PRELUDE = ['import { NodeHttpHandler } from "@smithy/node-http-handler";'];
const SDK_CLIENTS: Record<string, FloorClient> = {
  "@aws-sdk/client-dynamodb": {
    imports: ['import { DynamoDBClient } from "@aws-sdk/client-dynamodb";'],
    construct:
      `new DynamoDBClient({ maxAttempts: ${AWS.maxAttempts}, ` +
      `${handlerOptions(AWS.requestTimeoutMs, AWS.connectionTimeoutMs)} })`,
  },
  "@aws-sdk/lib-dynamodb": {
    imports: ['import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";'],
    wraps: "@aws-sdk/client-dynamodb",
    construct:
      "DynamoDBDocumentClient.from($inner, " +
      "{ marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false } })",
  },
  "@aws-sdk/client-sqs": {
    imports: ['import { SQSClient } from "@aws-sdk/client-sqs";'],
    construct:
      `new SQSClient({ maxAttempts: ${AWS.maxAttempts}, ` +
      `${handlerOptions(AWS.requestTimeoutMs, AWS.connectionTimeoutMs)}, useQueueUrlAsEndpoint: false })`,
  },
  "@aws-sdk/client-s3": {
    imports: ['import { S3Client } from "@aws-sdk/client-s3";'],
    construct:
      `new S3Client({ maxAttempts: ${S3_CLIENT_DEFAULTS.maxAttempts}, ` +
      `${handlerOptions(S3_CLIENT_DEFAULTS.requestTimeoutMs, S3_CLIENT_DEFAULTS.connectionTimeoutMs)} })`,
  },
  "@aws-sdk/client-eventbridge": {
    imports: ['import { EventBridgeClient } from "@aws-sdk/client-eventbridge";'],
    construct:
      `new EventBridgeClient({ maxAttempts: ${AWS.maxAttempts}, ` +
      `${handlerOptions(AWS.requestTimeoutMs, AWS.connectionTimeoutMs)} })`,
  },
  "@aws-sdk/client-secrets-manager": {
    imports: ['import { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";'],
    construct:
      `new SecretsManagerClient({ maxAttempts: ${AWS.maxAttempts}, ` +
      `${handlerOptions(AWS.requestTimeoutMs, AWS.connectionTimeoutMs)} })`,
  },
};

/** Each function and the schema its module loads (`loadConfig(<schema>)` in `functions/<name>.ts`). */
const FUNCTIONS: ReadonlyArray<{ name: string; schema: ConfigSchema }> = [
  { name: "api", schema: apiConfig },
  { name: "authorizer", schema: authorizerConfig },
  { name: "reconcile", schema: reconcileConfig },
  { name: "dispatch", schema: dispatchConfig },
  { name: "admit", schema: dispatchConfig },
  { name: "callback", schema: callbackConfig },
  { name: "finalize", schema: finalizeConfig },
  { name: "notify", schema: notifyConfig },
];

/** Secrets the functions resolve at init (`resolveSecret`): given as plain values, never as ARNs. */
const PLAIN_SECRETS = ["CALLBACK_SECRET", "MODELSLAB_API_KEY"];

/** What Lambda itself sets, plus what the house construct adds to every function. */
const LAMBDA_ENV: Record<string, string> = {
  AWS_REGION: "us-east-1",
  AWS_DEFAULT_REGION: "us-east-1",
  AWS_ACCESS_KEY_ID: "AKIAIOSFODNN7EXAMPLE",
  AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
  AWS_SESSION_TOKEN: "dummy",
  AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "512",
  AWS_LAMBDA_FUNCTION_VERSION: "$LATEST",
  AWS_EXECUTION_ENV: "AWS_Lambda_nodejs22.x",
  TZ: ":UTC",
  NODE_OPTIONS: "--enable-source-maps",
  LOG_LEVEL: "INFO",
  POWERTOOLS_SERVICE_NAME: "controlnet-orchestrator",
};

/** A plausible value for a required variable, by its name; undefined when the name is not recognised. */
function dummyFor(key: string): string | undefined {
  if (key === "TABLE_NAME") return "jobs";
  if (key === "EVENT_BUS_NAME") return "bus";
  if (key.endsWith("_QUEUE_URL") || key.endsWith("_DLQ_URL")) {
    return `https://sqs.us-east-1.amazonaws.com/000000000000/${key.toLowerCase().replaceAll("_", "-")}`;
  }
  if (key.endsWith("_BUCKET")) return "b";
  if (key.endsWith("_URL")) return "https://api.example.com";
  // The catalog as the stack gives it to its functions (the local one stands for any).
  if (key === "SELF_HOSTED_MODELS") return lambdaCatalog(LOCAL_SELF_HOSTED_MODELS);
  return undefined;
}

/** The function's variables: every one its schema requires (no default), plus its secrets as plain values. */
function functionEnv(name: string, schema: ConfigSchema): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, field] of Object.entries(schema.shape)) {
    if (PLAIN_SECRETS.includes(key)) {
      env[key] = "x";
      continue;
    }
    if ((field as z.ZodMiniType).safeParse(undefined).success) continue;
    const value = dummyFor(key);
    if (value === undefined) throw new Error(`bench:cold: no dummy value for ${name}'s required ${key}`);
    env[key] = value;
  }
  loadConfig(schema, env); // Fails here, naming every problem, rather than in a child process.
  return env;
}

/**
 * Loaded with `--import` in the guard run only: records (and refuses) every socket connect and DNS
 * lookup. HTTP, HTTPS, TLS, fetch and undici all connect through `net.Socket.prototype.connect`.
 */
const GUARD_MODULE = `
import net from "node:net";
import dns from "node:dns";
import { syncBuiltinESMExports } from "node:module";
const seen = (globalThis.__coldNet = []);
const refuse = (what) => { seen.push(what); return new Error("bench:cold guard: network at init: " + what); };
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  const target = args[0] && typeof args[0] === "object" ? (args[0].host ?? args[0].path ?? "?") + ":" + (args[0].port ?? "") : String(args[0]);
  const error = refuse("connect " + target);
  process.nextTick(() => this.destroy(error));
  return this;
};
const lookup = dns.lookup;
dns.lookup = function (host, ...rest) {
  const error = refuse("dns " + host);
  const callback = rest.find((arg) => typeof arg === "function");
  if (callback) process.nextTick(() => callback(error));
};
dns.promises.lookup = async (host) => { throw refuse("dns " + host); };
syncBuiltinESMExports();
void connect; void lookup;
`;

/** Run by `node --input-type=module -e`: argv[1] is the bundle's URL, argv[2] "guard" or "time". */
const CHILD_SCRIPT = `
const before = performance.now();
const mod = await import(process.argv[1]);
const after = performance.now();
if (process.argv[2] === "guard") await new Promise((resolve) => setTimeout(resolve, ${GUARD_LINGER_MS}));
process.stdout.write("\\n@@cold " + JSON.stringify({
  importMs: after - before,
  readyMs: after,
  handler: typeof mod.handler,
  network: globalThis.__coldNet ?? [],
}) + "\\n");
process.exit(0);
`;

interface ChildResult {
  importMs: number;
  /** From the process's time origin to the end of the import: node's own boot included. */
  readyMs: number;
  handler: string;
  network: string[];
}

function runChild(bundle: string, env: Record<string, string>, guard: boolean): Promise<ChildResult> {
  const args = [
    ...(guard ? ["--import", `data:text/javascript,${encodeURIComponent(GUARD_MODULE)}`] : []),
    "--input-type=module",
    "-e",
    CHILD_SCRIPT,
    pathToFileURL(bundle).href,
    guard ? "guard" : "time",
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: path.dirname(bundle),
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...LAMBDA_ENV, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    child.on("error", reject);
    child.on("close", (code) => {
      const line = stdout.split("\n").findLast((l) => l.startsWith("@@cold "));
      if (code !== 0 || line === undefined) {
        const said = `${stderr}${stdout}`.trim().split("\n").slice(-15).join("\n");
        reject(new Error(`importing ${path.basename(bundle)} failed (exit ${code}):\n${said}`));
        return;
      }
      resolve(JSON.parse(line.slice("@@cold ".length)) as ChildResult);
    });
  });
}

interface Target {
  name: string;
  kind: "empty" | "floor" | "function";
  /** A file, or TypeScript source resolved from the repository root (floors). */
  entry: string | { contents: string };
  slug: string;
  env: Record<string, string>;
  bundle?: BundleResult;
  network: string[];
  importSamples: number[];
  readySamples: number[];
}

interface Measured {
  bytes: number;
  mapBytes: number;
  importMs: number;
  importMinMs: number;
  importMaxMs: number;
  /** From the process's time origin to the end of the import: node's own boot included (info only). */
  readyMs: number;
  network: string[];
  topPackages: Array<{ name: string; bytes: number }>;
}

interface FloorFigures extends Measured {
  /** `floorKey` of its packages, e.g. "dynamodb+dynamodb-doc+sqs". */
  key: string;
  /** The AWS SDK packages it imports: those the function's bundle carries. */
  packages: string[];
}

interface Row extends Measured, AgainstFloor {
  name: string;
  floor: FloorFigures;
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;
const signedKib = (bytes: number) => `${bytes < 0 ? "-" : "+"}${kib(Math.abs(bytes))}`;
const signedMs = (value: number) => `${value < 0 ? "-" : "+"}${ms(Math.abs(value))}`;
const median = (samples: readonly number[]) =>
  percentile(
    [...samples].sort((a, b) => a - b),
    0.5,
  );
const newTarget = (fields: Pick<Target, "name" | "kind" | "entry" | "slug" | "env">): Target => ({
  ...fields,
  network: [],
  importSamples: [],
  readySamples: [],
});

async function main(): Promise<number> {
  let args: ReturnType<typeof parseArgs>;
  try {
    args = parseArgs(process.argv.slice(2), { integers: { runs: 7 }, flags: ["json", "explain"] });
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(error.message);
      return 2;
    }
    throw error;
  }
  const runs = args.integers.runs as number;
  const json = args.flags.has("json");
  const explain = args.flags.has("explain");
  const say = (line: string) => console.log(line);

  const dir = await mkdtemp(path.join(os.tmpdir(), "bench-cold-"));
  try {
    const emptyEntry = path.join(dir, "empty.ts");
    await writeFile(emptyEntry, "export const handler = async () => ({});\n");
    const empty = newTarget({ name: EMPTY, kind: "empty", entry: emptyEntry, slug: "empty", env: {} });
    const functions = FUNCTIONS.map(({ name, schema }) =>
      newTarget({
        name,
        kind: "function",
        entry: path.join(REPO_ROOT, "functions", `${name}.ts`),
        slug: name,
        env: functionEnv(name, schema),
      }),
    );
    const bundle = async (target: Target) => {
      target.bundle = await bundleLikeHouse(target.entry, path.join(dir, `${target.slug}.mjs`), REPO_ROOT);
      return target.bundle;
    };

    say(
      `bench:cold: bundling ${FUNCTIONS.length} functions and the empty handler (house esbuild options) ` +
        `into ${dir}`,
    );
    await Promise.all([empty, ...functions].map(bundle));
    // Each function's floor: the SDK packages its own bundle carries.
    const packagesOf = new Map(
      functions.map((fn) => [fn, sdkPackagesIn((fn.bundle as BundleResult).metafile)]),
    );
    const floorTargets = new Map<string, Target>();
    for (const packages of packagesOf.values()) {
      const key = floorKey(packages);
      if (floorTargets.has(key)) continue;
      const entry = { contents: floorSource(packages, SDK_CLIENTS, FLOOR_PRELUDE) };
      floorTargets.set(
        key,
        newTarget({ name: `floor:${key}`, kind: "floor", entry, slug: `floor-${key}`, env: {} }),
      );
    }
    say(`bench:cold: bundling ${floorTargets.size} SDK floors: ${[...floorTargets.keys()].join(", ")}`);
    await Promise.all(
      [...floorTargets].map(async ([key, target]) => {
        const found = floorKey(sdkPackagesIn((await bundle(target)).metafile));
        if (found !== key) throw new Error(`bench:cold: SDK floor ${key} bundles ${found}`);
      }),
    );
    const targets = [empty, ...floorTargets.values(), ...functions];
    const bundleOf = (target: Target) => target.bundle?.outfile as string;

    say(`bench:cold: guard run per bundle, then ${runs} timed runs each (node ${process.version})`);
    for (const target of targets) {
      const result = await runChild(bundleOf(target), target.env, true);
      if (result.handler !== "function") throw new Error(`${target.name}: no handler function exported`);
      target.network = result.network;
    }
    const timed = targets.filter((target) => target.network.length === 0);
    for (let run = 0; run < runs; run++) {
      for (const target of timed) {
        const result = await runChild(bundleOf(target), target.env, false);
        target.importSamples.push(result.importMs);
        target.readySamples.push(result.readyMs);
      }
    }

    const measure = (target: Target): Measured => {
      const result = target.bundle as BundleResult;
      return {
        bytes: result.bytes,
        mapBytes: result.mapBytes,
        importMs: median(target.importSamples),
        importMinMs: Math.min(...target.importSamples),
        importMaxMs: Math.max(...target.importSamples),
        readyMs: median(target.readySamples),
        network: target.network,
        topPackages: bytesByPackage(result.metafile),
      };
    };
    const emptyImportMs = median(empty.importSamples);
    const floors = new Map<string, FloorFigures>(
      [...packagesOf.values()].map((packages) => {
        const key = floorKey(packages);
        return [key, { ...measure(floorTargets.get(key) as Target), key, packages }];
      }),
    );
    const rows: Row[] = functions.map((target) => {
      const figures = measure(target);
      const floor = floors.get(floorKey(packagesOf.get(target) as string[])) as FloorFigures;
      const budget = againstFloor(figures, floor, MAX_OVER_FLOOR);
      const pass = budget.pass && figures.network.length === 0 && floor.network.length === 0;
      return { name: target.name, ...figures, ...budget, pass, floor };
    });

    const verdict = (row: Row) => {
      if (row.network.length > 0) return "FAIL network at init";
      if (row.floor.network.length > 0) return "FAIL floor: network at init";
      const over = [row.overSize && "size", row.overImport && "import"].filter(Boolean);
      return over.length === 0 ? "PASS" : `NOT MET (${over.join(" + ")})`;
    };
    const importCell = (figures: Measured) => (figures.network.length > 0 ? "n/a" : ms(figures.importMs));
    const spread = (figures: Measured) =>
      figures.network.length > 0 ? "" : `${ms(figures.importMinMs)}..${ms(figures.importMaxMs)}`;
    say("");
    say(
      table([
        ["", "ours", "", "SDK floor", "", "ours / floor", "", "ours adds", "", ""],
        ["function", "bundle", "import p50", "bundle", "import p50", "size", "import", "KB", "ms", "verdict"],
        ...rows.map((row) => [
          row.name,
          kib(row.bytes),
          importCell(row),
          kib(row.floor.bytes),
          importCell(row.floor),
          ratio(row.sizeRatio),
          ratio(row.importRatio),
          signedKib(row.addedBytes),
          signedMs(row.addedImportMs),
          verdict(row),
        ]),
      ]),
    );
    say(
      `budget: bundle and import p50 each <= ${MAX_OVER_FLOOR}x the function's SDK floor's (KB = 1024 bytes, ` +
        "maps excluded). SDK floor = a bundle (house esbuild options) that only imports the AWS SDK clients " +
        "the function's bundle carries (@aws-sdk/client-*, @aws-sdk/lib-dynamodb) and @smithy/node-http-handler, " +
        "and constructs them with the house client options; ours adds = the function minus its floor: our " +
        "code and the libraries we chose (zod, Powertools, middy, lib-storage, the presigner...). " +
        "boot+import = process start to import done (info only).",
    );
    const floorRatios = [...floors.values()].map((floor) => floor.importMs / emptyImportMs);
    say(
      `for scale: an empty handler imports in ${ms(emptyImportMs)}; the SDK floors alone take ` +
        `${ratio(Math.min(...floorRatios))}..${ratio(Math.max(...floorRatios))} that`,
    );
    say("");
    say(
      table([
        ["function", "map", "import min..max", "boot+import", "SDK floor: packages", "floor import min..max"],
        ...rows.map((row) => [
          row.name,
          kib(row.mapBytes),
          spread(row),
          ms(row.readyMs),
          row.floor.key,
          spread(row.floor),
        ]),
      ]),
    );
    for (const [name, network] of [
      ...rows.map((row) => [row.name, row.network] as const),
      ...[...floors.values()].map((floor) => [`SDK floor ${floor.key}`, floor.network] as const),
    ]) {
      if (network.length > 0) say(`${name}: network at init (refused by the guard): ${network.join(", ")}`);
    }

    if (explain) {
      const explained = [
        ...rows.map((row) => ({ label: row.name, figures: row as Measured })),
        ...[...floors.values()].map((floor) => ({
          label: `SDK floor ${floor.key}`,
          figures: floor as Measured,
        })),
      ];
      for (const { label, figures } of explained) {
        say(`\n${label}: biggest contributors to the ${kib(figures.bytes)} bundle`);
        say(
          table(
            figures.topPackages
              .slice(0, 10)
              .map((p) => [`  ${p.name}`, kib(p.bytes), `${((100 * p.bytes) / figures.bytes).toFixed(1)}%`]),
          ),
        );
      }
    }

    const pass = rows.every((row) => row.pass);
    const notMet = rows.filter((row) => !row.pass).map((row) => row.name);
    say(`\nbench:cold: ${pass ? "every function within budget" : `NOT MET for ${notMet.join(", ")}`}`);
    if (json) {
      const trim = <T extends Measured>(figures: T) => {
        const { topPackages, ...rest } = figures;
        return explain ? { ...rest, topPackages: topPackages.slice(0, 10) } : rest;
      };
      const report = {
        node: process.version,
        runs,
        budget: { maxOverFloor: MAX_OVER_FLOOR },
        emptyImportMs,
        functions: rows.map(({ floor, ...row }) => ({ ...trim(row), floor: floor.key })),
        floors: Object.fromEntries([...floors].map(([key, floor]) => [key, trim(floor)])),
        pass,
      };
      say(JSON.stringify(report));
    }
    return pass ? 0 : 1;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

process.exitCode = await main();
