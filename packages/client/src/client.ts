import type { ApiOperationId } from "../../../shared/http/routes.ts";
import {
  DEFAULT_POLL_BACKOFF,
  DEFAULT_RETRY,
  type PollBackoff,
  pollDelayMs,
  type RetryPolicy,
} from "./backoff.ts";
import { ApiError, InvalidInputError, JobFailedError, WaitTimeoutError } from "./errors.ts";
import { bytesOf, contentTypeOf, DEFAULT_MAX_UPLOAD_BYTES, fileFieldsOf } from "./files.ts";
import { type CallOptions, call, expectOk, type FetchLike, sleep } from "./http.ts";
import { type Progress, progressOf } from "./progress.ts";
import type {
  ApiKey,
  ApiKeyList,
  CreateApiKeyRequest,
  FileInput,
  Job,
  JobList,
  JobOutput,
  JobRequest,
  ListJobsQuery,
  ModelList,
  NotificationList,
  RunRequest,
  Upload,
  UploadContentType,
  WebhookEvent,
  WebhookSecret,
  WebhookSettings,
  WebhookUrl,
} from "./types.ts";
import { verifyWebhook, type WebhookHeaders } from "./webhooks.ts";

export interface ClientOptions {
  /** The API's address, e.g. the local stack's `http://127.0.0.1:3000` or the deployed stage's URL. */
  baseUrl: string;
  apiKey: string;
  /** Another fetch (a proxy's, a test's); the global one by default. */
  fetch?: FetchLike;
  /** Each call's limit, the answer's body included (default 30 s). */
  timeoutMs?: number;
  /** Retries of calls that are safe to send again, answered 429/503 or unanswered; `false` never retries. */
  retry?: Partial<RetryPolicy> | false;
  /** The largest API answer read (default 8 MiB). */
  maxResponseBytes?: number;
  /** The largest local image uploaded (default 32 MiB). */
  maxUploadBytes?: number;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export interface CreateOptions extends RequestOptions {
  /**
   * The same key and body answer the first job again. When absent the client sends a random one, so
   * that it can retry the submit safely.
   */
  idempotencyKey?: string;
  /** `Prefer: wait=N`: let the API hold its answer up to N seconds for the job to finish. */
  wait?: number;
}

export interface WaitOptions extends RequestOptions {
  /** Called after each read of the job (status, queue place, attempts, elapsed). */
  onProgress?: (progress: Progress) => void;
  /** Gives up with WaitTimeoutError after this long (default: no limit but the signal's). */
  timeoutMs?: number;
  /** The waits between reads. */
  backoff?: Partial<PollBackoff>;
}

export interface RunOptions extends WaitOptions {
  idempotencyKey?: string;
  /** `Prefer: wait=N` on the submit, so that a quick job needs no poll at all. */
  preferWait?: number;
}

export interface RunResult {
  job: Job;
  outputs: JobOutput[];
}

export interface DownloadedOutput {
  bytes: Uint8Array;
  contentType: string | null;
}

/**
 * Every route the client calls, by the server's operation id (shared/http/routes.ts): the `satisfies`
 * makes a route added to the server a type error here until the client covers it, and
 * test/unit/client-operations.test.ts checks each method and path against the route table.
 */
export const OPERATIONS = {
  submitJob: { method: "POST", path: "/v1/jobs" },
  listJobs: { method: "GET", path: "/v1/jobs" },
  getJob: { method: "GET", path: "/v1/jobs/{id}" },
  cancelJob: { method: "POST", path: "/v1/jobs/{id}/cancel" },
  listJobNotifications: { method: "GET", path: "/v1/jobs/{id}/notifications" },
  replayJobNotifications: { method: "POST", path: "/v1/jobs/{id}/notifications/replay" },
  createUpload: { method: "POST", path: "/v1/uploads" },
  getWebhookSettings: { method: "GET", path: "/v1/webhook" },
  setWebhookUrl: { method: "PUT", path: "/v1/webhook" },
  rotateWebhookSecret: { method: "POST", path: "/v1/webhook/secret/rotate" },
  createApiKey: { method: "POST", path: "/v1/api-keys" },
  listApiKeys: { method: "GET", path: "/v1/api-keys" },
  revokeApiKey: { method: "DELETE", path: "/v1/api-keys/{id}" },
  listModels: { method: "GET", path: "/v1/models" },
  // The OpenAPI document is for tools, not for a client of the API.
  getOpenApiDocument: null,
} as const satisfies Record<ApiOperationId, { method: CallOptions["method"]; path: `/${string}` } | null>;

type Operation = Exclude<keyof typeof OPERATIONS, "getOpenApiDocument">;

/** The operation's path with its `{name}` segments filled in (each encoded as one segment). */
export function operationPath(operation: Operation, params: Record<string, string> = {}): string {
  return OPERATIONS[operation].path.replace(/\{([^}/]+)\}/g, (_whole, name: string) => {
    const value = params[name];
    if (value === undefined || value === "") throw new InvalidInputError(`${operation} needs its ${name}.`);
    return encodeURIComponent(value);
  });
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024;
/** The largest output image downloaded unless told otherwise. */
export const DEFAULT_MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024;
/** Time the network gets beyond a `Prefer: wait`, which the API spends before it answers. */
const PREFER_WAIT_MARGIN_MS = 10_000;

const TERMINAL: ReadonlySet<string> = new Set(["succeeded", "failed", "cancelled"]);
export const isTerminalJob = (job: Job): boolean => TERMINAL.has(job.status);

export type ControlNetClient = ReturnType<typeof createClient>;

export function createClient(options: ClientOptions) {
  if (!options.baseUrl) throw new InvalidInputError("baseUrl is required.");
  if (!options.apiKey) throw new InvalidInputError("apiKey is required.");
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  const fetchImpl: FetchLike = options.fetch ?? ((input, init) => fetch(input, init));
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const retry: RetryPolicy =
    options.retry === false ? { ...DEFAULT_RETRY, retries: 0 } : { ...DEFAULT_RETRY, ...options.retry };
  const maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  const maxUploadBytes = options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES;

  const api = async <T>(
    operation: Operation,
    init: {
      params?: Record<string, string>;
      search?: URLSearchParams;
      body?: unknown;
      headers?: Record<string, string>;
      idempotent?: boolean;
      timeoutMs?: number;
      signal?: AbortSignal | undefined;
    } = {},
  ): Promise<T> => {
    const { method } = OPERATIONS[operation];
    const headers: Record<string, string> = {
      authorization: `Bearer ${options.apiKey}`,
      accept: "application/json",
      ...init.headers,
    };
    if (init.body !== undefined) headers["content-type"] = "application/json";
    const search = init.search && init.search.size > 0 ? `?${init.search}` : "";
    const answer = await call(
      fetchImpl,
      {
        method,
        url: `${baseUrl}${operationPath(operation, init.params)}${search}`,
        headers,
        ...(init.body !== undefined && { body: JSON.stringify(init.body) }),
        idempotent: init.idempotent ?? method !== "POST",
        timeoutMs: init.timeoutMs ?? timeoutMs,
        maxBytes: maxResponseBytes,
        signal: init.signal,
      },
      retry,
    );
    return expectOk<T>(answer);
  };

  const uploads = {
    /**
     * Uploads a local image (the two steps: a presigned PUT from the API, then the bytes to it, with
     * the Content-Type read from the bytes). Put the answer's `image` (`upload:<id>`) in an image field.
     */
    async create(input: FileInput, opts: RequestOptions = {}): Promise<Upload> {
      const bytes = await bytesOf(input, maxUploadBytes);
      const contentType: UploadContentType = contentTypeOf(bytes);
      const upload = await api<Upload>("createUpload", {
        body: { content_type: contentType },
        signal: opts.signal,
        // A second presigned URL costs nothing and the first is then simply unused.
        idempotent: true,
      });
      const answer = await call(
        fetchImpl,
        {
          method: upload.method,
          url: upload.upload_url,
          headers: upload.headers,
          body: bytes,
          idempotent: true,
          timeoutMs: Math.max(timeoutMs, 60_000),
          maxBytes: 64 * 1024,
          signal: opts.signal,
        },
        retry,
      );
      if (answer.status < 200 || answer.status >= 300) {
        throw new ApiError({
          code: "UNEXPECTED_RESPONSE",
          status: answer.status,
          message: `The upload's PUT was answered ${answer.status}: ${new TextDecoder().decode(answer.bytes).slice(0, 200)}`,
        });
      }
      return upload;
    },
  };

  const jobs = {
    /** Submits a job (`POST /v1/jobs`). With `wait`, the answer may already be the finished job. */
    async create(request: JobRequest, opts: CreateOptions = {}): Promise<Job> {
      const headers: Record<string, string> = {
        "idempotency-key": opts.idempotencyKey ?? crypto.randomUUID(),
      };
      const wait = opts.wait;
      if (wait !== undefined) {
        if (!Number.isInteger(wait) || wait < 0) {
          throw new InvalidInputError(`wait is a whole number of seconds, not ${String(wait)}.`);
        }
        headers.prefer = `wait=${wait}`;
      }
      return api<Job>("submitJob", {
        body: request,
        headers,
        idempotent: true,
        signal: opts.signal,
        ...(wait !== undefined && { timeoutMs: timeoutMs + wait * 1_000 + PREFER_WAIT_MARGIN_MS }),
      });
    },

    async get(id: string, opts: RequestOptions = {}): Promise<Job> {
      return api<Job>("getJob", { params: { id }, signal: opts.signal });
    },

    /** One page of jobs, newest first; pass its `next_cursor` as `cursor` for the next. */
    async listPage(query: ListJobsQuery = {}, opts: RequestOptions = {}): Promise<JobList> {
      const params = new URLSearchParams();
      if (query.status !== undefined) params.set("status", query.status);
      if (query.limit !== undefined) params.set("limit", String(query.limit));
      if (query.cursor !== undefined) params.set("cursor", query.cursor);
      return api<JobList>("listJobs", { search: params, signal: opts.signal });
    },

    /** Every job (matching `status`), newest first, page after page as the iteration goes. */
    async *list(query: Omit<ListJobsQuery, "cursor"> = {}, opts: RequestOptions = {}): AsyncGenerator<Job> {
      let cursor: string | undefined;
      do {
        const page = await jobs.listPage({ ...query, ...(cursor !== undefined && { cursor }) }, opts);
        yield* page.jobs;
        cursor = page.next_cursor ?? undefined;
      } while (cursor !== undefined);
    },

    async cancel(id: string, opts: RequestOptions = {}): Promise<Job> {
      // Cancelling twice ends the same way (the second answers 409 JOB_ALREADY_TERMINAL): safe to retry.
      return api<Job>("cancelJob", { params: { id }, signal: opts.signal, idempotent: true });
    },

    /**
     * Reads the job until it is terminal (succeeded, failed or cancelled) and returns it, whatever the
     * outcome. Waits grow between reads (`backoff`); `signal` aborts the wait with its reason.
     */
    async wait(id: string, opts: WaitOptions = {}): Promise<Job> {
      const backoff = { ...DEFAULT_POLL_BACKOFF, ...opts.backoff };
      const started = Date.now();
      const deadline = opts.timeoutMs === undefined ? Number.POSITIVE_INFINITY : started + opts.timeoutMs;
      for (let poll = 0; ; poll++) {
        const job = await jobs.get(id, opts);
        opts.onProgress?.(progressOf(job, Date.now() - started));
        if (isTerminalJob(job)) return job;
        const left = deadline - Date.now();
        if (left <= 0) throw new WaitTimeoutError(job, opts.timeoutMs ?? 0);
        await sleep(Math.min(pollDelayMs(poll, backoff), left), opts.signal);
      }
    },

    /**
     * Uploads any local image of `request`, submits the job, waits for it and returns its outputs.
     * Throws JobFailedError (with the job) when it failed or was cancelled.
     */
    async run(request: RunRequest, opts: RunOptions = {}): Promise<RunResult> {
      const body: Record<string, unknown> = { ...request };
      for (const field of fileFieldsOf(body)) {
        body[field] = (await uploads.create(body[field] as FileInput, opts)).image;
      }
      const started = Date.now();
      const created = await jobs.create(body as JobRequest, {
        ...(opts.idempotencyKey !== undefined && { idempotencyKey: opts.idempotencyKey }),
        ...(opts.preferWait !== undefined && { wait: opts.preferWait }),
        ...(opts.signal && { signal: opts.signal }),
      });
      let job = created;
      if (isTerminalJob(created)) {
        opts.onProgress?.(progressOf(created, Date.now() - started));
      } else {
        const left =
          opts.timeoutMs === undefined ? undefined : Math.max(0, opts.timeoutMs - (Date.now() - started));
        job = await jobs.wait(created.id, { ...opts, ...(left !== undefined && { timeoutMs: left }) });
      }
      if (job.status !== "succeeded") throw new JobFailedError(job);
      return { job, outputs: job.outputs };
    },
  };

  return {
    jobs,
    uploads,

    outputs: {
      /**
       * An output image's bytes. Its URL is presigned: it is fetched without the API key, and only
       * until it expires (read the job again for fresh links).
       */
      async download(
        output: JobOutput | string,
        opts: RequestOptions & { maxBytes?: number; timeoutMs?: number } = {},
      ): Promise<DownloadedOutput> {
        const url = typeof output === "string" ? output : output.url;
        const answer = await call(
          fetchImpl,
          {
            method: "GET",
            url,
            idempotent: true,
            timeoutMs: opts.timeoutMs ?? Math.max(timeoutMs, 120_000),
            maxBytes: opts.maxBytes ?? DEFAULT_MAX_DOWNLOAD_BYTES,
            signal: opts.signal,
          },
          retry,
        );
        if (answer.status !== 200) {
          throw new ApiError({
            code: "UNEXPECTED_RESPONSE",
            status: answer.status,
            message: `The output download was answered ${answer.status} (an expired link? read the job again).`,
          });
        }
        return { bytes: answer.bytes, contentType: answer.headers.get("content-type") };
      },
    },

    notifications: {
      /** The job's notifications and every delivery try. */
      async list(jobId: string, opts: RequestOptions = {}): Promise<NotificationList> {
        return api<NotificationList>("listJobNotifications", { params: { id: jobId }, signal: opts.signal });
      },
      /** Sends the job's notifications again (same webhook-id; output links signed afresh). */
      async replay(jobId: string, opts: RequestOptions = {}): Promise<NotificationList> {
        return api<NotificationList>("replayJobNotifications", {
          params: { id: jobId },
          signal: opts.signal,
        });
      },
    },

    webhook: {
      async get(opts: RequestOptions = {}): Promise<WebhookSettings> {
        return api<WebhookSettings>("getWebhookSettings", { signal: opts.signal });
      },
      /** Sets the default notification endpoint; null removes it. */
      async setUrl(url: string | null, opts: RequestOptions = {}): Promise<WebhookUrl> {
        return api<WebhookUrl>("setWebhookUrl", { body: { url }, signal: opts.signal });
      },
      /** A new signing secret (shown only here); the previous ones keep signing for a while. */
      async rotateSecret(opts: RequestOptions = {}): Promise<WebhookSecret> {
        return api<WebhookSecret>("rotateWebhookSecret", { signal: opts.signal });
      },
    },

    webhooks: {
      /** Verifies a received notification with one or several secrets (see `verifyWebhook`). */
      verify(
        payload: string | Uint8Array,
        headers: WebhookHeaders,
        secrets: string | readonly string[],
      ): WebhookEvent {
        return verifyWebhook(payload, headers, secrets);
      },
    },

    models: {
      /** The self-hosted fleet's models and what each can do (ModelsLab takes its own model ids). */
      async list(opts: RequestOptions = {}): Promise<ModelList> {
        return api<ModelList>("listModels", { signal: opts.signal });
      },
    },

    apiKeys: {
      /** A new key, shown only in this answer. */
      async create(request: CreateApiKeyRequest = {}, opts: RequestOptions = {}): Promise<ApiKey> {
        return api<ApiKey>("createApiKey", { body: request, signal: opts.signal });
      },
      async list(opts: RequestOptions = {}): Promise<ApiKeyList> {
        return api<ApiKeyList>("listApiKeys", { signal: opts.signal });
      },
      async revoke(id: string, opts: RequestOptions = {}): Promise<void> {
        await api<undefined>("revokeApiKey", { params: { id }, signal: opts.signal });
      },
    },
  };
}
