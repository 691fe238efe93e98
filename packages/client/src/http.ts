import { parseRetryAfter, type RetryPolicy, retryDelayMs } from "./backoff.ts";
import { ApiError, apiErrorFrom, NetworkError, ResponseTooLargeError, TimeoutError } from "./errors.ts";

/**
 * The client's one way to the network: every call has a timeout that covers the answer's body too,
 * reads at most `maxBytes` of it, and is retried (a bounded number of times) only where sending it
 * again is safe: reads, and writes that carry an Idempotency-Key, answered 429 or 503, or that got no
 * answer at all.
 */

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

export interface CallOptions {
  method: "GET" | "POST" | "PUT" | "DELETE";
  url: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** Safe to send again (the same effect twice is the effect once). */
  idempotent: boolean;
  timeoutMs: number;
  maxBytes: number;
  signal?: AbortSignal | undefined;
}

export interface CallAnswer {
  status: number;
  headers: Headers;
  bytes: Uint8Array;
}

/** Headers gateways put a request's id in (API Gateway HTTP APIs: apigw-requestid). */
const REQUEST_ID_HEADERS = ["x-request-id", "apigw-requestid", "x-amzn-requestid"];

export const requestIdOf = (headers: Headers): string | null => {
  for (const name of REQUEST_ID_HEADERS) {
    const value = headers.get(name);
    if (value) return value;
  }
  return null;
};

/** Waits `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The whole body, or ResponseTooLargeError as soon as it passes `maxBytes` (the rest is not read). */
export async function readLimited(response: Response, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(response.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel().catch(() => undefined);
    throw new ResponseTooLargeError(maxBytes);
  }
  if (!response.body) return new Uint8Array(0);
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => undefined);
      throw new ResponseTooLargeError(maxBytes);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return bytes;
}

/** One try: the answer read whole within `timeoutMs`, or NetworkError / TimeoutError / the caller's abort. */
async function once(fetchImpl: FetchLike, call: CallOptions): Promise<CallAnswer> {
  const timeout = AbortSignal.timeout(call.timeoutMs);
  const signal = call.signal ? AbortSignal.any([call.signal, timeout]) : timeout;
  try {
    const response = await fetchImpl(call.url, {
      method: call.method,
      ...(call.headers && { headers: call.headers }),
      ...(call.body !== undefined && { body: call.body }),
      signal,
      redirect: "error",
    });
    const bytes = await readLimited(response, call.maxBytes);
    return { status: response.status, headers: response.headers, bytes };
  } catch (error) {
    if (call.signal?.aborted) throw call.signal.reason;
    if (timeout.aborted) {
      throw new TimeoutError(
        `${call.method} ${redact(call.url)} took longer than ${call.timeoutMs} ms.`,
        call.timeoutMs,
      );
    }
    if (error instanceof ResponseTooLargeError) throw error;
    throw new NetworkError(`${call.method} ${redact(call.url)} failed: ${describe(error)}`, { cause: error });
  }
}

/** A URL without its query (a presigned URL's signature stays out of error messages). */
const redact = (url: string): string => url.replace(/\?.*$/s, "");

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
  return `${error.message}${cause}`;
}

/**
 * The call, retried per `retry` where that is safe. Answers any status; the caller decides what is an
 * error (`expectOk`).
 */
export async function call(
  fetchImpl: FetchLike,
  options: CallOptions,
  retry: RetryPolicy,
): Promise<CallAnswer> {
  for (let attempt = 1; ; attempt++) {
    let answer: CallAnswer;
    try {
      answer = await once(fetchImpl, options);
    } catch (error) {
      const delay =
        options.idempotent && error instanceof NetworkError ? retryDelayMs(attempt, null, retry) : null;
      if (delay === null) throw error;
      await sleep(delay, options.signal);
      continue;
    }
    if (answer.status === 429 || answer.status === 503) {
      const delay = options.idempotent
        ? retryDelayMs(attempt, parseRetryAfter(answer.headers.get("retry-after")), retry)
        : null;
      if (delay !== null) {
        await sleep(delay, options.signal);
        continue;
      }
    }
    return answer;
  }
}

const decoder = new TextDecoder();

/** The body as JSON (or as text when it is not JSON). */
export function bodyOf(answer: CallAnswer): unknown {
  const text = decoder.decode(answer.bytes);
  if (text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * The answer's JSON when its status is 2xx (nothing for a 204); the ApiError it stands for otherwise.
 * A 2xx that is not a JSON object is not the API's (a wrong base URL reaching some other server).
 */
export function expectOk<T>(answer: CallAnswer): T {
  const body = bodyOf(answer);
  if (answer.status === 204) return undefined as T;
  if (answer.status >= 200 && answer.status < 300) {
    if (typeof body === "object" && body !== null) return body as T;
    throw new ApiError({
      code: "UNEXPECTED_RESPONSE",
      status: answer.status,
      message: `HTTP ${answer.status} without a JSON body: is the API's address right? ${String(body ?? "").slice(0, 200)}`,
      requestId: requestIdOf(answer.headers),
    });
  }
  const retryAfterMs = parseRetryAfter(answer.headers.get("retry-after"));
  throw apiErrorFrom(answer.status, body, {
    requestId: requestIdOf(answer.headers),
    retryAfterSeconds: retryAfterMs === null ? null : Math.ceil(retryAfterMs / 1_000),
  });
}
