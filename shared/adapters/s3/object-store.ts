/**
 * The ObjectStore port over S3. Uploads stream through `@aws-sdk/lib-storage`'s `Upload` in 5 MiB
 * parts with a small queue, so at most `(queueSize + 1) × partSize` bytes of a body are in memory
 * whatever its size; a small body becomes one PutObject.
 */
import type { Readable } from "node:stream";
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { HttpRequest } from "@smithy/core/protocols";
import type { ObjectStore, PutObjectOptions, StoredObject } from "../../ports/index.ts";
import {
  type BoundedClientOptions,
  boundedHttpHandler,
  type Environment,
  serviceLocation,
} from "../aws-client.ts";

/** Bounded network behaviour for S3: parts are larger than DynamoDB items, so the request timeout is longer. */
export const S3_CLIENT_DEFAULTS = {
  connectionTimeoutMs: 1_000,
  requestTimeoutMs: 30_000,
  maxAttempts: 3,
} as const;

/**
 * The S3 client every S3 adapter is given; create it once per function (cold start). Region and
 * endpoint come from `env` (`serviceLocation`), credentials from the SDK's default chain, unless
 * `options` overrides them. With an endpoint override (`options.endpoint` or `AWS_ENDPOINT_URL_S3`,
 * e.g. fauxqs locally) requests use path-style addressing, which emulators need.
 */
export function createS3Client(
  options: S3ClientConfig & BoundedClientOptions = {},
  env: Environment = process.env,
): S3Client {
  const { timeouts, ...config } = options;
  const overridden = config.endpoint !== undefined || Boolean(env.AWS_ENDPOINT_URL_S3);
  return new S3Client({
    maxAttempts: S3_CLIENT_DEFAULTS.maxAttempts,
    requestHandler: boundedHttpHandler({
      connectionTimeoutMs: S3_CLIENT_DEFAULTS.connectionTimeoutMs,
      requestTimeoutMs: S3_CLIENT_DEFAULTS.requestTimeoutMs,
      ...timeouts,
    }),
    ...serviceLocation(env, "S3"),
    ...(overridden ? { forcePathStyle: true } : {}),
    ...config,
  });
}

export interface S3ObjectStoreOptions {
  /** Multipart part size; S3's minimum (and the default) is 5 MiB. */
  partSizeBytes?: number;
  /**
   * Parts uploaded concurrently; 1 by default: outputs are mostly one part (a single PutObject), and a
   * large one copied with one part in flight keeps the function's peak memory lower (one part buffered,
   * not several; test/integration/copy-output-memory.test.ts bounds it) for a slower copy of large bodies.
   */
  queueSize?: number;
}

const MIN_PART_SIZE = 5 * 1024 * 1024;

/** Drops a request's checksum headers (see `presignPut`). */
function dropChecksumHeaders(headers: Record<string, string>): void {
  for (const name of Object.keys(headers)) {
    const lower = name.toLowerCase();
    if (lower.startsWith("x-amz-checksum-") || lower === "x-amz-sdk-checksum-algorithm") delete headers[name];
  }
}

const isNotFound = (error: unknown): boolean => {
  const e = error as { name?: unknown; $metadata?: { httpStatusCode?: number } } | null;
  return e?.name === "NotFound" || e?.name === "NoSuchKey" || e?.$metadata?.httpStatusCode === 404;
};

export class S3ObjectStore implements ObjectStore {
  private readonly partSize: number;
  private readonly queueSize: number;

  constructor(
    private readonly client: S3Client,
    readonly bucket: string,
    options: S3ObjectStoreOptions = {},
  ) {
    this.partSize = Math.max(MIN_PART_SIZE, options.partSizeBytes ?? MIN_PART_SIZE);
    this.queueSize = Math.max(1, options.queueSize ?? 1);
  }

  async put(key: string, body: Readable | Uint8Array, options: PutObjectOptions): Promise<void> {
    const params = {
      Bucket: this.bucket,
      Key: key,
      ContentType: options.contentType,
      ...(options.metadata ? { Metadata: options.metadata } : {}),
    };
    if (body instanceof Uint8Array) {
      await this.client.send(new PutObjectCommand({ ...params, Body: body, ContentLength: body.byteLength }));
      return;
    }
    const upload = new Upload({
      client: this.client,
      params: { ...params, Body: body },
      partSize: this.partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    // A failing source must fail the upload (lib-storage would otherwise wait for more data).
    const failed = new Promise<never>((_, reject) => {
      body.once("error", (error) => {
        upload.abort().catch(() => undefined);
        reject(error);
      });
    });
    failed.catch(() => undefined);
    await Promise.race([upload.done(), failed]);
  }

  async head(key: string): Promise<StoredObject | null> {
    try {
      const result = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return {
        key,
        contentType: result.ContentType ?? null,
        bytes: result.ContentLength ?? 0,
        metadata: result.Metadata ?? {},
      };
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  async get(key: string): Promise<Readable | null> {
    try {
      const result = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return (result.Body as Readable | undefined) ?? null;
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  async list(prefix: string, limit: number): Promise<string[]> {
    // One page: S3 answers at most 1,000 keys a call, and callers ask for far fewer.
    const result = await this.client.send(
      new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, MaxKeys: Math.min(limit, 1_000) }),
    );
    return (result.Contents ?? [])
      .map((object) => object.Key)
      .filter((key): key is string => typeof key === "string")
      .slice(0, limit);
  }

  presignGet(key: string, expiresSeconds: number): Promise<string> {
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: key }), {
      expiresIn: expiresSeconds,
    });
  }

  /**
   * Without a request checksum. The client adds one to every PutObject (its default
   * `requestChecksumCalculation`, WHEN_SUPPORTED), here computed over the empty body of the command, and
   * the presigner moves it into the URL's query: S3 would then refuse the PUT of the real bytes, whose
   * checksum differs (the URL is signed before the bytes exist, so no checksum of them can be in it).
   * Dropped from this command only, after the checksum middleware (same step, lower priority): the
   * client's own uploads keep theirs.
   */
  presignPut(key: string, contentType: string, expiresSeconds: number): Promise<string> {
    const command = new PutObjectCommand({ Bucket: this.bucket, Key: key, ContentType: contentType });
    command.middlewareStack.add(
      (next) => (args) => {
        if (HttpRequest.isInstance(args.request)) dropChecksumHeaders(args.request.headers);
        return next(args);
      },
      { step: "build", priority: "low", name: "dropRequestChecksum" },
    );
    return getSignedUrl(this.client, command, {
      expiresIn: expiresSeconds,
      signableHeaders: new Set(["content-type"]),
    });
  }
}
