import { stat } from "node:fs/promises";
import { type BuildOptions, build, type Metafile } from "esbuild";

/**
 * The esbuild options the house construct gives NodejsFunction (`infra/constructs/house-function.ts`,
 * `bundling`), as CDK turns them into esbuild arguments: `--bundle --platform=node --target=node22
 * --format=esm --minify --sourcemap --banner:js=... --main-fields=module,main`, no externals
 * (`bundleAwsSDK: true`, `externalModules: []`), sources content kept, run from the repository root.
 *
 * A MIRROR: the construct does not export its options yet (see the bench report's proposal). Keep it in
 * step with the construct's `bundling` block and its `ESM_REQUIRE_BANNER` until it does.
 */
export const HOUSE_ESM_REQUIRE_BANNER =
  "import { createRequire as __houseCreateRequire } from 'node:module';const require = __houseCreateRequire(import.meta.url);";

export const HOUSE_BUNDLE_OPTIONS = {
  bundle: true,
  platform: "node",
  target: "node22",
  format: "esm",
  mainFields: ["module", "main"],
  banner: { js: HOUSE_ESM_REQUIRE_BANNER },
  minify: true,
  sourcemap: true,
  external: [],
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

/** Bundles `entry` to `outfile` (`.mjs`) with the house options; `root` plays the project root. */
export async function bundleLikeHouse(entry: string, outfile: string, root: string): Promise<BundleResult> {
  const result = await build({
    ...HOUSE_BUNDLE_OPTIONS,
    entryPoints: [entry],
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
