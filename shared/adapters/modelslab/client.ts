/**
 * The ModelsLab ControlNet API over HTTP (`node:http`/`node:https`, kept-alive connections; see
 * `../http/request.ts` for why not undici), behind the `Provider` port.
 *
 * - Never throws for anything the provider or the network does: every outcome is a ProviderResult.
 * - The API key only ever goes to the configured base URL's origin: a `fetch_result` URL on any other
 *   origin is ignored and the canonical fetch route on the base URL is used instead.
 * - Every call has a deadline (an overall AbortSignal, body included), a connect timeout and a response
 *   size cap.
 * - An accepted request's handle (`ProviderHandle`) is `{ fetchUrl }`: the provider's `fetch_result`.
 * - Transport failures are classified by when they happened. Failing to connect (refused, DNS, connect
 *   timeout, TLS) means nothing was sent: `rejected`, retryable. A timeout or reset after the request
 *   was sent leaves a generation POST in doubt: `indeterminate` (the caller must not post again;
 *   the reconciler finds out). A fetch is safe to repeat, so for fetch the same is `rejected`, retryable.
 * - A response over the size cap is `rejected`, not retryable: repeating the same call would get the
 *   same answer, and for a submit a retry could bill twice.
 */
import type { Agent } from "node:http";
import type { Readable } from "node:stream";
import type { ProviderFetch, ProviderResult, ProviderSubmission } from "../../ports/provider.ts";
import { CONNECT_TIMEOUT_CODE, exchange } from "../http/request.ts";
import { type NormalizeOptions, normalizeProviderBody, type UnexpectedResponse } from "./normalize.ts";

export interface ModelsLabProviderOptions {
  /** e.g. "https://modelslab.com/api" (or the simulator's url); routes are appended to it. */
  baseUrl: string;
  apiKey: string;
  /** Deadline of a generation POST; the first answer can take long. Default 90 s. */
  submitTimeoutMs?: number;
  /** Deadline of a fetch POST. Default 15 s. */
  fetchTimeoutMs?: number;
  /** Largest response body read. Default 32 MiB (base64 outputs can be big). */
  maxResponseBytes?: number;
  /** A connection was not up (TCP and TLS) within this: nothing was sent. Default 10 s (or the deadline). */
  connectTimeoutMs?: number;
  /** The `http.Agent` that pools connections; Node's global agent of the base URL's scheme by default. */
  agent?: Agent;
  /** Submit route under the base URL. Default "/v5/controlnet" ("/v6/images/controlnet" also works). */
  submitPath?: string;
  /** Hook for answers worth logging with their raw body (unknown status, HTML error pages...). */
  onUnexpected?: (event: UnexpectedResponse & { operation: "submit" | "fetch" }) => void;
}

export const DEFAULT_SUBMIT_TIMEOUT_MS = 90_000;
export const DEFAULT_FETCH_TIMEOUT_MS = 15_000;
export const DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** Error codes that mean the connection was never established, so the request was never sent. */
const NOT_SENT_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EAI_FAIL",
  "EAI_NONAME",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EHOSTDOWN",
  "ENETDOWN",
  "EADDRNOTAVAIL",
  CONNECT_TIMEOUT_CODE,
  // The request could not even be built (thrown by node:http before any connection).
  "ERR_INVALID_URL",
  "ERR_INVALID_PROTOCOL",
  "ERR_INVALID_CHAR",
  "ERR_INVALID_HTTP_TOKEN",
  "CERT_HAS_EXPIRED",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** Every `code` on an error, its causes and (for AggregateError from happy eyeballs) its members. */
function errorCodes(error: unknown, depth = 0): string[] {
  if (depth > 4 || typeof error !== "object" || error === null) return [];
  const codes: string[] = [];
  const { code, cause, errors } = error as { code?: unknown; cause?: unknown; errors?: unknown };
  if (typeof code === "string") codes.push(code);
  if (cause !== undefined) codes.push(...errorCodes(cause, depth + 1));
  if (Array.isArray(errors)) for (const member of errors) codes.push(...errorCodes(member, depth + 1));
  return codes;
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const codes = errorCodes(error);
    const message = error.message || error.name;
    return codes.length > 0 ? `${message} [${[...new Set(codes)].join(", ")}]` : message;
  }
  return String(error);
}

/** True when the failure happened before any byte of the request could reach the provider. */
export function failedBeforeSending(error: unknown): boolean {
  const codes = errorCodes(error);
  return codes.length > 0 && codes.every((code) => NOT_SENT_CODES.has(code) || code.startsWith("ERR_TLS_"));
}

class ResponseTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`response body exceeds ${limit} bytes`);
  }
}

/** Stops reading a body; a destroyed stream may report an 'error' event, which must not go unhandled. */
function discard(stream: Readable): void {
  stream.on("error", () => {});
  stream.destroy();
}

const trimSlash = (url: string): string => url.replace(/\/+$/, "");

/** The ModelsLab API client; shared/providers/modelslab.ts puts it behind the provider port. */
export class ModelsLabProvider {
  private readonly baseUrl: string;
  private readonly origin: string;
  private readonly apiKey: string;
  private readonly submitTimeoutMs: number;
  private readonly fetchTimeoutMs: number;
  private readonly maxResponseBytes: number;
  private readonly connectTimeoutMs: number;
  private readonly agent: Agent | undefined;
  private readonly submitPath: string;
  private readonly onUnexpected: ModelsLabProviderOptions["onUnexpected"];

  constructor(options: ModelsLabProviderOptions) {
    const base = new URL(options.baseUrl); // throws on a bad configuration, at construction only
    if (base.protocol !== "https:" && base.protocol !== "http:") {
      throw new Error(`ModelsLab base URL must be http(s), got ${base.protocol}`);
    }
    if (options.apiKey === "") throw new Error("ModelsLab API key must not be empty");
    this.baseUrl = trimSlash(options.baseUrl);
    this.origin = base.origin;
    this.apiKey = options.apiKey;
    this.submitTimeoutMs = options.submitTimeoutMs ?? DEFAULT_SUBMIT_TIMEOUT_MS;
    this.fetchTimeoutMs = options.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
    this.maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.agent = options.agent;
    this.submitPath = `/${(options.submitPath ?? "/v5/controlnet").replace(/^\/+/, "")}`;
    this.onUnexpected = options.onUnexpected;
  }

  async submit(submission: ProviderSubmission): Promise<ProviderResult> {
    const body = {
      ...submission.params,
      key: this.apiKey,
      webhook: submission.callbackUrl,
      track_id: submission.jobId,
    };
    return this.post("submit", `${this.baseUrl}${this.submitPath}`, body, this.submitTimeoutMs, null);
  }

  async fetch({ providerId, handle }: ProviderFetch): Promise<ProviderResult> {
    if (providerId === null) {
      return {
        kind: "rejected",
        providerId: null,
        retryable: false,
        reason: "A ModelsLab request can only be fetched by its id, and this one has none.",
        retryAfterSeconds: null,
        httpStatus: null,
      };
    }
    const fetchUrl = typeof handle.fetchUrl === "string" ? handle.fetchUrl : null;
    return this.post(
      "fetch",
      this.fetchTarget(providerId, fetchUrl),
      { key: this.apiKey },
      this.fetchTimeoutMs,
      providerId,
    );
  }

  /** The provider's `fetch_result` URL when it is on our configured origin; the canonical route otherwise. */
  fetchTarget(providerId: string, fetchUrl: string | null): string {
    if (fetchUrl !== null) {
      try {
        const url = new URL(fetchUrl);
        if (url.origin === this.origin && url.username === "" && url.password === "") return url.toString();
      } catch {
        // not a URL: fall through to the canonical route
      }
    }
    return `${this.baseUrl}/v6/images/fetch/${encodeURIComponent(providerId)}`;
  }

  private async post(
    operation: "submit" | "fetch",
    url: string,
    payload: Record<string, unknown>,
    timeoutMs: number,
    knownProviderId: string | null,
  ): Promise<ProviderResult> {
    let body: string;
    try {
      body = JSON.stringify(payload);
    } catch (error) {
      return {
        kind: "rejected",
        providerId: knownProviderId,
        retryable: false,
        reason: `Request could not be encoded as JSON: ${describe(error)}`,
        retryAfterSeconds: null,
        httpStatus: null,
      };
    }

    const signal = AbortSignal.timeout(timeoutMs);
    let httpStatus: number | null = null;
    try {
      const response = await exchange(new URL(url), {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body,
        signal,
        connectTimeoutMs: Math.min(this.connectTimeoutMs, timeoutMs),
        ...(this.agent ? { agent: this.agent } : {}),
      });
      httpStatus = response.status;
      const text = await this.readCapped(response.body, response.headers["content-length"]);
      const retryAfter = response.headers["retry-after"];
      const options: NormalizeOptions = {
        knownProviderId,
        retryAfterHeader: typeof retryAfter === "string" ? retryAfter : null,
      };
      if (this.onUnexpected) {
        const hook = this.onUnexpected;
        options.onUnexpected = (event) => hook({ ...event, operation });
      }
      return normalizeProviderBody(text, httpStatus, options);
    } catch (error) {
      return this.transportFailure(operation, error, httpStatus, timeoutMs, knownProviderId, signal.aborted);
    }
  }

  private async readCapped(stream: Readable, contentLength: string | string[] | undefined): Promise<string> {
    const declared = typeof contentLength === "string" ? Number(contentLength) : Number.NaN;
    if (Number.isFinite(declared) && declared > this.maxResponseBytes) {
      discard(stream);
      throw new ResponseTooLarge(this.maxResponseBytes);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of stream) {
      const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
      size += buffer.length;
      if (size > this.maxResponseBytes) {
        discard(stream);
        throw new ResponseTooLarge(this.maxResponseBytes);
      }
      chunks.push(buffer);
    }
    return Buffer.concat(chunks).toString("utf8");
  }

  private transportFailure(
    operation: "submit" | "fetch",
    error: unknown,
    httpStatus: number | null,
    timeoutMs: number,
    knownProviderId: string | null,
    deadlinePassed: boolean,
  ): ProviderResult {
    if (error instanceof ResponseTooLarge) {
      return {
        kind: "rejected",
        providerId: knownProviderId,
        retryable: false,
        reason: `Provider ${operation} response exceeded the ${error.limit}-byte limit (HTTP ${httpStatus ?? "?"}); body discarded`,
        retryAfterSeconds: null,
        httpStatus,
      };
    }
    const detail = describe(error);
    if (failedBeforeSending(error)) {
      return {
        kind: "rejected",
        providerId: knownProviderId,
        retryable: true,
        reason: `Could not connect to the provider for ${operation}; nothing was sent: ${detail}`,
        retryAfterSeconds: null,
        httpStatus: null,
      };
    }
    // The deadline's abort surfaces as "aborted" (ECONNRESET on the body): tell it by the signal, not by text.
    const timedOut =
      deadlinePassed || /timeout|timed out/i.test(`${detail} ${(error as { name?: string })?.name ?? ""}`);
    const what = timedOut ? `no complete answer within ${timeoutMs} ms` : "the connection failed";
    if (operation === "submit") {
      return {
        kind: "indeterminate",
        reason: `Submit sent but ${what}; the provider may have accepted it (do not re-post): ${detail}`,
      };
    }
    return {
      kind: "rejected",
      providerId: knownProviderId,
      retryable: true,
      reason: `Fetch failed, ${what} (safe to repeat): ${detail}`,
      retryAfterSeconds: null,
      httpStatus,
    };
  }
}
