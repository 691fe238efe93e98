import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

/**
 * The layering of docs/architecture.md ("Ports, adapters, use cases, domain"), checked on every
 * import: the domain is rules without I/O and depends on nothing but itself (and the schemas' types);
 * ports declare interfaces over the domain; use cases reach the world only through ports. Imports are
 * read with TypeScript's own pre-processor, so `import type`, `export … from` and `import()` count too.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

function sources(dir: string): string[] {
  const found: string[] = [];
  for (const name of readdirSync(path.join(ROOT, dir))) {
    const relative = path.join(dir, name);
    if (statSync(path.join(ROOT, relative)).isDirectory()) found.push(...sources(relative));
    else if (name.endsWith(".ts")) found.push(relative);
  }
  return found.sort();
}

interface Import {
  file: string;
  /** As written. */
  specifier: string;
  /** Repository-relative path for a relative import; the specifier itself for a package or builtin. */
  target: string;
}

function imports(file: string): Import[] {
  const info = ts.preProcessFile(readFileSync(path.join(ROOT, file), "utf8"), true, true);
  return info.importedFiles.map(({ fileName: specifier }) => ({
    file,
    specifier,
    target: specifier.startsWith(".")
      ? path.relative(ROOT, path.resolve(ROOT, path.dirname(file), specifier))
      : specifier,
  }));
}

const inside = (target: string, folders: readonly string[]) =>
  folders.some((folder) => target === folder || target.startsWith(`${folder}/`));

/** Where composition, transport and infrastructure live: never below the ports. */
const OUTER = [
  "shared/adapters",
  // Provider modules build adapters; use cases get providers through the provider port.
  "shared/providers",
  "shared/lambda",
  "shared/http",
  "functions",
  "local",
  "infra",
  "worker",
  "bench",
  "tools",
];
/** Builtins and packages that reach the network, the disk or other processes. */
const IO_MODULES =
  /^(node:)?(dns|net|http|https|http2|tls|dgram|fs|child_process|cluster)(\/|$)|^@aws-sdk\/|^undici$/;

const describeImport = ({ file, specifier }: Import) => `${file} imports ${specifier}`;

describe("layering", () => {
  const domain = sources("shared/domain").flatMap(imports);
  const ports = sources("shared/ports").flatMap(imports);
  const usecases = sources("shared/usecases").flatMap(imports);

  it("reads the imports it judges", () => {
    // A parser that found nothing would pass every rule below.
    expect(usecases.map(describeImport)).toContain(
      "shared/usecases/copy-output.ts imports ../ports/network.ts",
    );
    expect(domain.map(describeImport)).toContain("shared/domain/address-policy.ts imports ./downloads.ts");
    expect(imports("functions/finalize.ts").map((entry) => entry.target)).toContain(
      "shared/lambda/wiring.ts",
    );
  });

  it("keeps the domain free of every other layer and of I/O", () => {
    const offending = domain.filter(
      (entry) =>
        inside(entry.target, [...OUTER, "shared/usecases", "shared/ports"]) || IO_MODULES.test(entry.target),
    );
    expect(offending.map(describeImport)).toEqual([]);
  });

  it("keeps ports free of use cases, adapters and I/O", () => {
    const offending = ports.filter(
      (entry) => inside(entry.target, [...OUTER, "shared/usecases"]) || IO_MODULES.test(entry.target),
    );
    expect(offending.map(describeImport)).toEqual([]);
  });

  it("lets use cases reach the world only through ports", () => {
    const offending = usecases.filter(
      (entry) => inside(entry.target, OUTER) || IO_MODULES.test(entry.target),
    );
    expect(offending.map(describeImport)).toEqual([]);
  });
});
