import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

/**
 * The repository explains itself: nothing points outside it, and every link and file path the docs
 * give resolves. A clone is all a reader has.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const SELF = path.relative(ROOT, fileURLToPath(import.meta.url));
/** Folders that are not the repository's own text (dependencies, build and run outputs). */
const SKIPPED = new Set(["node_modules", ".git", "cdk.out", ".data", "coverage", ".scratch"]);

function files(extensions: readonly string[]): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(path.join(ROOT, dir))) {
      if (SKIPPED.has(name)) continue;
      const relative = path.join(dir, name);
      if (statSync(path.join(ROOT, relative)).isDirectory()) walk(relative);
      else if (extensions.some((extension) => name.endsWith(extension))) found.push(relative);
    }
  };
  walk("");
  return found.sort();
}

const read = (file: string): string => readFileSync(path.join(ROOT, file), "utf8");
const insideRepository = (absolute: string): boolean =>
  absolute === ROOT || absolute.startsWith(`${ROOT}${path.sep}`);

/**
 * The text of a .ts file that can point somewhere: its comments and its import/export specifiers.
 * String literals elsewhere are data (the hostile-input tests send traversal paths on purpose).
 */
function pointers(source: string): string[] {
  const found: string[] = [];
  const scanner = ts.createScanner(ts.ScriptTarget.Latest, false, ts.LanguageVariant.Standard, source);
  let previous: ts.SyntaxKind | undefined;
  let beforePrevious: ts.SyntaxKind | undefined;
  for (let token = scanner.scan(); token !== ts.SyntaxKind.EndOfFileToken; token = scanner.scan()) {
    if (token === ts.SyntaxKind.SingleLineCommentTrivia || token === ts.SyntaxKind.MultiLineCommentTrivia) {
      found.push(scanner.getTokenText());
      continue;
    }
    if (token === ts.SyntaxKind.WhitespaceTrivia || token === ts.SyntaxKind.NewLineTrivia) continue;
    const specifier =
      token === ts.SyntaxKind.StringLiteral &&
      (previous === ts.SyntaxKind.FromKeyword ||
        previous === ts.SyntaxKind.ImportKeyword ||
        (previous === ts.SyntaxKind.OpenParenToken && beforePrevious === ts.SyntaxKind.ImportKeyword));
    if (specifier) found.push(scanner.getTokenValue());
    beforePrevious = previous;
    previous = token;
  }
  return found;
}

/** Relative paths (`../x`, `./x`) in `text`, resolved from `file`'s folder, that land outside the repository. */
function escapes(file: string, text: string): string[] {
  const matches = text.match(/(?:\.\.?\/)+[A-Za-z0-9_.%/-]*/g) ?? [];
  return matches.filter((match) => !insideRepository(path.resolve(ROOT, path.dirname(file), match)));
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
const slug = (heading: string): string =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[`*_]/g, "")
    .replace(/[^\p{L}\p{N} -]/gu, "")
    .replace(/ /g, "-");

const anchorsOf = (markdown: string): Set<string> =>
  new Set([...markdown.matchAll(/^#{1,6}\s+(.+)$/gm)].map((match) => slug(match[1] ?? "")));

/** Markdown files a reader of the repository starts from. */
const DOCS = ["README.md", ...files([".md"]).filter((file) => file.startsWith(`docs${path.sep}`))];

/** `[text](target)` links, code spans and fenced blocks left out. */
function links(markdown: string): string[] {
  const prose = markdown.replace(/```[\s\S]*?```/g, "").replace(/`[^`\n]*`/g, "");
  return [...prose.matchAll(/\]\(([^)\s]+)\)/g)].map((match) => match[1] ?? "");
}

/** Top-level folders of the repository: a code span starting with one names a file or folder in it. */
const TOP_LEVEL = ["bench", "docs", "functions", "infra", "local", "shared", "test", "tools", "worker"];

describe("nothing points outside the repository", () => {
  const scanned = files([".ts", ".md"]).filter((file) => file !== SELF);

  it("scans the repository's own sources and docs", () => {
    expect(scanned).toContain("README.md");
    expect(scanned).toContain(path.join("shared", "domain", "job.ts"));
    expect(scanned.some((file) => file.startsWith("node_modules"))).toBe(false);
  });

  it("names no absolute path of the machine the repository was written on", () => {
    const offenders = scanned.filter((file) => read(file).includes("/work/"));
    expect(offenders).toEqual([]);
  });

  it("cites no design brief or provider notes kept beside the repository", () => {
    const offenders = scanned.filter((file) => /DESIGN\.md|shared\/reference\//.test(read(file)));
    expect(offenders).toEqual([]);
  });

  it("has no relative path in a comment, import or markdown file that leaves the repository", () => {
    const offenders = scanned.flatMap((file) => {
      const text = file.endsWith(".md") ? read(file) : pointers(read(file)).join("\n");
      return escapes(file, text).map((outside) => `${file}: ${outside}`);
    });
    expect(offenders).toEqual([]);
  });

  it("finds a path that leaves the repository (the check can fail)", () => {
    expect(escapes("README.md", "see [the brief](../shared/DESIGN.md)")).toEqual(["../shared/DESIGN.md"]);
    expect(escapes(path.join("shared", "domain", "job.ts"), 'from "../schemas/controlnet.ts"')).toEqual([]);
    expect(pointers('// see ../../x\nconst a = "../../y";\nimport b from "../z";')).toEqual([
      "// see ../../x",
      "../z",
    ]);
  });

  it("points at docs/ files that exist, wherever a source or doc names one", () => {
    const missing = scanned.flatMap((file) =>
      [...read(file).matchAll(/\bdocs\/[A-Za-z0-9_./-]*[A-Za-z0-9_]/g)]
        .map((match) => match[0])
        .filter((cited) => !existsSync(path.join(ROOT, cited)))
        .map((cited) => `${file}: ${cited}`),
    );
    expect(missing).toEqual([]);
  });
});

describe("README.md and docs/*.md", () => {
  it("covers the architecture, provider and error documents", () => {
    for (const doc of ["architecture.md", "provider-modelslab.md", "errors.md", "deploy.md"]) {
      expect(DOCS).toContain(path.join("docs", doc));
    }
  });

  it("link only to files (and headings) that exist", () => {
    const broken = DOCS.flatMap((doc) =>
      links(read(doc))
        .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target))
        .flatMap((target) => {
          const [file = "", anchor] = target.split("#");
          const resolved = file === "" ? path.join(ROOT, doc) : path.resolve(ROOT, path.dirname(doc), file);
          if (!insideRepository(resolved) || !existsSync(resolved)) return [`${doc}: ${target}`];
          if (anchor && resolved.endsWith(".md") && !anchorsOf(readFileSync(resolved, "utf8")).has(anchor)) {
            return [`${doc}: ${target} (no such heading)`];
          }
          return [];
        }),
    );
    expect(broken).toEqual([]);
  });

  it("name only repository files and folders that exist", () => {
    const missing = DOCS.flatMap((doc) =>
      [...read(doc).matchAll(/`([^`\s]+)`/g)]
        .map((match) => match[1] ?? "")
        .filter((span) => TOP_LEVEL.some((folder) => span.startsWith(`${folder}/`)))
        .filter((span) => !/[{}<>*…]/.test(span))
        .filter((span) => !existsSync(path.join(ROOT, span)))
        .map((span) => `${doc}: ${span}`),
    );
    expect(missing).toEqual([]);
  });
});
