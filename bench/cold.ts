/**
 * `npm run bench:cold [-- --runs N --json --explain]`
 *
 * Cold start of every Lambda function, against an empty handler's and against its SDK floor:
 *
 * 1. Bundles each `functions/*.ts`, an empty handler (`export const handler = async () => ({})`) and one
 *    "SDK floor" per set of AWS SDK clients a function constructs at cold start (`FUNCTIONS[].clients`):
 *    an entry that only imports and constructs those clients with the house factories and options
 *    (`SDK_CLIENTS`), nothing else. All with esbuild's JS API and the construct's own options
 *    (`infra/constructs/house-bundling.ts` via `bench/lib/bundle.ts`) into a temp dir (`.mjs`).
 *    Size = the minified bundle's bytes, its source map excluded.
 * 2. Per bundle, one uncounted run in a fresh `node` with a network guard (any socket connect or DNS
 *    lookup during init, or within 250 ms after it, is recorded and refused): it warms the file cache
 *    and proves init makes no network call. A bundle that reaches for the network is not timed.
 * 3. N timed runs per bundle (round robin, so drift hits every bundle alike), each in a fresh `node`
 *    that takes `performance.now()` before and after `await import(bundle)`, with the environment a
 *    Lambda would see: NODE_OPTIONS=--enable-source-maps (the construct sets it), a region, dummy
 *    credentials, and the function's required variables (from its zod schema in
 *    `shared/schemas/config.ts`) at plausible dummy values, secrets as plain values so that
 *    `resolveSecret` short-circuits (so the function does not construct its Secrets Manager client
 *    here, while its floor does, as the function does in Lambda). The median is reported.
 * 4. Prints bundle KB (KiB), import ms, ratio to the empty handler's import ms, and a verdict. Budget
 *    (issue #8): <= 300 KiB and ratio <= 1.5. Exit 1 over budget (or on a network call at init), 2 on
 *    bad usage. Then, per function, its SDK floor: the floor's size and import, the function's ratios to
 *    it, what the function adds on top (our own code and libraries), whether the floor alone fits the
 *    budget, and SDK clients the bundle carries without constructing them at init.
 *    `--explain` adds the biggest packages of each bundle (esbuild metafile). With `--json` the last
 *    line is one JSON object with every figure.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type * as z from "zod/mini";
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
import { percentile } from "./lib/stats.ts";

const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));
const MAX_BYTES = 300 * 1024;
const MAX_RATIO = 1.5;
/** After init, how long the guard run keeps watching for a connection that init set off. */
const GUARD_LINGER_MS = 250;
const EMPTY = "(empty handler)";

type ConfigSchema = z.ZodMiniObject;

/** The AWS SDK clients the functions construct, and how the house builds each (factory and options). */
type SdkClient = "dynamodb" | "sqs" | "s3" | "eventbridge" | "secrets-manager";

/**
 * How an SDK floor imports and constructs each client: as its house factory does (same options; the
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
const SDK_CLIENTS: Record<SdkClient, { pkg: string; imports: string[]; construct: string }> = {
  dynamodb: {
    pkg: "@aws-sdk/client-dynamodb",
    imports: [
      'import { DynamoDBClient } from "@aws-sdk/client-dynamodb";',
      'import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";',
    ],
    construct:
      `DynamoDBDocumentClient.from(new DynamoDBClient({ maxAttempts: ${AWS.maxAttempts}, ` +
      `${handlerOptions(AWS.requestTimeoutMs, AWS.connectionTimeoutMs)} }), ` +
      "{ marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false } })",
  },
  sqs: {
    pkg: "@aws-sdk/client-sqs",
    imports: ['import { SQSClient } from "@aws-sdk/client-sqs";'],
    construct:
      `new SQSClient({ maxAttempts: ${AWS.maxAttempts}, ` +
      `${handlerOptions(AWS.requestTimeoutMs, AWS.connectionTimeoutMs)}, useQueueUrlAsEndpoint: false })`,
  },
  s3: {
    pkg: "@aws-sdk/client-s3",
    imports: ['import { S3Client } from "@aws-sdk/client-s3";'],
    construct:
      `new S3Client({ maxAttempts: ${S3_CLIENT_DEFAULTS.maxAttempts}, ` +
      `${handlerOptions(S3_CLIENT_DEFAULTS.requestTimeoutMs, S3_CLIENT_DEFAULTS.connectionTimeoutMs)} })`,
  },
  eventbridge: {
    pkg: "@aws-sdk/client-eventbridge",
    imports: ['import { EventBridgeClient } from "@aws-sdk/client-eventbridge";'],
    construct:
      `new EventBridgeClient({ maxAttempts: ${AWS.maxAttempts}, ` +
      `${handlerOptions(AWS.requestTimeoutMs, AWS.connectionTimeoutMs)} })`,
  },
  "secrets-manager": {
    pkg: "@aws-sdk/client-secrets-manager",
    imports: ['import { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";'],
    construct:
      `new SecretsManagerClient({ maxAttempts: ${AWS.maxAttempts}, ` +
      `${handlerOptions(AWS.requestTimeoutMs, AWS.connectionTimeoutMs)} })`,
  },
};
const CLIENT_ORDER = Object.keys(SDK_CLIENTS) as SdkClient[];

/**
 * Each function, the schema its module loads (`loadConfig(<schema>)` in `functions/<name>.ts`) and the
 * SDK clients it constructs at cold start in Lambda (`lifecycleJobStore` adds EventBridge; a secret ARN
 * adds Secrets Manager). A client listed here must be in the bundle (checked); a client in the bundle but
 * not listed is reported as carried without being constructed.
 */
const FUNCTIONS: ReadonlyArray<{ name: string; schema: ConfigSchema; clients: readonly SdkClient[] }> = [
  { name: "api", schema: apiConfig, clients: ["dynamodb", "sqs", "s3", "eventbridge"] },
  { name: "authorizer", schema: authorizerConfig, clients: ["dynamodb"] },
  // reconcile, dispatch and notify presign S3 GETs without the S3 client (shared/adapters/s3/presigner.ts).
  {
    name: "reconcile",
    schema: reconcileConfig,
    clients: ["dynamodb", "sqs", "eventbridge", "secrets-manager"],
  },
  {
    name: "dispatch",
    schema: dispatchConfig,
    clients: ["dynamodb", "sqs", "eventbridge", "secrets-manager"],
  },
  { name: "callback", schema: callbackConfig, clients: ["sqs", "secrets-manager"] },
  { name: "finalize", schema: finalizeConfig, clients: ["dynamodb", "sqs", "s3", "eventbridge"] },
  { name: "notify", schema: notifyConfig, clients: ["dynamodb", "sqs", "eventbridge"] },
];

/** The entry of an SDK floor: import and construct exactly these clients, export a do-nothing handler. */
function floorSource(clients: readonly SdkClient[]): string {
  const lines = [
    'import { NodeHttpHandler } from "@smithy/node-http-handler";',
    ...clients.flatMap((client) => SDK_CLIENTS[client].imports),
    `export const clients = [${clients.map((client) => SDK_CLIENTS[client].construct).join(", ")}];`,
    "export const handler = async () => ({});",
  ];
  return `${lines.join("\n")}\n`;
}

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
  readyMs: number;
  /** Import p50 over the empty handler's. */
  ratio: number;
  network: string[];
  overSize: boolean;
  overRatio: boolean;
  topPackages: Array<{ name: string; bytes: number }>;
}

interface FloorFigures extends Measured {
  /** The clients it constructs, e.g. "dynamodb+sqs". */
  clients: SdkClient[];
  /** Whether the floor alone is within the issue's budget. */
  withinBudget: boolean;
}

interface Row extends Measured {
  name: string;
  pass: boolean;
  /** The function's SDK floor and its figures against it (absent for the empty handler). */
  floor?: FloorFigures & {
    /** Function bytes / floor bytes. */
    sizeRatio: number;
    /** Function import p50 / floor import p50. */
    importRatio: number;
    /** What the function adds to its floor: our code and the libraries it brings. */
    addedBytes: number;
    addedImportMs: number;
  };
  /** SDK clients in the bundle that the function does not construct at init, with their bytes. */
  unconstructedClients?: Array<{ name: string; bytes: number }>;
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;
const signedKib = (bytes: number) => `${bytes < 0 ? "-" : "+"}${kib(Math.abs(bytes))}`;
const signedMs = (value: number) => `${value < 0 ? "-" : "+"}${ms(Math.abs(value))}`;
const median = (samples: readonly number[]) =>
  percentile(
    [...samples].sort((a, b) => a - b),
    0.5,
  );

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
    const floorKey = (clients: readonly SdkClient[]) =>
      CLIENT_ORDER.filter((client) => clients.includes(client)).join("+");
    const floorKeys = [...new Set(FUNCTIONS.map((fn) => floorKey(fn.clients)))];
    const fresh = { network: [], importSamples: [], readySamples: [] };
    const targets: Target[] = [
      { name: EMPTY, kind: "empty", entry: emptyEntry, slug: "empty", env: {}, ...fresh },
      ...floorKeys.map(
        (key): Target => ({
          name: `floor:${key}`,
          kind: "floor",
          entry: { contents: floorSource(key.split("+") as SdkClient[]) },
          slug: `floor-${key}`,
          env: {},
          network: [],
          importSamples: [],
          readySamples: [],
        }),
      ),
      ...FUNCTIONS.map(
        ({ name, schema }): Target => ({
          name,
          kind: "function",
          entry: path.join(REPO_ROOT, "functions", `${name}.ts`),
          slug: name,
          env: functionEnv(name, schema),
          network: [],
          importSamples: [],
          readySamples: [],
        }),
      ),
    ];

    say(
      `bench:cold: bundling ${targets.length} entries (${FUNCTIONS.length} functions, ${floorKeys.length} SDK ` +
        `floors, the empty handler; house esbuild options) into ${dir}`,
    );
    await Promise.all(
      targets.map(async (target) => {
        target.bundle = await bundleLikeHouse(target.entry, path.join(dir, `${target.slug}.mjs`), REPO_ROOT);
      }),
    );
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

    const [empty] = targets as [Target];
    const emptyImportMs = median(empty.importSamples);
    const measure = (target: Target): Measured => {
      const bundle = target.bundle as BundleResult;
      const importMs = median(target.importSamples);
      const ratioToEmpty = importMs / emptyImportMs;
      return {
        bytes: bundle.bytes,
        mapBytes: bundle.mapBytes,
        importMs,
        importMinMs: Math.min(...target.importSamples),
        importMaxMs: Math.max(...target.importSamples),
        readyMs: median(target.readySamples),
        ratio: ratioToEmpty,
        network: target.network,
        overSize: bundle.bytes > MAX_BYTES,
        overRatio: !(ratioToEmpty <= MAX_RATIO),
        topPackages: bytesByPackage(bundle.metafile),
      };
    };
    const floors = new Map<string, FloorFigures>(
      targets
        .filter((target) => target.kind === "floor")
        .map((target) => {
          const key = target.name.slice("floor:".length);
          const figures = measure(target);
          const declared = new Set(key.split("+").map((client) => SDK_CLIENTS[client as SdkClient].pkg));
          const extra = figures.topPackages.filter(
            (p) => p.name.startsWith("@aws-sdk/client-") && !declared.has(p.name),
          );
          if (extra.length > 0) {
            throw new Error(
              `bench:cold: SDK floor ${key} bundles ${extra.map((p) => p.name).join(", ")} too`,
            );
          }
          const withinBudget = !figures.overSize && !figures.overRatio && figures.network.length === 0;
          return [key, { ...figures, clients: key.split("+") as SdkClient[], withinBudget }];
        }),
    );

    const rows: Row[] = targets
      .filter((target) => target.kind !== "floor")
      .map((target) => {
        const figures = measure(target);
        const pass =
          target.kind === "empty" ||
          (!figures.overSize && !figures.overRatio && figures.network.length === 0);
        const row: Row = { name: target.name, ...figures, pass };
        const spec = FUNCTIONS.find((fn) => fn.name === target.name);
        if (!spec) return row;
        const bundled = new Map(figures.topPackages.map((p) => [p.name, p.bytes]));
        for (const client of spec.clients) {
          if (!bundled.has(SDK_CLIENTS[client].pkg)) {
            throw new Error(
              `bench:cold: functions/${spec.name}.ts no longer bundles ${SDK_CLIENTS[client].pkg}; ` +
                "update its clients in FUNCTIONS (bench/cold.ts)",
            );
          }
        }
        const constructed = new Set(spec.clients.map((client) => SDK_CLIENTS[client].pkg));
        row.unconstructedClients = figures.topPackages.filter(
          (p) => p.name.startsWith("@aws-sdk/client-") && !constructed.has(p.name),
        );
        const floor = floors.get(floorKey(spec.clients)) as FloorFigures;
        row.floor = {
          ...floor,
          sizeRatio: figures.bytes / floor.bytes,
          importRatio: figures.importMs / floor.importMs,
          addedBytes: figures.bytes - floor.bytes,
          addedImportMs: figures.importMs - floor.importMs,
        };
        return row;
      });

    const verdict = (row: Row) => {
      if (row.name === EMPTY) return "baseline";
      if (row.network.length > 0) return "FAIL network at init";
      const over = [row.overSize && "size", row.overRatio && "import"].filter(Boolean);
      return over.length === 0 ? "ok" : `OVER ${over.join(" + ")}`;
    };
    say("");
    say(
      table([
        ["function", "bundle", "map", "import p50", "min..max", "ratio", "boot+import", "verdict"],
        ...rows.map((row) => [
          row.name,
          kib(row.bytes),
          kib(row.mapBytes),
          row.network.length > 0 ? "n/a" : ms(row.importMs),
          row.network.length > 0 ? "" : `${ms(row.importMinMs)}..${ms(row.importMaxMs)}`,
          ratio(row.ratio),
          ms(row.readyMs),
          verdict(row),
        ]),
      ]),
    );
    say(
      `budget: bundle <= ${kib(MAX_BYTES)} (KB = 1024 bytes, map excluded), import p50 <= ${MAX_RATIO}x the ` +
        `empty handler's (${ms(emptyImportMs)}); boot+import = process start to import done (info only)`,
    );
    for (const row of rows.filter((r) => r.network.length > 0)) {
      say(`${row.name}: network at init (refused by the guard): ${row.network.join(", ")}`);
    }

    say("");
    say(
      table([
        [
          "function",
          "SDK floor: clients",
          "bundle",
          "import p50",
          "ratio",
          "floor alone",
          "fn/floor size",
          "fn/floor import",
          "fn adds",
          "",
        ],
        ...rows.flatMap((row) => {
          const floor = row.floor;
          if (!floor) return [];
          const floorVerdict = floor.withinBudget
            ? "within budget"
            : `OVER ${[floor.overSize && "size", floor.overRatio && "import"].filter(Boolean).join(" + ")}`;
          return [
            [
              row.name,
              floor.clients.join("+"),
              kib(floor.bytes),
              ms(floor.importMs),
              ratio(floor.ratio),
              floorVerdict,
              ratio(floor.sizeRatio),
              ratio(floor.importRatio),
              signedKib(floor.addedBytes),
              signedMs(floor.addedImportMs),
            ],
          ];
        }),
      ]),
    );
    say(
      "SDK floor: a bundle (house esbuild options) that only imports and constructs, with the house client " +
        "options, the AWS SDK clients the function constructs at cold start; ratio = its import over the empty " +
        "handler's; floor alone = whether it fits the budget by itself; fn adds = the function minus its floor: " +
        "our code and the libraries we chose (zod, Powertools, middy, lib-storage, the presigner...)",
    );
    for (const row of rows.filter((r) => (r.unconstructedClients ?? []).length > 0)) {
      const carried = (row.unconstructedClients ?? []).map((p) => `${p.name} (${kib(p.bytes)})`).join(", ");
      say(
        `${row.name}: bundles SDK clients it does not construct at init (counted in "fn adds"): ${carried}`,
      );
    }

    if (explain) {
      const explained = [
        ...rows.filter((r) => r.name !== EMPTY).map((row) => ({ label: row.name, figures: row as Measured })),
        ...[...floors].map(([key, figures]) => ({ label: `SDK floor ${key}`, figures: figures as Measured })),
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
    const floorsOver = [...floors].filter(([, floor]) => !floor.withinBudget).map(([key]) => key);
    say(`\nbench:cold: ${pass ? "within budget" : "OVER BUDGET"}`);
    if (!pass && floorsOver.length > 0) {
      say(
        `bench:cold: the SDK floor alone is over the budget for ${floorsOver.join(", ")}: with the AWS SDK v3 ` +
          "bundled, those functions cannot meet it whatever our own code does",
      );
    }
    if (json) {
      const trim = <T extends Measured>(figures: T) => {
        const { topPackages, ...rest } = figures;
        return explain ? { ...rest, topPackages: topPackages.slice(0, 10) } : rest;
      };
      const report = {
        node: process.version,
        runs,
        budget: { maxBytes: MAX_BYTES, maxRatio: MAX_RATIO },
        emptyImportMs,
        functions: rows.map((row) => ({ ...trim(row), ...(row.floor ? { floor: trim(row.floor) } : {}) })),
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
