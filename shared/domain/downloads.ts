/**
 * Why a download (or any connection we open to an address someone else chose) was refused. The codes
 * are stable: an output that cannot be copied fails its job with `OUTPUT_<code>` (`JOB_ERROR_CODES`),
 * and webhook deliveries record them as the reason of a failed try.
 */
export type DownloadRefusalCode =
  | "URL_NOT_ALLOWED"
  | "ADDRESS_NOT_ALLOWED"
  | "REDIRECT_NOT_ALLOWED"
  | "TOO_LARGE"
  | "TIMEOUT"
  | "HTTP_STATUS"
  | "NETWORK";

export class DownloadRefused extends Error {
  /** Whether trying again later may succeed (a link not yet propagated, a timeout, a network error). */
  readonly retryable: boolean;
  /** The HTTP status when `code` is HTTP_STATUS. */
  readonly status: number | null;

  constructor(
    readonly code: DownloadRefusalCode,
    message: string,
    options: { retryable?: boolean; status?: number; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "DownloadRefused";
    this.retryable = options.retryable ?? false;
    this.status = options.status ?? null;
  }
}

/** Finds a DownloadRefused anywhere in an error's cause chain (streams and SDKs wrap errors). */
export function findRefusal(error: unknown): DownloadRefused | null {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current; depth++) {
    if (current instanceof DownloadRefused) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return null;
}
