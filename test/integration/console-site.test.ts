import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpGateway } from "../../local/http-gateway.ts";
import { CONSOLE_PATH, REPO_ROOT } from "../../local/stack.ts";
import { staticSite } from "../../local/static-site.ts";

/** A request with the path sent exactly as written (fetch would normalize `..` and encodings away). */
function raw(
  base: string,
  path: string,
  method = "GET",
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((done, fail) => {
    const req = request({ hostname, port, path, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () =>
        done({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString("utf8"),
        }),
      );
    });
    req.setTimeout(5_000, () => req.destroy(new Error(`no answer to ${path}`)));
    req.on("error", fail);
    req.end();
  });
}

describe("the console, served beside the API", () => {
  const gateway = new HttpGateway();
  let base: string;
  let scratch: string;

  beforeAll(async () => {
    // A site folder with what must not be served, next to a secret outside it.
    scratch = mkdtempSync(join(tmpdir(), "console-site-"));
    const site = join(scratch, "site");
    mkdirSync(join(site, "sub"), { recursive: true });
    writeFileSync(join(scratch, "secret.json"), '{"secret":"outside-the-site"}');
    writeFileSync(join(site, "index.html"), "<!doctype html><title>t</title>");
    writeFileSync(join(site, "notes.txt"), "no such type here");
    writeFileSync(join(site, ".env"), "SECRET=dot-file");
    writeFileSync(join(site, "sub", "page.json"), '{"in":"sub"}');
    symlinkSync(join(scratch, "secret.json"), join(site, "link.json"));
    gateway.mountStatic(staticSite(CONSOLE_PATH, resolve(REPO_ROOT, "console")));
    gateway.mountStatic(staticSite("/scratch", site));
    base = await gateway.listen(0);
  });
  afterAll(async () => {
    await gateway.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it("redirects /console to the folder's URL, so relative links resolve", async () => {
    const answer = await raw(base, "/console");
    expect(answer.status).toBe(301);
    expect(answer.headers.location).toBe("/console/");
  });

  it("serves the page with a strict CSP, its modules and config with their content types", async () => {
    const page = await raw(base, "/console/");
    expect(page.status).toBe(200);
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(page.headers["x-content-type-options"]).toBe("nosniff");
    expect(page.headers["content-security-policy"]).toBe("frame-ancestors 'none'");
    const csp = /http-equiv="Content-Security-Policy"\s+content="([^"]+)"/.exec(page.body)?.[1] ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain("unsafe-inline");
    expect(csp).not.toContain("unsafe-eval");
    for (const [path, type] of [
      ["/console/index.html", "text/html; charset=utf-8"],
      ["/console/app.js", "text/javascript; charset=utf-8"],
      ["/console/poll.js", "text/javascript; charset=utf-8"],
      ["/console/style.css", "text/css; charset=utf-8"],
      ["/console/config.json", "application/json; charset=utf-8"],
    ] as const) {
      const answer = await raw(base, path);
      expect(answer.status, path).toBe(200);
      expect(answer.headers["content-type"], path).toBe(type);
    }
  });

  it("asks the browser to revalidate, and answers 304 while the file is unchanged", async () => {
    const first = await raw(base, "/console/app.js");
    expect(first.headers["cache-control"]).toBe("no-cache");
    const etag = String(first.headers.etag);
    expect(etag).toMatch(/^"[^"]+"$/);
    const again = await raw(base, "/console/app.js", "GET", { "if-none-match": etag });
    expect(again.status).toBe(304);
    expect(again.body).toBe("");
    const head = await raw(base, "/console/app.js", "HEAD");
    expect(head.status).toBe(200);
    expect(head.body).toBe("");
  });

  it("serves nothing outside the folder, however the path is spelled", async () => {
    for (const path of [
      "/scratch/../secret.json",
      "/scratch/%2e%2e/secret.json",
      "/scratch/..%2fsecret.json",
      "/scratch/%2e%2e%2fsecret.json",
      "/scratch/sub/..%2f..%2fsecret.json",
      "/scratch/..%5csecret.json",
      "/scratch/%2e%2e%5csecret.json",
      "/scratch/index.html%00.json",
      "/scratch//secret.json",
      "/scratch/%252e%252e/secret.json",
      "/scratch/link.json",
    ]) {
      const answer = await raw(base, path);
      expect(answer.status, path).toBe(404);
      expect(answer.body, path).not.toContain("outside-the-site");
    }
  });

  it("serves no dot-files, no listings and no file type outside its list", async () => {
    expect((await raw(base, "/scratch/.env")).status).toBe(404);
    expect((await raw(base, "/scratch/%2eenv")).status).toBe(404);
    expect((await raw(base, "/scratch/notes.txt")).status).toBe(404);
    expect((await raw(base, "/scratch/sub")).status).toBe(404);
    expect((await raw(base, "/scratch/sub/")).status).toBe(404);
    expect((await raw(base, "/scratch/%zz")).status).toBe(404);
    const nested = await raw(base, "/scratch/sub/page.json");
    expect(nested.status).toBe(200);
    expect(JSON.parse(nested.body)).toEqual({ in: "sub" });
  });

  it("refuses methods other than GET and HEAD", async () => {
    const answer = await raw(base, "/console/", "POST");
    expect(answer.status).toBe(405);
    expect(answer.headers.allow).toBe("GET, HEAD");
  });

  it("leaves paths outside its prefix to the API's routes", async () => {
    const answer = await raw(base, "/consoled/index.html");
    expect(answer.status).toBe(404);
    expect(JSON.parse(answer.body)).toEqual({ message: "Not Found" });
  });
});
