/**
 * The worker image's runtime dependency set, without Docker: worker/Dockerfile is read, not copied.
 * Its build stage's esbuild command (every flag, `--external:`s included) bundles worker/src/main.ts;
 * its deps stage's `npm ci` (with `--omit=dev`) installs the production dependencies from the repo's
 * package.json, package-lock.json and .npmrc; the runtime stage's `COPY --from=` lines assemble the
 * app folder and its `CMD`, `WORKDIR` and `ENV` start it. A package the bundle leaves external that
 * is not a production dependency fails the start with ERR_MODULE_NOT_FOUND before the configuration
 * is read; a healthy image reaches the configuration check and exits 2 on an empty environment.
 *
 * The install adds `--ignore-scripts` (onnxruntime-node's install script only adds the CUDA binaries;
 * the CPU binary ships in the package) and `--prefer-offline` (the npm cache is warm from the
 * checkout's own `npm ci`), so it is the Dockerfile's dependency set at the cost of a local copy.
 */
import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { createRequire, isBuiltin } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const REPO = resolve(import.meta.dirname, "../..");
const DOCKERFILE = join(REPO, "worker/Dockerfile");

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  name: string;
  instructions: Instruction[];
}

/** The Dockerfile's stages and instructions, line continuations joined, comments dropped. */
function parseDockerfile(text: string): Stage[] {
  const lines: string[] = [];
  let pending = "";
  for (const raw of text.split("\n")) {
    if (/^\s*#/.test(raw)) continue;
    const line = `${pending}${raw}`;
    if (/\\\s*$/.test(line)) {
      pending = `${line.replace(/\\\s*$/, "")} `;
      continue;
    }
    pending = "";
    if (line.trim() !== "") lines.push(line.trim());
  }
  const stages: Stage[] = [];
  for (const line of lines) {
    const match = /^(\S+)\s+([\s\S]*)$/.exec(line);
    if (!match) continue;
    const op = (match[1] as string).toUpperCase();
    const args = match[2] as string;
    if (op === "FROM") {
      stages.push({ name: /\sAS\s+(\S+)/i.exec(args)?.[1] ?? String(stages.length), instructions: [] });
    } else {
      stages.at(-1)?.instructions.push({ op, args });
    }
  }
  return stages;
}

/** Splits a shell command into words: whitespace, single and double quotes (no expansions). */
function shellWords(command: string): string[] {
  const words: string[] = [];
  let word: string | null = null;
  for (let i = 0; i < command.length; i++) {
    const c = command[i] as string;
    if (c === "'" || c === '"') {
      const end = command.indexOf(c, i + 1);
      if (end < 0) throw new Error(`unterminated quote in: ${command}`);
      word = (word ?? "") + command.slice(i + 1, end);
      i = end;
    } else if (/\s/.test(c)) {
      if (word !== null) words.push(word);
      word = null;
    } else {
      word = (word ?? "") + c;
    }
  }
  if (word !== null) words.push(word);
  return words;
}

/** The words of the `RUN` command of `stage` that starts with `prefix` (up to a `&&`). */
function runCommand(stage: Stage, prefix: string[]): string[] {
  for (const { op, args } of stage.instructions) {
    if (op !== "RUN") continue;
    const words = shellWords(args);
    const end = words.indexOf("&&");
    const command = end < 0 ? words : words.slice(0, end);
    if (prefix.every((word, i) => command[i] === word)) return command.slice(prefix.length);
  }
  throw new Error(`stage ${stage.name} has no RUN ${prefix.join(" ")}`);
}

const stageNamed = (stages: Stage[], name: string): Stage => {
  const stage = stages.find((s) => s.name === name);
  if (!stage) throw new Error(`worker/Dockerfile has no stage ${name}`);
  return stage;
};
const lastArg = (stage: Stage, op: string): string | undefined =>
  stage.instructions.filter((i) => i.op === op).at(-1)?.args;

interface Image {
  /** The runtime stage's WORKDIR, as a folder here. */
  app: string;
  cmd: string[];
  env: Record<string, string>;
  externals: string[];
  /** Every package the bundle imports or requires at run time (esbuild's metafile), builtins aside. */
  runtimeImports: string[];
}

/**
 * Replays the Dockerfile into `root`: `root/build` stands for the build stage's WORKDIR, `root/deps`
 * for the deps stage's, `root/runtime` for the runtime stage's file system.
 */
async function buildImage(root: string, stages: Stage[]): Promise<Image> {
  const build = stageNamed(stages, "build");
  const deps = stageNamed(stages, "deps");
  const runtime = stageNamed(stages, "runtime");
  const folders: Record<string, { dir: string; workdir: string }> = {
    build: { dir: join(root, "build"), workdir: lastArg(build, "WORKDIR") ?? "/" },
    deps: { dir: join(root, "deps"), workdir: lastArg(deps, "WORKDIR") ?? "/" },
  };

  // Build stage: the esbuild command, run from the repository (the stage copies the sources as they are).
  const esbuild = runCommand(build, ["npx", "esbuild"]);
  const externals = esbuild.filter((w) => w.startsWith("--external:")).map((w) => w.slice(11));
  const args = esbuild.map((w) =>
    w.startsWith("--outfile=") ? `--outfile=${join(folders.build?.dir as string, w.slice(10))}` : w,
  );
  // The metafile only reports what the bundle left to run time; it changes nothing in the bundle.
  const metafile = join(root, "meta.json");
  await run(join(REPO, "node_modules/.bin/esbuild"), [...args, `--metafile=${metafile}`], { cwd: REPO });
  const meta = JSON.parse(readFileSync(metafile, "utf8")) as {
    outputs: Record<string, { imports: { path: string; external?: boolean }[] }>;
  };
  const runtimeImports = [
    ...new Set(
      Object.values(meta.outputs)
        .flatMap((output) => output.imports)
        .filter((i) => i.external && !isBuiltin(i.path))
        .map((i) => i.path),
    ),
  ];

  // Deps stage: what it copies from the context, then its npm ci.
  const depsDir = folders.deps?.dir as string;
  mkdirSync(depsDir, { recursive: true });
  for (const { op, args: copy } of deps.instructions) {
    if (op !== "COPY" || copy.includes("--from=")) continue;
    const words = shellWords(copy);
    for (const file of words.slice(0, -1)) cpSync(join(REPO, file), join(depsDir, file));
  }
  const npmCi = runCommand(deps, ["npm", "ci"]);
  expect(npmCi).toContain("--omit=dev");
  // --prefix: under `npm test` the environment names the repository as npm's prefix (npm_config_local_prefix).
  await run("npm", ["ci", ...npmCi, "--ignore-scripts", "--prefer-offline", "--prefix", depsDir], {
    cwd: depsDir,
    env: { ...process.env, npm_config_loglevel: "error" },
    maxBuffer: 16 * 1024 * 1024,
  });

  // Runtime stage: its COPY --from= lines, its WORKDIR, ENV and CMD.
  const runtimeDir = join(root, "runtime");
  const workdir = lastArg(runtime, "WORKDIR") ?? "/";
  const inRuntime = (path: string) => join(runtimeDir, path.startsWith("/") ? path : join(workdir, path));
  for (const { op, args: copy } of runtime.instructions) {
    if (op !== "COPY") continue;
    const words = shellWords(copy);
    const from = words.find((w) => w.startsWith("--from="))?.slice(7);
    const paths = words.filter((w) => !w.startsWith("--"));
    const source = from ? folders[from] : undefined;
    if (!source) throw new Error(`COPY into the runtime stage from an unknown stage: ${copy}`);
    const target = inRuntime(paths.at(-1) as string);
    for (const path of paths.slice(0, -1)) {
      const absolute = path.startsWith("/") ? path : join(source.workdir, path);
      // Outside the stage's WORKDIR are its base image's files (the node binary): the host's node stands in.
      if (!absolute.startsWith(`${source.workdir}/`)) continue;
      // Moved, not copied: each stage's output is used once, and node_modules is large.
      mkdirSync(dirname(target), { recursive: true });
      renameSync(join(source.dir, absolute.slice(source.workdir.length)), target);
    }
  }
  const env: Record<string, string> = {};
  for (const { op, args: line } of runtime.instructions) {
    if (op !== "ENV") continue;
    for (const word of shellWords(line)) {
      const eq = word.indexOf("=");
      if (eq > 0) env[word.slice(0, eq)] = word.slice(eq + 1);
    }
  }
  const cmd = JSON.parse(lastArg(runtime, "CMD") ?? "[]") as string[];
  return { app: inRuntime("."), cmd, env, externals, runtimeImports };
}

/** Starts the image's CMD in its WORKDIR with its ENV and `extra`; resolves with the exit code and output. */
async function start(image: Image, extra: Record<string, string> = {}) {
  const [command, ...args] = image.cmd;
  expect(command).toBe("node");
  try {
    const { stdout, stderr } = await run(process.execPath, args, {
      cwd: image.app,
      // No inherited variables: what the container gets is its ENV and the task's environment.
      env: { ...image.env, ...extra, PATH: process.env.PATH ?? "" },
      timeout: 60_000,
    });
    return { code: 0, output: `${stdout}${stderr}` };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, output: `${failed.stdout ?? ""}${failed.stderr ?? ""}` };
  }
}

describe("the worker image as worker/Dockerfile builds it", () => {
  let root: string;
  let image: Image;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "worker-image-"));
    image = await buildImage(root, parseDockerfile(readFileSync(DOCKERFILE, "utf8")));
  }, 180_000);
  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("starts and reaches its configuration check", async () => {
    const { code, output } = await start(image);
    expect(output).not.toMatch(/ERR_MODULE_NOT_FOUND|Cannot find (package|module)/);
    expect(output).toMatch(/"message":"invalid configuration"/);
    expect(output).toMatch(/FALLBACK_QUEUE_URL/);
    expect(code).toBe(2);
  });

  it("holds every package the bundle leaves external, and onnxruntime-node's CPU binary", () => {
    expect(image.externals.length).toBeGreaterThan(0);
    // The metafile misses packages reached through `require` (the OpenCV annotators, loaded only when a
    // job needs them), the Dockerfile's list any it forgot: both are resolved from the bundle.
    const requireFromBundle = createRequire(join(image.app, image.cmd[1] as string));
    for (const external of new Set([...image.externals, ...image.runtimeImports])) {
      expect(requireFromBundle.resolve(external), external).toContain(join(image.app, "node_modules"));
    }
    const ort = join(image.app, "node_modules/onnxruntime-node/bin/napi-v6", process.platform, process.arch);
    expect(existsSync(join(ort, "onnxruntime_binding.node"))).toBe(true);
  });
});
