/**
 * Copies one provider output into the outputs bucket, in one streaming pass:
 *
 *   download (the `Downloader` port: address policy, byte limit, timeout) → sha256 → sniffer → S3 upload
 *
 * The object key is `{prefix}.{ext}` where the extension comes from the sniffed type, so the first
 * bytes (at most the sniff limit, a few dozen bytes for PNG/WebP, a JPEG's metadata segments) are held
 * back until the type is known; after that bytes flow straight through, and memory does not grow with
 * the image's size.
 *
 * Idempotency: keys are deterministic (prefix + sniffed type), so copying the same result again
 * overwrites the same key with the same bytes and returns the same record. (Skipping on an existing
 * object is not possible safely: the sha256 is only known after the whole stream has passed, so it
 * cannot be compared before writing.)
 *
 * Retryable refusals (403/404/5xx, timeouts, network) are retried with backoff until
 * `limits.retryForMs` has passed; then, or at once for policy violations, oversize or non-images, the
 * copy fails with `CopyFailed`. Errors of the object store itself (S3) pass through unchanged: they
 * are infrastructure failures for the caller's own retry, not a verdict on the output.
 */
import { createHash, type Hash } from "node:crypto";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { type DownloadRefusalCode, DownloadRefused } from "../domain/downloads.ts";
import {
  DEFAULT_SNIFF_LIMIT_BYTES,
  ImageSniffer,
  NotAnImageError,
  type SniffedImage,
} from "../domain/image-sniff.ts";
import type { Job } from "../domain/job.ts";
import type { Clock, ObjectStore } from "../ports/index.ts";
import { systemClock } from "../ports/index.ts";
import type { Downloader } from "../ports/network.ts";
import type { ProviderOutput } from "../ports/provider.ts";

export interface CopiedOutput {
  key: string;
  content_type: SniffedImage["contentType"];
  bytes: number;
  sha256: string;
  width: number;
  height: number;
}

export interface CopyOutputDeps {
  store: ObjectStore;
  /**
   * The bucket `store` writes to. An output given as `s3://<this bucket>/<key>` (the self-hosted
   * worker's, already in our storage) is read back from it, under the job's own prefix only; any other
   * `s3://` URL is refused.
   */
  ownBucket?: string;
  /** Fetches outputs given as URLs; it enforces the address policy and `maxBytes` on them. */
  downloader: Downloader;
  limits: OutputLimits;
  clock?: Clock;
  /** Waits between attempts; tests may shorten it. */
  sleep?: (ms: number) => Promise<void>;
}

export interface OutputLimits {
  /** The largest output, however it comes (URL, base64, an object already in our bucket). */
  maxBytes: number;
  /** How long retryable download refusals are retried (links propagate late). */
  retryForMs: number;
}

export interface CopyOutputInput {
  source: ProviderOutput;
  /** `${tenant}/${jobId}/${index}`; the extension is added from the sniffed type. */
  keyPrefix: string;
}

export type CopyFailureCode =
  | DownloadRefusalCode
  | "NOT_AN_IMAGE"
  | "INVALID_BASE64"
  | "NOT_OUR_OBJECT"
  | "OBJECT_NOT_FOUND";

export class CopyFailed extends Error {
  constructor(
    readonly code: CopyFailureCode,
    message: string,
    readonly attempts: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "CopyFailed";
  }
}

const FIRST_RETRY_MS = 200;
const MAX_RETRY_MS = 2_000;

/** Holds chunks back until the sniffer knows the type, then lets everything through unchanged. */
class SniffGate extends Transform {
  readonly sniffed: Promise<SniffedImage>;
  private readonly sniffer: ImageSniffer;
  private held: Buffer[] = [];
  private settle!: { resolve: (image: SniffedImage) => void; reject: (error: unknown) => void };

  constructor(limitBytes: number) {
    super();
    this.sniffer = new ImageSniffer(limitBytes);
    this.sniffed = new Promise<SniffedImage>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    this.sniffed.catch(() => undefined);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.sniffer.result) {
      callback(null, chunk);
      return;
    }
    try {
      this.held.push(chunk);
      const image = this.sniffer.push(chunk);
      if (image) this.release(image);
      callback();
    } catch (error) {
      this.fail(error);
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    if (this.sniffer.result) {
      callback();
      return;
    }
    try {
      this.release(this.sniffer.end());
      callback();
    } catch (error) {
      this.fail(error);
      callback(error as Error);
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.fail(error ?? new Error("The output stream closed before its image header."));
    callback(error);
  }

  private release(image: SniffedImage): void {
    for (const chunk of this.held) this.push(chunk);
    this.held = [];
    this.settle.resolve(image);
  }

  private fail(error: unknown): void {
    this.held = [];
    this.settle.reject(error);
  }
}

class Hasher extends Transform {
  readonly hash: Hash = createHash("sha256");
  bytes = 0;
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }
}

/**
 * Streams `source` through hashing and sniffing into the store; one attempt. When the source already
 * is the object at the key it would be stored under (`storedAt`), it is only read and described.
 */
async function storeStream(
  store: ObjectStore,
  keyPrefix: string,
  source: Readable,
  storedAt: string | null = null,
): Promise<CopiedOutput> {
  const hasher = new Hasher();
  const gate = new SniffGate(DEFAULT_SNIFF_LIMIT_BYTES);
  const flowing = pipeline(source, hasher, gate);
  flowing.catch(() => undefined); // observed below; this only keeps an early rejection from going unhandled
  // Surface a failure of the flow while waiting for the type (the gate's promise covers most of them).
  const image = await Promise.race([gate.sniffed, flowing.then(() => gate.sniffed)]);
  const key = `${keyPrefix}.${image.extension}`;
  try {
    const sink = key === storedAt ? drain(gate) : store.put(key, gate, { contentType: image.contentType });
    await Promise.all([sink, flowing]);
  } catch (error) {
    source.destroy();
    gate.destroy();
    throw error;
  }
  return {
    key,
    content_type: image.contentType,
    bytes: hasher.bytes,
    sha256: hasher.hash.digest("hex"),
    width: image.width,
    height: image.height,
  };
}

async function drain(stream: Readable): Promise<void> {
  for await (const _chunk of stream) {
    // described, not stored: the bytes are already where they belong
  }
}

const S3_URL = /^s3:\/\/([^/]+)\/(.+)$/;

/** An output already in our outputs bucket (the self-hosted worker's): read back, described, moved to its canonical key if need be. */
async function describeOwnObject(
  deps: CopyOutputDeps,
  url: string,
  keyPrefix: string,
): Promise<CopiedOutput> {
  const match = S3_URL.exec(url);
  const bucket = match?.[1];
  const key = match?.[2];
  const jobFolder = keyPrefix.slice(0, keyPrefix.lastIndexOf("/") + 1);
  if (
    !deps.ownBucket ||
    bucket !== deps.ownBucket ||
    !key ||
    !jobFolder ||
    !key.startsWith(jobFolder) ||
    key.includes("..")
  ) {
    throw new CopyFailed("NOT_OUR_OBJECT", "The output is an s3:// URL outside this job's outputs.", 1);
  }
  const body = await deps.store.get(key);
  if (!body) throw new CopyFailed("OBJECT_NOT_FOUND", `The output object ${key} does not exist.`, 1);
  try {
    return await storeStream(deps.store, keyPrefix, limit(body, deps.limits.maxBytes), key);
  } catch (error) {
    body.destroy();
    throw asCopyFailed(error, 1, "our outputs bucket") ?? error;
  }
}

/** Fails the stream past `maxBytes` (the same bound as any download). */
function limit(source: Readable, maxBytes: number): Readable {
  let seen = 0;
  return source.pipe(
    new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        seen += chunk.length;
        if (seen > maxBytes) {
          callback(new CopyFailed("TOO_LARGE", `The output is larger than the ${maxBytes}-byte limit.`, 1));
          return;
        }
        callback(null, chunk);
      },
    }),
  );
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;

function decodeBase64(data: string, maxBytes: number): Buffer {
  const comma = data.startsWith("data:") ? data.indexOf(",") : -1;
  if (data.startsWith("data:") && (comma === -1 || !data.slice(0, comma).endsWith(";base64"))) {
    throw new CopyFailed("INVALID_BASE64", "The output is a data URL without base64 content.", 1);
  }
  const text = (comma === -1 ? data : data.slice(comma + 1)).replace(/\s+/g, "");
  if (Math.floor((text.length * 3) / 4) - 2 > maxBytes) {
    throw new CopyFailed("TOO_LARGE", `The output is larger than the ${maxBytes}-byte limit.`, 1);
  }
  if (text.length % 4 === 1 || !(BASE64.test(text) || BASE64URL.test(text))) {
    throw new CopyFailed("INVALID_BASE64", "The output is not valid base64.", 1);
  }
  const bytes = Buffer.from(text, BASE64.test(text) ? "base64" : "base64url");
  if (bytes.length > maxBytes) {
    throw new CopyFailed("TOO_LARGE", `The output is larger than the ${maxBytes}-byte limit.`, 1);
  }
  return bytes;
}

/** Copies one output; see the module comment for the contract. */
export async function copyOutput(deps: CopyOutputDeps, input: CopyOutputInput): Promise<CopiedOutput> {
  const { source, keyPrefix } = input;
  if (source.kind === "base64") {
    const bytes = decodeBase64(source.data, deps.limits.maxBytes);
    try {
      // Chunks of 64 KiB so the gate sniffs the head and the upload sees a normal stream.
      return await storeStream(deps.store, keyPrefix, Readable.from(chunks(bytes, 65_536)));
    } catch (error) {
      throw asCopyFailed(error, 1, "the base64 output") ?? error;
    }
  }

  if (source.url.startsWith("s3://")) return describeOwnObject(deps, source.url, keyPrefix);

  const clock = deps.clock ?? systemClock;
  const wait = deps.sleep ?? ((ms: number) => sleep(ms));
  const started = clock.now().getTime();
  const host = safeHost(source.url);
  let delay = FIRST_RETRY_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      return await deps.downloader.download(source.url, (body) => storeStream(deps.store, keyPrefix, body));
    } catch (error) {
      const elapsed = clock.now().getTime() - started;
      const retryable = error instanceof DownloadRefused && error.retryable;
      if (retryable && elapsed + delay < deps.limits.retryForMs) {
        await wait(delay);
        delay = Math.min(delay * 2, MAX_RETRY_MS);
        continue;
      }
      const failed = asCopyFailed(error, attempt, host, retryable ? elapsed : null);
      if (failed) throw failed;
      throw error;
    }
  }
}

/**
 * The folder of a job's objects in the outputs bucket, `{tenant}/{jobId}/`: its copied outputs and a
 * self-hosted worker's originals. Nothing else is written there.
 */
export function jobOutputsFolder(job: Pick<Job, "tenantId" | "id">): string {
  // A separator inside either part would make the folder another job's (or a whole tenant's).
  if (!/^[^/]+$/.test(job.tenantId) || !/^[^/]+$/.test(job.id)) {
    throw new Error(
      `No outputs folder for tenant ${JSON.stringify(job.tenantId)}, job ${JSON.stringify(job.id)}.`,
    );
  }
  return `${job.tenantId}/${job.id}/`;
}

const DISCARD_PAGE_KEYS = 100;
const DISCARD_MAX_PAGES = 10;

/**
 * Deletes everything in a job's outputs folder: what a job that did not succeed wrote (copies made
 * before it was cancelled or failed, a worker's images). Idempotent; returns how many objects went.
 * A job holds a handful of objects, so the page bound is never reached unless something else writes
 * there; then this throws rather than loop on.
 */
export async function discardJobOutputs(
  store: Pick<ObjectStore, "list" | "delete">,
  job: Pick<Job, "tenantId" | "id">,
): Promise<number> {
  const folder = jobOutputsFolder(job);
  let removed = 0;
  for (let page = 0; page < DISCARD_MAX_PAGES; page++) {
    const keys = await store.list(folder, DISCARD_PAGE_KEYS);
    if (keys.length === 0) return removed;
    await Promise.all(keys.map((key) => store.delete(key)));
    removed += keys.length;
  }
  throw new Error(
    `The outputs folder ${folder} still holds objects after deleting ${removed}; it will be tried again.`,
  );
}

function* chunks(bytes: Buffer, size: number): Generator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

function safeHost(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return "an invalid URL";
  }
}

/** Turns refusals and non-images into CopyFailed with a reason a client can read; null for other errors. */
function asCopyFailed(error: unknown, attempts: number, from: string, gaveUpAfterMs: number | null = null) {
  if (error instanceof CopyFailed) return error;
  if (error instanceof NotAnImageError) {
    return new CopyFailed(
      "NOT_AN_IMAGE",
      `The output from ${from} is not a PNG, JPEG or WebP image: ${error.message}`,
      attempts,
      {
        cause: error,
      },
    );
  }
  if (error instanceof DownloadRefused) {
    const after =
      gaveUpAfterMs === null
        ? ""
        : ` (gave up after ${attempts} attempts over ${(gaveUpAfterMs / 1000).toFixed(1)} s)`;
    return new CopyFailed(
      error.code,
      `The output could not be downloaded: ${error.message}${after}`,
      attempts,
      {
        cause: error,
      },
    );
  }
  return null;
}
