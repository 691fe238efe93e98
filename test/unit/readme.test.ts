import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { responseSchemas } from "../../shared/schemas/api.ts";

/** README.md as a newcomer reads it: what it tells them to run, and names they will meet in answers. */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");

/** The text of the section under `## <title>`, up to the next heading of level 2. */
function section(title: string): string {
  const start = readme.indexOf(`\n## ${title}\n`);
  if (start < 0) throw new Error(`README.md has no "## ${title}" section`);
  const end = readme.indexOf("\n## ", start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
}

const keysOf = (schema: unknown): string[] =>
  Object.keys((schema as { def: { shape: Record<string, unknown> } }).def.shape);

describe("README.md", () => {
  it('shows exactly two commands under "Two commands": npm ci and npm test', () => {
    const block = /```sh\n([\s\S]*?)```/.exec(section("Two commands"))?.[1] ?? "";
    const commands = block
      .split("\n")
      .map((line) => line.replace(/#.*$/, "").trim())
      .filter(Boolean);
    expect(commands).toEqual(["npm ci", "npm test"]);
  });

  it("links nowhere outside the repository", () => {
    const prose = readme.replace(/```[\s\S]*?```/g, "").replace(/`[^`\n]*`/g, "");
    const outside = [
      ...[...prose.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1] ?? ""),
      ...[...prose.matchAll(/<([a-z][a-z0-9+.-]*:[^>\s]+)>/gi)].map((m) => m[1] ?? ""),
    ].filter((target) => /^[a-z][a-z0-9+.-]*:/i.test(target));
    expect(outside).toEqual([]);
  });

  it("links the error-code catalogue", () => {
    expect(readme).toContain("](docs/errors.md)");
  });

  it("names a notification's fields, and each try's, as GET /v1/jobs/{id}/notifications returns them", () => {
    const row = readme.split("\n").find((line) => line.startsWith("| `GET /v1/jobs/{id}/notifications` |"));
    expect(row).toBeDefined();
    const spans = new Set([...(row ?? "").matchAll(/`([^`]+)`/g)].map((m) => m[1]));
    const { notificationList } = responseSchemas();
    const notification = (
      notificationList.def.shape.notifications as unknown as { def: { element: unknown } }
    ).def.element;
    const attempt = (
      (notification as { def: { shape: { attempts: unknown } } }).def.shape.attempts as {
        def: { element: unknown };
      }
    ).def.element;
    const fields = [...keysOf(notificationList), ...keysOf(notification), ...keysOf(attempt)];
    expect(fields).toContain("duration_ms");
    expect(fields.filter((field) => !spans.has(field))).toEqual([]);
  });

  it("tells how to upload: the PUT carries the Content-Type asked for", () => {
    const upload = /curl -s -X PUT "<upload_url>" -H "Content-Type: (image\/\w+)"/.exec(readme);
    expect(upload).not.toBeNull();
    const asked = /\/v1\/uploads[^\n]*\n[^\n]*"content_type":"(image\/\w+)"/.exec(readme);
    expect(asked?.[1]).toBe(upload?.[1]);
  });
});
