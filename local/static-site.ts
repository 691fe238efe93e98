import { createHash } from "node:crypto";
import { lstat, readFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { extname, resolve, sep } from "node:path";

/** What the console folder holds; any other file type is not served. */
const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
};

/** The console's files are small; anything larger is not one of them. */
const MAX_FILE_BYTES = 1024 * 1024;

/**
 * Serves a folder of static files under a path prefix (the console at /console/), as a static host
 * would: GET and HEAD only, a fixed set of content types, no directory listings, nothing outside the
 * folder (no `..`, no encoded separators, no dot-files, no symbolic links), and validators so the
 * browser revalidates instead of running stale code: the names carry no content hash, so
 * `Cache-Control: no-cache` with an ETag.
 *
 * Answers true when the request was under the prefix (and has been answered).
 */
export function staticSite(prefix: `/${string}`, folder: string) {
  const root = resolve(folder);
  return async (req: IncomingMessage, res: ServerResponse, pathname: string): Promise<boolean> => {
    if (pathname !== prefix && !pathname.startsWith(`${prefix}/`)) return false;
    const method = (req.method ?? "GET").toUpperCase();
    if (method !== "GET" && method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" });
      res.end("Method Not Allowed\n");
      return true;
    }
    if (pathname === prefix) {
      // Relative module and style links resolve against the folder, so the folder's URL ends in /.
      res.writeHead(301, { location: `${prefix}/`, "cache-control": "no-cache" });
      res.end();
      return true;
    }
    const file = fileFor(root, pathname.slice(prefix.length + 1));
    const type = file ? CONTENT_TYPES[extname(file)] : undefined;
    const stats = file && type ? await lstat(file).catch(() => null) : null;
    if (!file || !type || !stats?.isFile() || stats.size > MAX_FILE_BYTES) {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
      res.end("Not Found\n");
      return true;
    }
    const body = await readFile(file);
    const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
    const headers: Record<string, string | number> = {
      "content-type": type,
      "cache-control": "no-cache",
      etag,
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
      // The page's own CSP is its meta tag (a static host serves that too); framing can only be refused here.
      "content-security-policy": "frame-ancestors 'none'",
      "x-frame-options": "DENY",
    };
    if (req.headers["if-none-match"] === etag) {
      res.writeHead(304, headers);
      res.end();
      return true;
    }
    res.writeHead(200, { ...headers, "content-length": body.byteLength });
    res.end(method === "HEAD" ? undefined : body);
    return true;
  };
}

/** The file a path below the prefix names, or null when it names nothing this site serves. */
function fileFor(root: string, rest: string): string | null {
  const segments = rest === "" ? ["index.html"] : rest.split("/");
  const names: string[] = [];
  for (const raw of segments) {
    let name: string;
    try {
      name = decodeURIComponent(raw);
    } catch {
      return null;
    }
    // Empty (a trailing or doubled slash), dot-files (and so . and ..), separators smuggled encoded, NUL.
    if (name === "" || name.startsWith(".") || /[/\\\0]/.test(name)) return null;
    names.push(name);
  }
  const file = resolve(root, ...names);
  return file.startsWith(`${root}${sep}`) ? file : null;
}
