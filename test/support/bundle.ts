import { fileURLToPath } from "node:url";
import { build } from "esbuild";

/** The source files (repository-relative, node_modules included) esbuild puts in a bundle of `entry`. */
export async function bundledInputs(entry: string): Promise<string[]> {
  const result = await build({
    entryPoints: [entry],
    absWorkingDir: fileURLToPath(new URL("../../", import.meta.url)),
    bundle: true,
    platform: "node",
    format: "esm",
    write: false,
    metafile: true,
    logLevel: "silent",
  });
  return Object.keys(result.metafile.inputs);
}

/** The code of a bundle of `entry` (tree-shaken, not minified): what a function actually loads. */
export async function bundledCode(entry: string): Promise<string> {
  const result = await build({
    entryPoints: [entry],
    absWorkingDir: fileURLToPath(new URL("../../", import.meta.url)),
    bundle: true,
    platform: "node",
    format: "esm",
    write: false,
    logLevel: "silent",
  });
  return result.outputFiles.map((file) => file.text).join("\n");
}
