/**
 * SSRF-safe download of provider outputs: the `Downloader` port over HTTP.
 *
 * A callback body is untrusted, so the URLs in it are too. A download is allowed only when:
 * - the URL passes the address policy's `checkUrl` (`shared/domain/address-policy.ts`): an
 *   allow-listed host, no credentials, https on the default port (aws mode) or http/https on any
 *   port (local mode);
 * - every address the host resolves to is allowed, checked at connection time by the guarded
 *   connector (`guarded-connection.ts`);
 * - redirects (followed by hand, at most `MAX_REDIRECTS`) stay on the same host and pass the same checks;
 * - the body stays under `maxBytes` (Content-Length and counted bytes) and the whole exchange under
 *   `timeoutMs`.
 * Every refusal is a `DownloadRefused` (`shared/domain/downloads.ts`) with a stable code and a
 * `retryable` flag.
 */
import type { IncomingHttpHeaders } from "node:http";
import { type Readable, Transform, type TransformCallback } from "node:stream";
import { type AddressPolicy, checkUrl, urlHost } from "../../domain/address-policy.ts";
import { DownloadRefused, findRefusal } from "../../domain/downloads.ts";
import type { Downloader } from "../../ports/network.ts";
import { createSafeAgent, type SafeConnectOptions } from "./guarded-connection.ts";
import { CONNECT_TIMEOUT_CODE, exchange } from "./request.ts";

export interface DownloadPolicy extends AddressPolicy {
  maxBytes: number;
  /** Limit for one download, from the request to the last body byte. */
  timeoutMs: number;
  /** How long a caller keeps retrying retryable refusals (links propagate late). */
  retryForMs: number;
}

export const MAX_REDIRECTS = 3;

export interface DownloadResponse {
  /** The URL the body came from (after same-host redirects). */
  url: URL;
  status: number;
  headers: IncomingHttpHeaders;
}

export interface SafeDownloadOptions extends SafeConnectOptions {
  /** Aborts the download from outside (in addition to the policy's timeout). */
  signal?: AbortSignal;
}

/** Counts bytes and fails with TOO_LARGE past `maxBytes`. */
export class ByteLimit extends Transform {
  bytes = 0;
  constructor(private readonly maxBytes: number) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      callback(tooLarge(this.maxBytes));
      return;
    }
    callback(null, chunk);
  }
}

const tooLarge = (maxBytes: number) =>
  new DownloadRefused("TOO_LARGE", `The output is larger than the ${maxBytes}-byte limit.`);

/** Drops a response body we will not read (a stream destroyed mid-way may still report an error). */
function discard(body: Readable): void {
  body.on("error", () => undefined);
  body.destroy();
}

const RETRYABLE_STATUSES = new Set([403, 404, 408, 425, 429]);
const isRetryableStatus = (status: number) => RETRYABLE_STATUSES.has(status) || status >= 500;

const TIMEOUT_CODES = new Set([CONNECT_TIMEOUT_CODE]);
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "ENOTFOUND",
  "ERR_STREAM_PREMATURE_CLOSE",
]);

function classify(error: unknown, host: string, timedOut: boolean, policy: DownloadPolicy): unknown {
  const refusal = findRefusal(error);
  if (refusal) return refusal;
  if (timedOut) {
    return new DownloadRefused(
      "TIMEOUT",
      `Downloading from ${host} took longer than ${policy.timeoutMs} ms.`,
      {
        retryable: true,
        cause: error,
      },
    );
  }
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && TIMEOUT_CODES.has(code)) {
    return new DownloadRefused("TIMEOUT", `Downloading from ${host} timed out (${code}).`, {
      retryable: true,
      cause: error,
    });
  }
  if (typeof code === "string" && NETWORK_CODES.has(code)) {
    return new DownloadRefused("NETWORK", `Downloading from ${host} failed (${code}).`, {
      retryable: true,
      cause: error,
    });
  }
  return error;
}

/**
 * Downloads `url` under `policy` and hands the body to `onBody` as a byte-limited stream; resolves
 * with what `onBody` resolves. Everything `onBody` does runs inside the download's timeout. Errors
 * are `DownloadRefused` for policy, size, status, timeout and network problems; errors of `onBody`
 * itself pass through unchanged.
 */
export async function safeDownload<T>(
  url: string | URL,
  policy: DownloadPolicy,
  onBody: (body: Readable, response: DownloadResponse) => Promise<T>,
  options: SafeDownloadOptions = {},
): Promise<T> {
  let current = checkUrl(url, policy);
  const originalHost = urlHost(current);
  const agents = createSafeAgent(policy, options);
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), policy.timeoutMs);
  const signal = options.signal ? AbortSignal.any([timeout.signal, options.signal]) : timeout.signal;
  try {
    for (let redirects = 0; ; redirects++) {
      const { status, headers, body } = await exchange(current, {
        method: "GET",
        agent: agents.for(current),
        signal,
        headers: { accept: "image/png, image/jpeg, image/webp;q=0.9, */*;q=0.1" },
      });
      if (status >= 300 && status < 400 && status !== 304) {
        discard(body);
        const location = headers.location;
        if (typeof location !== "string") {
          throw new DownloadRefused(
            "HTTP_STATUS",
            `HTTP ${status} from ${urlHost(current)} without a Location.`,
            {
              status,
            },
          );
        }
        if (redirects >= MAX_REDIRECTS) {
          throw new DownloadRefused("REDIRECT_NOT_ALLOWED", `More than ${MAX_REDIRECTS} redirects.`);
        }
        const next = new URL(location, current);
        if (urlHost(next) !== originalHost) {
          throw new DownloadRefused(
            "REDIRECT_NOT_ALLOWED",
            `Redirect from ${originalHost} to another host (${urlHost(next)}) is not allowed.`,
          );
        }
        try {
          current = checkUrl(next, policy);
        } catch (error) {
          const reason = error instanceof Error ? error.message : String(error);
          throw new DownloadRefused("REDIRECT_NOT_ALLOWED", `Redirect refused: ${reason}`, { cause: error });
        }
        continue;
      }
      if (status !== 200) {
        discard(body);
        throw new DownloadRefused("HTTP_STATUS", `HTTP ${status} from ${urlHost(current)}.`, {
          status,
          retryable: isRetryableStatus(status),
        });
      }
      const declared = Number(headers["content-length"]);
      if (Number.isFinite(declared) && declared > policy.maxBytes) {
        discard(body);
        throw tooLarge(policy.maxBytes);
      }
      const limited = new ByteLimit(policy.maxBytes);
      body.on("error", (error) => limited.destroy(error));
      body.pipe(limited);
      try {
        return await onBody(limited, { url: current, status, headers });
      } finally {
        discard(body);
        limited.destroy();
      }
    }
  } catch (error) {
    throw classify(error, urlHost(current), timeout.signal.aborted, policy);
  } finally {
    clearTimeout(timer);
    agents.destroy();
  }
}

/** The `Downloader` port over `safeDownload`: one policy (and, in tests, connection seams) for every download. */
export class SafeDownloader implements Downloader {
  constructor(
    private readonly policy: DownloadPolicy,
    private readonly options: SafeDownloadOptions = {},
  ) {}

  download<T>(url: string, onBody: (body: Readable) => Promise<T>): Promise<T> {
    return safeDownload(url, this.policy, (body) => onBody(body), this.options);
  }
}
