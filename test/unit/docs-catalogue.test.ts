import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  ConflictError,
  ERROR_CODES,
  MethodNotAllowedError,
  PayloadTooLargeError,
  StaleWriteError,
  UnauthorizedError,
  UnsupportedMediaTypeError,
  ValidationError,
} from "../../shared/domain/errors.ts";
import { JOB_ERROR_CODES } from "../../shared/domain/job.ts";
import { errorToHttp, httpStatusOf } from "../../shared/http/errors.ts";

/** docs/errors.md must list exactly the codes the code declares, with the status each answers. */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const CATALOGUE = readFileSync(path.join(ROOT, "docs/errors.md"), "utf8");

interface Row {
  code: string;
  cells: string[];
}

/** The table rows (first cell a `CODE`) of the `## <heading>` section. */
function rows(markdown: string, heading: string): Row[] {
  const sections = markdown.split(/^## /m);
  const section = sections.find((text) => text.startsWith(`${heading}\n`));
  if (!section) throw new Error(`docs/errors.md has no "## ${heading}" section`);
  return section
    .split("\n")
    .filter((line) => /^\|\s*`[A-Z0-9_]+`\s*\|/.test(line))
    .map((line) => {
      const cells = line
        .split("|")
        .slice(1, -1)
        .map((cell) => cell.trim());
      return { code: (cells[0] ?? "").replaceAll("`", ""), cells };
    });
}

const apiRows = rows(CATALOGUE, "API error codes");
const jobRows = rows(CATALOGUE, "Job error codes");

const sorted = (values: Iterable<string>) => [...values].sort();

/** Every .ts file under `dir` (relative to the repository root). */
function sources(dir: string): string[] {
  const found: string[] = [];
  const walk = (at: string) => {
    for (const name of readdirSync(at)) {
      const full = path.join(at, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (name.endsWith(".ts")) found.push(full);
    }
  };
  walk(path.join(ROOT, dir));
  return found;
}

/**
 * How many times `"literal"` occurs in the sources under shared/, but for the route table, which
 * documents the codes each route answers rather than using them (ERROR_KINDS declares them as keys).
 */
const ROUTE_TABLE = ["shared/http/routes.ts", "shared/http/callback-route.ts"].map((file) =>
  path.join(ROOT, file),
);
const sharedSources = sources("shared")
  .filter((file) => !ROUTE_TABLE.includes(file))
  .map((file) => readFileSync(file, "utf8"));
const literalCount = (literal: string): number =>
  sharedSources.reduce((count, text) => count + text.split(`"${literal}"`).length - 1, 0);

describe("docs/errors.md, API error codes", () => {
  it("lists every code of ERROR_CODES, and no other", () => {
    expect(sorted(apiRows.map((row) => row.code))).toEqual(sorted(ERROR_CODES));
  });

  it("lists each code once", () => {
    expect(apiRows.length).toBe(new Set(apiRows.map((row) => row.code)).size);
  });

  it("gives each code an HTTP status of 400-599", () => {
    const outOfRange = apiRows.filter((row) => !(Number(row.cells[1]) >= 400 && Number(row.cells[1]) < 600));
    expect(outOfRange.map((row) => row.code)).toEqual([]);
  });

  it("gives every code the status the one mapping answers for its kind", () => {
    const documented = Object.fromEntries(apiRows.map((row) => [row.code, Number(row.cells[1])]));
    expect(documented).toEqual(Object.fromEntries(ERROR_CODES.map((code) => [code, httpStatusOf(code)])));
  });

  it("has each error class take only the codes of its kind (so the status a code answers is fixed)", () => {
    // @ts-expect-error JOB_NOT_FOUND is a not_found code: a ConflictError cannot carry it.
    const wrong = new ConflictError("JOB_NOT_FOUND", "x");
    // @ts-expect-error STORE_UNAVAILABLE is an unavailable code, not an invalid_input one.
    const invalid = new ValidationError("x", [], "STORE_UNAVAILABLE");
    expect(errorToHttp(wrong).statusCode).not.toBe(httpStatusOf("JOB_NOT_FOUND"));
    expect(errorToHttp(invalid).statusCode).not.toBe(httpStatusOf("STORE_UNAVAILABLE"));
  });

  it("gives the codes with a class of their own the status the one mapping answers", () => {
    const answers: Record<string, number> = {
      VALIDATION_FAILED: errorToHttp(new ValidationError("x")).statusCode,
      UNAUTHORIZED: errorToHttp(new UnauthorizedError()).statusCode,
      METHOD_NOT_ALLOWED: errorToHttp(new MethodNotAllowedError("PUT", "/x", ["GET"])).statusCode,
      PAYLOAD_TOO_LARGE: errorToHttp(new PayloadTooLargeError(1)).statusCode,
      UNSUPPORTED_MEDIA_TYPE: errorToHttp(new UnsupportedMediaTypeError("text/plain")).statusCode,
      STALE_WRITE: errorToHttp(new StaleWriteError("x")).statusCode,
      INTERNAL: errorToHttp(new Error("x")).statusCode,
    };
    const documented = Object.fromEntries(
      apiRows.filter((row) => row.code in answers).map((row) => [row.code, Number(row.cells[1])]),
    );
    expect(documented).toEqual(answers);
  });

  it("declares only codes the code uses (each appears as a literal besides its declaration)", () => {
    const unused = ERROR_CODES.filter((code) => literalCount(code) < 1);
    expect(unused).toEqual([]);
  });
});

describe("docs/errors.md, job error codes", () => {
  it("lists every code of JOB_ERROR_CODES, and no other", () => {
    expect(sorted(jobRows.map((row) => row.code))).toEqual(sorted(JOB_ERROR_CODES));
  });

  it("lists each code once", () => {
    expect(jobRows.length).toBe(new Set(jobRows.map((row) => row.code)).size);
  });

  it("names a terminal status for each code", () => {
    for (const row of jobRows) expect(row.cells[1], row.code).toMatch(/^`(failed|cancelled)`$/);
  });

  it("declares only codes the code uses (OUTPUT_<X>: X is a refusal code of the copier)", () => {
    const unused = JOB_ERROR_CODES.filter((code) => {
      const refusal = code.startsWith("OUTPUT_") && code !== "OUTPUT_COPY_FAILED" ? code.slice(7) : null;
      return refusal === null ? literalCount(code) < 2 : literalCount(refusal) < 1;
    });
    expect(unused).toEqual([]);
  });
});
