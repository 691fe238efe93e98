/**
 * Mirrors one S3 prefix into one local folder (a model's files), incrementally: a local manifest records
 * each file's ETag and size as downloaded; a file whose listed ETag and size still match is kept, any
 * other is downloaded again, and a file the prefix no longer holds is deleted. Downloads run in
 * parallel (bounded), each to a temporary name in the target's folder that is renamed over the final
 * name only once every byte has arrived, so an interrupted sync never leaves a truncated file where a
 * model is looked for. Every GET has a timeout for its answer and for each gap between body chunks
 * (a multi-GB UNet takes minutes: a total deadline would have to be too generous to mean anything),
 * and the listed total is bounded before anything is fetched.
 *
 * The folder is meant to outlive the task (the ECS task mounts a host volume of the GPU instance): a
 * later task on the same instance downloads only what changed.
 */
import { randomBytes } from "node:crypto";
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import type { Logger } from "./pipeline/session.ts";

/** The manifest's name in the synced folder (never a key's target). */
export const SYNC_MANIFEST = ".s3-sync.json";
const PARTIAL = /^\..+\.[0-9a-f]{12}\.partial$/;

export const SYNC_DEFAULTS = {
  /** Objects downloaded at once: a few large files saturate an instance's link; more only add memory. */
  concurrency: 4,
  /** Until a GET's status and headers arrive. */
  responseTimeoutMs: 30_000,
  /** Longest gap between two body chunks of a GET. */
  idleTimeoutMs: 60_000,
  /** Total size of the prefix's objects: an SDXL export with ControlNets is ~15 GB. */
  maxBytes: 64 * 1024 ** 3,
  /** Objects under the prefix. */
  maxObjects: 10_000,
} as const;

export class ModelSyncError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ModelSyncError";
  }
}

export interface SyncOptions {
  s3: S3Client;
  bucket: string;
  /** Key prefix; "" or ending in "/". Keys below it map to paths below `dir`. */
  prefix: string;
  dir: string;
  concurrency?: number;
  responseTimeoutMs?: number;
  idleTimeoutMs?: number;
  maxBytes?: number;
  maxObjects?: number;
  signal?: AbortSignal;
  log?: Logger;
  /** Called after each file is kept or downloaded. */
  onProgress?: (progress: { done: number; total: number; bytesDownloaded: number }) => void;
}

export interface SyncResult {
  files: number;
  downloaded: number;
  kept: number;
  removed: number;
  /** Bytes downloaded by this sync. */
  bytes: number;
  /** Size of every file the folder now mirrors. */
  totalBytes: number;
}

interface ManifestEntry {
  etag: string;
  size: number;
}
interface Manifest {
  version: 1;
  bucket: string;
  prefix: string;
  files: Record<string, ManifestEntry>;
}

interface Listed {
  key: string;
  /** Path below the folder, with "/" separators. */
  path: string;
  etag: string;
  size: number;
}

export function parseS3Uri(uri: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (!m?.[1]) throw new Error(`not an s3:// URI: ${uri}`);
  const prefix = m[2] ?? "";
  return { bucket: m[1], prefix: prefix === "" || prefix.endsWith("/") ? prefix : `${prefix}/` };
}

/** `syncS3Prefix` for an `s3://bucket/prefix` URI. */
export function syncModelsFromS3(
  s3: S3Client,
  uri: string,
  dir: string,
  options: Omit<SyncOptions, "s3" | "bucket" | "prefix" | "dir"> = {},
): Promise<SyncResult> {
  return syncS3Prefix({ ...options, s3, ...parseS3Uri(uri), dir });
}

export async function syncS3Prefix(o: SyncOptions): Promise<SyncResult> {
  const root = resolve(o.dir);
  mkdirSync(root, { recursive: true });
  const idleTimeoutMs = o.idleTimeoutMs ?? SYNC_DEFAULTS.idleTimeoutMs;
  removeStalePartials(root, idleTimeoutMs * 2);

  const listed = await list(o, root);
  const totalBytes = listed.reduce((sum, f) => sum + f.size, 0);
  const maxBytes = o.maxBytes ?? SYNC_DEFAULTS.maxBytes;
  if (totalBytes > maxBytes) {
    throw new ModelSyncError(
      `s3://${o.bucket}/${o.prefix} holds ${totalBytes} bytes, over the limit of ${maxBytes}`,
    );
  }
  if (listed.length === 0) throw new ModelSyncError(`no files under s3://${o.bucket}/${o.prefix}`);

  const previous = readManifest(root);
  const manifest: Manifest = {
    version: 1,
    bucket: o.bucket,
    prefix: o.prefix,
    // Entries of an earlier source still name files this folder holds: what the prefix lacks is removed
    // below, and a file is kept only when its ETag and size match the listing, whatever the source.
    files: { ...(previous?.files ?? {}) },
  };

  // Files the prefix no longer holds.
  const wanted = new Set(listed.map((f) => f.path));
  let removed = 0;
  for (const path of Object.keys(manifest.files)) {
    if (wanted.has(path)) continue;
    rmSync(join(root, path), { force: true });
    pruneEmptyDirs(root, dirname(join(root, path)));
    delete manifest.files[path];
    removed++;
  }
  if (removed > 0) writeManifest(root, manifest);

  const todo: Listed[] = [];
  let kept = 0;
  for (const file of listed) {
    const entry = manifest.files[file.path];
    if (
      entry &&
      entry.etag === file.etag &&
      entry.size === file.size &&
      sizeOf(join(root, file.path)) === file.size
    ) {
      kept++;
    } else {
      todo.push(file);
    }
  }

  let done = kept;
  let bytes = 0;
  const progress = () => o.onProgress?.({ done, total: listed.length, bytesDownloaded: bytes });
  progress();

  // A bounded pool; the first failure stops the others (their partial files are removed).
  const abort = new AbortController();
  const onOuterAbort = () => abort.abort(o.signal?.reason);
  o.signal?.addEventListener("abort", onOuterAbort, { once: true });
  let failure: unknown = null;
  let next = 0;
  const worker = async () => {
    while (failure === null && next < todo.length) {
      const file = todo[next++] as Listed;
      try {
        await download(o, root, file, idleTimeoutMs, abort.signal);
        manifest.files[file.path] = { etag: file.etag, size: file.size };
        writeManifest(root, manifest);
        bytes += file.size;
        done++;
        progress();
      } catch (error) {
        if (failure === null) failure = error;
        abort.abort(error);
      }
    }
  };
  try {
    await Promise.all(
      Array.from({ length: Math.min(o.concurrency ?? SYNC_DEFAULTS.concurrency, todo.length) }, worker),
    );
  } finally {
    o.signal?.removeEventListener("abort", onOuterAbort);
  }
  if (failure !== null) {
    if (failure instanceof ModelSyncError) throw failure;
    throw new ModelSyncError(
      `model sync from s3://${o.bucket}/${o.prefix} failed: ${failure instanceof Error ? failure.message : String(failure)}`,
      { cause: failure },
    );
  }
  writeManifest(root, manifest);
  return { files: listed.length, downloaded: todo.length, kept, removed, bytes, totalBytes };
}

async function list(o: SyncOptions, root: string): Promise<Listed[]> {
  const maxObjects = o.maxObjects ?? SYNC_DEFAULTS.maxObjects;
  const responseTimeoutMs = o.responseTimeoutMs ?? SYNC_DEFAULTS.responseTimeoutMs;
  const out: Listed[] = [];
  let token: string | undefined;
  do {
    const page = await withTimeout(responseTimeoutMs, o.signal, (signal) =>
      o.s3.send(new ListObjectsV2Command({ Bucket: o.bucket, Prefix: o.prefix, ContinuationToken: token }), {
        abortSignal: signal,
      }),
    );
    for (const object of page.Contents ?? []) {
      const key = object.Key;
      if (!key || key.endsWith("/")) continue;
      const path = key.slice(o.prefix.length);
      const target = resolve(root, path);
      const rel = relative(root, target);
      // Never write outside the folder, over the manifest, or under a temporary file's name.
      if (rel === "" || rel.startsWith("..") || rel === SYNC_MANIFEST || PARTIAL.test(basename(rel))) {
        o.log?.("warn", "model sync: key skipped (its path is not a file below the folder)", { key });
        continue;
      }
      out.push({
        key,
        path: rel.split(sep).join("/"),
        etag: (object.ETag ?? "").replaceAll('"', ""),
        size: object.Size ?? 0,
      });
      if (out.length > maxObjects) {
        throw new ModelSyncError(`s3://${o.bucket}/${o.prefix} holds more than ${maxObjects} objects`);
      }
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

async function download(
  o: SyncOptions,
  root: string,
  file: Listed,
  idleTimeoutMs: number,
  signal: AbortSignal,
): Promise<void> {
  const target = join(root, file.path);
  mkdirSync(dirname(target), { recursive: true });
  const partial = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString("hex")}.partial`);
  const controller = new AbortController();
  const onAbort = () => controller.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  let timedOut: string | null = null;
  const arm = (ms: number, what: string) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = what;
      controller.abort(new ModelSyncError(`${file.key}: ${what}`));
    }, ms);
  };
  try {
    arm(o.responseTimeoutMs ?? SYNC_DEFAULTS.responseTimeoutMs, "no answer to GetObject in time");
    const out = await o.s3.send(
      // IfMatch: an object replaced since the listing fails here instead of being stored under the old ETag.
      new GetObjectCommand({
        Bucket: o.bucket,
        Key: file.key,
        ...(file.etag ? { IfMatch: `"${file.etag}"` } : {}),
      }),
      { abortSignal: controller.signal },
    );
    const body = out.Body as Readable | undefined;
    if (!body) throw new ModelSyncError(`${file.key}: GetObject returned no body`);
    let received = 0;
    arm(idleTimeoutMs, `no data for ${idleTimeoutMs} ms`);
    controller.signal.addEventListener("abort", () => body.destroy(controller.signal.reason as Error), {
      once: true,
    });
    body.on("data", (chunk: Buffer) => {
      received += chunk.length;
      if (received > file.size) {
        controller.abort(new ModelSyncError(`${file.key}: more than the listed ${file.size} bytes`));
        return;
      }
      arm(idleTimeoutMs, `no data for ${idleTimeoutMs} ms`);
    });
    await pipeline(body, createWriteStream(partial));
    if (received !== file.size) {
      throw new ModelSyncError(`${file.key}: received ${received} of ${file.size} bytes`);
    }
    renameSync(partial, target);
  } catch (error) {
    if (timedOut !== null) throw new ModelSyncError(`${file.key}: ${timedOut}`, { cause: error });
    const reason = controller.signal.reason;
    if (controller.signal.aborted && reason instanceof ModelSyncError) throw reason;
    throw error;
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
    rmSync(partial, { force: true });
  }
}

async function withTimeout<T>(
  ms: number,
  outer: AbortSignal | undefined,
  run: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const signal = outer ? AbortSignal.any([outer, AbortSignal.timeout(ms)]) : AbortSignal.timeout(ms);
  try {
    return await run(signal);
  } catch (error) {
    if (signal.aborted && !outer?.aborted) {
      throw new ModelSyncError(`no answer to ListObjectsV2 within ${ms} ms`, { cause: error });
    }
    throw error;
  }
}

function sizeOf(path: string): number | null {
  try {
    return statSync(path).size;
  } catch {
    return null;
  }
}

function readManifest(root: string): Manifest | null {
  try {
    const parsed = JSON.parse(readFileSync(join(root, SYNC_MANIFEST), "utf8")) as Partial<Manifest>;
    if (parsed.version !== 1 || typeof parsed.files !== "object" || parsed.files === null) return null;
    return parsed as Manifest;
  } catch {
    // No manifest (a first sync) or an unreadable one: every file is downloaded again.
    return null;
  }
}

function writeManifest(root: string, manifest: Manifest): void {
  const tmp = join(root, `${SYNC_MANIFEST}.${randomBytes(6).toString("hex")}.tmp`);
  writeFileSync(tmp, JSON.stringify(manifest));
  renameSync(tmp, join(root, SYNC_MANIFEST));
}

function pruneEmptyDirs(root: string, dir: string): void {
  let current = dir;
  while (current !== root && current.startsWith(root) && existsSync(current)) {
    if (readdirSync(current).length > 0) return;
    rmdirSync(current);
    current = dirname(current);
  }
}

/**
 * Temporary files a killed sync left behind. Only those untouched for a while: another task on the
 * same instance may be writing its own.
 */
function removeStalePartials(root: string, olderThanMs: number): void {
  const cutoff = Date.now() - olderThanMs;
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (PARTIAL.test(entry.name) && statSync(path).mtimeMs < cutoff) rmSync(path, { force: true });
    }
  };
  walk(root);
}
