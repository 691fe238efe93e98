import { stat } from "node:fs/promises";
import path from "node:path";
import { type BuildOptions, build, type Metafile } from "esbuild";
import { HOUSE_BUNDLING } from "../../infra/constructs/house-bundling.ts";

/**
 * The esbuild options the house construct gives NodejsFunction, from the same object
 * (`infra/constructs/house-bundling.ts`), as CDK turns them into esbuild arguments: `--bundle
 * --platform=node --target=node22 --format=esm --minify --sourcemap --sources-content=false
 * --banner:js=... --main-fields=module,main --alias:...`, no externals (`bundleAwsSDK: true`), run from the
 * repository root (aliases are resolved from there).
 */
export const HOUSE_BUNDLE_OPTIONS = {
  bundle: true,
  platform: "node",
  target: HOUSE_BUNDLING.target,
  format: HOUSE_BUNDLING.format,
  mainFields: [...HOUSE_BUNDLING.mainFields],
  banner: { js: HOUSE_BUNDLING.banner },
  minify: HOUSE_BUNDLING.minify,
  sourcemap: HOUSE_BUNDLING.sourceMap,
  sourcesContent: HOUSE_BUNDLING.sourcesContent,
  external: [...HOUSE_BUNDLING.external],
  alias: { ...HOUSE_BUNDLING.alias },
} as const satisfies BuildOptions;

export interface BundleResult {
  /** The `.mjs` written. */
  outfile: string;
  /** Minified bundle bytes, the source map excluded. */
  bytes: number;
  /** Bytes of the `.mjs.map` beside it. */
  mapBytes: number;
  metafile: Metafile;
}

/**
 * Bundles `entry` to `outfile` (`.mjs`) with the house options; `root` must be the repository root. The
 * entry is a file, or TypeScript source (`{ contents }`) resolved as if it were a file in `root`.
 */
export async function bundleLikeHouse(
  entry: string | { contents: string },
  outfile: string,
  root: string,
): Promise<BundleResult> {
  const result = await build({
    ...HOUSE_BUNDLE_OPTIONS,
    ...(typeof entry === "string"
      ? { entryPoints: [entry] }
      : {
          stdin: {
            contents: entry.contents,
            loader: "ts",
            resolveDir: root,
            sourcefile: path.basename(outfile),
          },
        }),
    outfile,
    absWorkingDir: root,
    metafile: true,
    logLevel: "silent",
  });
  const [bytes, mapBytes] = await Promise.all([
    stat(outfile).then((s) => s.size),
    stat(`${outfile}.map`).then((s) => s.size),
  ]);
  return { outfile, bytes, mapBytes, metafile: result.metafile };
}

/** The package an input path belongs to (`node_modules/@scope/name/...` -> `@scope/name`), else "(project)". */
export function packageOf(inputPath: string): string {
  const marker = "node_modules/";
  const at = inputPath.lastIndexOf(marker);
  if (at < 0) return "(project)";
  const parts = inputPath.slice(at + marker.length).split("/");
  return parts[0]?.startsWith("@") ? `${parts[0]}/${parts[1] ?? ""}` : (parts[0] ?? "?");
}

/** Output bytes per package, largest first (what each package contributes to the minified bundle). */
export function bytesByPackage(metafile: Metafile): Array<{ name: string; bytes: number }> {
  const totals = new Map<string, number>();
  for (const output of Object.values(metafile.outputs)) {
    for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
      const name = packageOf(input);
      totals.set(name, (totals.get(name) ?? 0) + bytesInOutput);
    }
  }
  return [...totals].map(([name, bytes]) => ({ name, bytes })).sort((a, b) => b.bytes - a.bytes);
}
