/**
 * `npm run bench:cold [-- --runs N --json --explain]`
 *
 * Cold start of every Lambda function, against an empty handler's:
 *
 * 1. Bundles each `functions/*.ts` and an empty handler (`export const handler = async () => ({})`) with
 *    esbuild's JS API and the house construct's options (`bench/lib/bundle.ts`) into a temp dir (`.mjs`).
 *    Size = the minified bundle's bytes, its source map excluded.
 * 2. Per bundle, one uncounted run in a fresh `node` with a network guard (any socket connect or DNS
 *    lookup during init, or within 250 ms after it, is recorded and refused): it warms the file cache
 *    and proves init makes no network call. A bundle that reaches for the network is not timed.
 * 3. N timed runs per bundle (round robin, so drift hits every bundle alike), each in a fresh `node`
 *    that takes `performance.now()` before and after `await import(bundle)`, with the environment a
 *    Lambda would see: NODE_OPTIONS=--enable-source-maps (the construct sets it), a region, dummy
 *    credentials, and the function's required variables (from its zod schema in
 *    `shared/schemas/config.ts`) at plausible dummy values, secrets as plain values so that
 *    `resolveSecret` short-circuits. The median is reported.
 * 4. Prints bundle KB (KiB), import ms, ratio to the empty handler's import ms, and a verdict. Budget:
 *    <= 300 KiB and ratio <= 1.5. Exit 1 over budget (or on a network call at init), 2 on bad usage.
 *    `--explain` adds the biggest packages of each bundle (esbuild metafile). With `--json` the last
 *    line is one JSON object with every figure.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { z } from "zod";
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

type ConfigSchema = z.ZodObject<z.ZodRawShape>;

/** Each function and the schema its module loads (`loadConfig(<schema>)` in `functions/<name>.ts`). */
const FUNCTIONS: ReadonlyArray<{ name: string; schema: ConfigSchema }> = [
  { name: "api", schema: apiConfig },
  { name: "authorizer", schema: authorizerConfig },
  { name: "reconcile", schema: reconcileConfig },
  { name: "dispatch", schema: dispatchConfig },
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
    if ((field as z.ZodType).safeParse(undefined).success) continue;
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
  entry: string;
  env: Record<string, string>;
  bundle?: BundleResult;
  network: string[];
  importSamples: number[];
  readySamples: number[];
}

interface Row {
  name: string;
  bytes: number;
  mapBytes: number;
  importMs: number;
  importMinMs: number;
  importMaxMs: number;
  readyMs: number;
  ratio: number;
  network: string[];
  overSize: boolean;
  overRatio: boolean;
  pass: boolean;
  topPackages: Array<{ name: string; bytes: number }>;
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;
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
    const targets: Target[] = [
      { name: EMPTY, entry: emptyEntry, env: {}, network: [], importSamples: [], readySamples: [] },
      ...FUNCTIONS.map(({ name, schema }) => ({
        name,
        entry: path.join(REPO_ROOT, "functions", `${name}.ts`),
        env: functionEnv(name, schema),
        network: [],
        importSamples: [],
        readySamples: [],
      })),
    ];

    say(`bench:cold: bundling ${targets.length} entries (house esbuild options) into ${dir}`);
    await Promise.all(
      targets.map(async (target) => {
        const slug = target.name === EMPTY ? "empty" : target.name;
        target.bundle = await bundleLikeHouse(target.entry, path.join(dir, `${slug}.mjs`), REPO_ROOT);
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
    const rows: Row[] = targets.map((target) => {
      const bundle = target.bundle as BundleResult;
      const importMs = median(target.importSamples);
      const rowRatio = importMs / emptyImportMs;
      const overSize = bundle.bytes > MAX_BYTES;
      const overRatio = !(rowRatio <= MAX_RATIO);
      return {
        name: target.name,
        bytes: bundle.bytes,
        mapBytes: bundle.mapBytes,
        importMs,
        importMinMs: Math.min(...target.importSamples),
        importMaxMs: Math.max(...target.importSamples),
        readyMs: median(target.readySamples),
        ratio: rowRatio,
        network: target.network,
        overSize,
        overRatio,
        pass: target.name === EMPTY || (!overSize && !overRatio && target.network.length === 0),
        topPackages: bytesByPackage(bundle.metafile).slice(0, 10),
      };
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
    if (explain) {
      for (const row of rows.filter((r) => r.name !== EMPTY)) {
        say(`\n${row.name}: biggest contributors to the ${kib(row.bytes)} bundle`);
        say(
          table(
            row.topPackages.map((p) => [
              `  ${p.name}`,
              kib(p.bytes),
              `${((100 * p.bytes) / row.bytes).toFixed(1)}%`,
            ]),
          ),
        );
      }
    }

    const pass = rows.every((row) => row.pass);
    say(`\nbench:cold: ${pass ? "within budget" : "OVER BUDGET"}`);
    if (json) {
      const report = {
        node: process.version,
        runs,
        budget: { maxBytes: MAX_BYTES, maxRatio: MAX_RATIO },
        emptyImportMs,
        functions: rows.map(({ topPackages, ...row }) => (explain ? { ...row, topPackages } : row)),
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
