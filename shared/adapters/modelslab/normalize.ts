/**
 * Turns whatever the ModelsLab API answers (submit, fetch, callback) into the normalised
 * `ProviderResult` union. The provider's JSON is loose (see docs/provider-modelslab.md):
 * errors arrive with HTTP 200, ids are numbers, strings or "", `message` is sometimes `messege` or an
 * object of field errors, `output` is an array, "" or missing. Nothing here throws: every input,
 * however malformed, maps to a result.
 *
 * Decisions (the rules, in the order they apply):
 * 1. A body that is not JSON, or JSON that is not an object, is `rejected`; retryable when the HTTP
 *    status is unknown, 408, 429 or >= 500 (a gateway or proxy error page), otherwise not.
 * 2. The body's `status` is trusted first when it proves the provider holds the job, whatever the
 *    HTTP status: `processing` with an id is `accepted`, `success` with outputs is `done`. Calling
 *    such an answer retryable would make the caller post again and be billed twice.
 *    - `processing` without any id (none in `id`, none recoverable from the `fetch_result` URL, none
 *      known to the caller) is `indeterminate`: the provider took the job but gave us no handle to
 *      fetch it by; only the webhook (or the job's deadline) can settle it. Never re-post.
 *    - `success` without a usable output is `rejected`, not retryable ("no outputs"); so is one
 *      naming more outputs than any request asks for (MAX_SAMPLES). An output is usable when it is
 *      an http(s) URL or base64 within OUTPUT_LIMITS.
 * 3. Otherwise the HTTP status classifies: 429 (or rate-limit text, or `retry_after`) is retryable
 *    with `retryAfterSeconds`; 408 and 5xx retryable; 401/402/403 not retryable and named an account
 *    problem; any other 4xx not retryable.
 * 4. With a 2xx (or no) HTTP status: `error` is rejected, retryable only when its text says it is
 *    transient (rate limit, busy, try again...); `failed` is rejected, not retryable; a missing or
 *    unknown `status` is rejected, not retryable, with the raw body (truncated) in the reason and
 *    reported through `onUnexpected`.
 */
import { MAX_PROVIDER_ID_CHARS, MAX_SAMPLES, OUTPUT_LIMITS } from "../../domain/job.ts";
import type { ProviderOutput, ProviderResult } from "../../ports/provider.ts";

export const RAW_SNIPPET_CHARS = 500;
const MAX_REASON_CHARS = 1_000;

export interface UnexpectedResponse {
  /**
   * What was odd: "non_json", "not_object", "unknown_status", "missing_status", "unusable_output",
   * "too_many_outputs".
   */
  problem: string;
  httpStatus: number | null;
  /** The body, truncated to RAW_SNIPPET_CHARS. */
  rawBody: string;
}

export interface NormalizeOptions {
  /** The provider id the caller already knows (a fetch), used when the body carries none. */
  knownProviderId?: string | null;
  /** The HTTP `Retry-After` header, used when the body has no `retry_after`. */
  retryAfterHeader?: string | null;
  /** Called for answers worth logging with the raw body (unknown status, HTML pages...). */
  onUnexpected?: (event: UnexpectedResponse) => void;
}

type Json = Record<string, unknown>;

export function truncate(text: string, max = RAW_SNIPPET_CHARS): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} chars)`;
}

/**
 * Raw bodies end up in reasons and logs: blank out anything that looks like the API key (a `key`
 * field, should the provider ever echo it in `meta`) or a callback token in an echoed webhook URL.
 */
export function redact(text: string): string {
  return text
    .replace(/("(?:key|api_key|apiKey)"\s*:\s*)"(?:[^"\\]|\\.)*"/g, '$1"[redacted]"')
    .replace(/([?&](?:token|key|signature|sig)=)[^&"\s]*/gi, "$1[redacted]");
}

/** A raw body fit for a reason or a log line: redacted, then truncated. */
const snippet = (text: string): string => truncate(redact(text));

const isObject = (value: unknown): value is Json =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * Numeric ids become strings; "", whitespace, null, a string longer than any real id
 * (MAX_PROVIDER_ID_CHARS) and anything else become null.
 */
export function normalizeId(value: unknown): string | null {
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : null;
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "string") {
    const trimmed = value.trim();
    return trimmed === "" || trimmed.length > MAX_PROVIDER_ID_CHARS ? null : trimmed;
  }
  return null;
}

/** A finite number, or a string holding one ("12.5"); anything else is null. */
function toNumber(value: unknown): number | null {
  if (typeof value === "number") return Number.isFinite(value) ? value : null;
  if (typeof value === "string" && value.trim() !== "") {
    const n = Number(value.trim());
    return Number.isFinite(n) ? n : null;
  }
  return null;
}

/**
 * `nsfw_content_detected` (fetch answers), read leniently like the rest of the body: a boolean, its
 * string, or a list of them (true when any is); null when absent or unreadable.
 */
function nsfwFlag(value: unknown): boolean | null {
  const one = (v: unknown): boolean | null =>
    typeof v === "boolean" ? v : v === "true" ? true : v === "false" ? false : null;
  if (!Array.isArray(value)) return one(value);
  const flags = value.map(one);
  if (flags.length === 0 || flags.some((f) => f === null)) return null;
  return flags.some((f) => f === true);
}

function nonNegative(value: unknown): number | null {
  const n = toNumber(value);
  return n !== null && n >= 0 ? n : null;
}

/** An absolute http(s) URL no longer than OUTPUT_LIMITS.urlChars (the bound of what is queued and stored). */
const isHttpUrl = (value: string): boolean => {
  if (value.length > OUTPUT_LIMITS.urlChars || !/^https?:\/\//i.test(value)) return false;
  try {
    const url = new URL(value);
    return url.hostname !== "";
  } catch {
    return false;
  }
};

function urlList(value: unknown): string[] {
  if (!Array.isArray(value)) return [];
  return value
    .filter((entry): entry is string => typeof entry === "string" && isHttpUrl(entry.trim()))
    .map((s) => s.trim());
}

const DATA_URI_PREFIX = /^data:[^,]*;base64,/i;
const BASE64_BODY = /^[A-Za-z0-9+/_-]+={0,2}$/;

/**
 * One `output` entry: an http(s) URL, a data URI or bare base64 (when base64 was requested), each
 * within OUTPUT_LIMITS; anything else is unusable.
 */
function toOutput(entry: unknown): ProviderOutput | null {
  if (typeof entry !== "string") return null;
  const value = entry.trim();
  if (value === "") return null;
  if (/^https?:\/\//i.test(value)) return isHttpUrl(value) ? { kind: "url", url: value } : null;
  const data = value.replace(DATA_URI_PREFIX, "").replace(/\s+/g, "");
  return data !== "" && data.length <= OUTPUT_LIMITS.inlineChars && BASE64_BODY.test(data)
    ? { kind: "base64", data }
    : null;
}

/** Readable text from a message that may be a string, a list, or an object of field errors. */
export function flattenMessage(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === "string") return value.trim() === "" ? null : value.trim();
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) {
    const parts = value.map(flattenMessage).filter((part): part is string => part !== null);
    return parts.length > 0 ? parts.join("; ") : null;
  }
  if (isObject(value)) {
    const parts = Object.entries(value).map(([field, detail]) => {
      const text = flattenMessage(detail);
      return text === null ? field : `${field}: ${text}`;
    });
    return parts.length > 0 ? parts.join("; ") : null;
  }
  return null;
}

function messageOf(body: Json): string | null {
  return flattenMessage(body.message) ?? flattenMessage(body.messege) ?? flattenMessage(body.error);
}

function tipsOf(body: Json): string | null {
  const tips = [body.tip, body.tip_1, body.tips]
    .map(flattenMessage)
    .filter((tip): tip is string => tip !== null);
  return tips.length > 0 ? tips.join(" ") : null;
}

const RATE_LIMIT_TEXT = /rate[\s_-]*limit|too many (?:requests|attempts)|throttl/i;
const TRANSIENT_TEXT =
  /rate[\s_-]*limit|too many (?:requests|attempts)|throttl|try again|server (?:is )?busy|overloaded|temporar|unavailable|queue (?:is )?full|capacity|timed? ?out/i;
const ACCOUNT_TEXT =
  /api[\s_-]*key|unauthori[sz]ed|forbidden|credit|balance|subscription|payment|insufficient/i;

function retryAfterFrom(body: Json, header: string | null | undefined): number | null {
  const fromBody = nonNegative(body.retry_after) ?? nonNegative(body.retryAfter);
  if (fromBody !== null) return fromBody;
  if (header === null || header === undefined) return null;
  const seconds = nonNegative(header);
  if (seconds !== null) return seconds;
  const date = Date.parse(header);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

/** The id at the end of a fetch URL such as https://modelslab.com/api/v6/images/fetch/123. */
function idFromFetchUrl(url: string | null): string | null {
  if (url === null) return null;
  try {
    const segments = new URL(url).pathname.split("/").filter((s) => s !== "");
    const last = segments.at(-1);
    const beforeLast = segments.at(-2);
    return last !== undefined && beforeLast === "fetch" ? decodeURIComponent(last) : null;
  } catch {
    return null;
  }
}

const retryableHttp = (status: number | null): boolean =>
  status === null || status === 408 || status === 429 || status >= 500;

function rejected(
  reason: string,
  retryable: boolean,
  httpStatus: number | null,
  providerId: string | null = null,
  retryAfterSeconds: number | null = null,
): ProviderResult {
  return {
    kind: "rejected",
    providerId,
    retryable,
    reason: truncate(redact(reason), MAX_REASON_CHARS),
    retryAfterSeconds,
    httpStatus,
  };
}

const httpLabel = (status: number | null): string => (status === null ? "no HTTP status" : `HTTP ${status}`);

/**
 * Normalises one provider answer. `httpStatus` is null for a callback body (no HTTP status of its own).
 */
export function normalizeProviderBody(
  rawText: string,
  httpStatus: number | null,
  options: NormalizeOptions = {},
): ProviderResult {
  let parsed: unknown;
  try {
    parsed = JSON.parse(rawText);
  } catch {
    options.onUnexpected?.({ problem: "non_json", httpStatus, rawBody: snippet(rawText) });
    const text = rawText.trim() === "" ? "an empty body" : `a non-JSON body: ${snippet(rawText.trim())}`;
    return rejected(
      `Provider answered ${httpLabel(httpStatus)} with ${text}`,
      retryableHttp(httpStatus),
      httpStatus,
    );
  }
  return normalizeParsed(parsed, rawText, httpStatus, options);
}

function normalizeParsed(
  parsed: unknown,
  rawText: string,
  httpStatus: number | null,
  options: NormalizeOptions,
): ProviderResult {
  if (!isObject(parsed)) {
    options.onUnexpected?.({ problem: "not_object", httpStatus, rawBody: snippet(rawText) });
    return rejected(
      `Provider answered ${httpLabel(httpStatus)} with JSON that is not an object: ${snippet(rawText)}`,
      retryableHttp(httpStatus),
      httpStatus,
    );
  }
  const body = parsed;
  const status = typeof body.status === "string" ? body.status.trim().toLowerCase() : null;
  const fetchUrl =
    typeof body.fetch_result === "string" && isHttpUrl(body.fetch_result.trim())
      ? body.fetch_result.trim()
      : null;
  const providerId =
    normalizeId(body.id) ?? idFromFetchUrl(fetchUrl) ?? normalizeId(options.knownProviderId ?? null);
  const message = messageOf(body);
  const tips = tipsOf(body);
  const detail = [message, tips === null ? null : `(tip: ${tips})`].filter((s) => s !== null).join(" ");

  if (status === "processing") {
    if (providerId === null) {
      return {
        kind: "indeterminate",
        reason: `Provider answered "processing" (${httpLabel(httpStatus)}) without an id to fetch it by${detail ? `: ${detail}` : ""}`,
      };
    }
    // The handle is what a later fetch needs (ModelsLabProvider.fetch); `future_links` are not kept:
    // the outputs are taken from the finished result only.
    return { kind: "accepted", providerId, etaSeconds: nonNegative(body.eta), handle: { fetchUrl } };
  }

  if (status === "success") {
    const raw = Array.isArray(body.output) ? body.output : [];
    let outputs = raw.map(toOutput).filter((o): o is ProviderOutput => o !== null);
    if (outputs.length === 0) {
      outputs = urlList(body.proxy_links).map((url) => ({ kind: "url", url }));
    }
    if (outputs.length === 0) {
      return rejected(
        `Provider answered "success" (${httpLabel(httpStatus)}) with no outputs${detail ? `: ${detail}` : ""}`,
        false,
        httpStatus,
        providerId,
      );
    }
    if (outputs.length > MAX_SAMPLES) {
      // Outside the provider's contract for any request: refused whole, and never carried further
      // (a result travels on a queue and is kept in the job while stored, both bounded).
      options.onUnexpected?.({ problem: "too_many_outputs", httpStatus, rawBody: snippet(rawText) });
      return rejected(
        `Provider answered "success" (${httpLabel(httpStatus)}) with ${outputs.length} outputs; no request asks for more than ${MAX_SAMPLES}`,
        false,
        httpStatus,
        providerId,
      );
    }
    if (outputs.length < raw.length) {
      options.onUnexpected?.({ problem: "unusable_output", httpStatus, rawBody: snippet(rawText) });
    }
    const meta = isObject(body.meta) ? body.meta : {};
    const seed = toNumber(meta.seed);
    const nsfw = nsfwFlag(body.nsfw_content_detected);
    return {
      kind: "done",
      providerId,
      outputs,
      generationTimeSeconds: nonNegative(body.generationTime ?? body.generation_time),
      seed: seed !== null && Number.isSafeInteger(seed) ? seed : null,
      // Only where the provider reports it (fetch answers; callbacks carry no flag).
      ...(nsfw !== null && { nsfwContentDetected: nsfw }),
    };
  }

  // Everything below is a refusal or a failure.
  const retryAfter = retryAfterFrom(body, options.retryAfterHeader);
  const text = detail || "no message";
  const rateLimited =
    httpStatus === 429 ||
    (message !== null && RATE_LIMIT_TEXT.test(message)) ||
    (status === "error" && retryAfter !== null);
  if (rateLimited) {
    return rejected(
      `Rate limited by provider (${httpLabel(httpStatus)}): ${text}`,
      true,
      httpStatus,
      providerId,
      retryAfter,
    );
  }
  if (httpStatus !== null && (httpStatus === 408 || httpStatus >= 500)) {
    return rejected(
      `Provider error (${httpLabel(httpStatus)}): ${text}`,
      true,
      httpStatus,
      providerId,
      retryAfter,
    );
  }
  if (httpStatus === 401 || httpStatus === 402 || httpStatus === 403) {
    const what = { 401: "API key rejected", 402: "payment required", 403: "access forbidden" }[httpStatus];
    return rejected(
      `Provider account problem (HTTP ${httpStatus}, ${what}; check the API key, plan and credits): ${text}`,
      false,
      httpStatus,
      providerId,
    );
  }
  if (httpStatus !== null && httpStatus >= 300 && httpStatus < 500) {
    return rejected(
      `Provider refused the request (HTTP ${httpStatus}): ${text}`,
      false,
      httpStatus,
      providerId,
    );
  }

  if (status === "error") {
    if (message !== null && TRANSIENT_TEXT.test(message)) {
      return rejected(
        `Provider temporarily unable (${httpLabel(httpStatus)}): ${text}`,
        true,
        httpStatus,
        providerId,
        retryAfter,
      );
    }
    const account = message !== null && ACCOUNT_TEXT.test(message) ? " (account problem)" : "";
    return rejected(`Provider error${account}: ${text}`, false, httpStatus, providerId);
  }
  if (status === "failed") {
    return rejected(`Generation failed at the provider: ${text}`, false, httpStatus, providerId);
  }

  const problem = status === null ? "missing_status" : "unknown_status";
  options.onUnexpected?.({ problem, httpStatus, rawBody: snippet(rawText) });
  const what = status === null ? "no status" : `unknown status ${JSON.stringify(body.status)}`;
  return rejected(
    `Provider answered ${httpLabel(httpStatus)} with ${what}; raw body: ${snippet(rawText)}`,
    false,
    httpStatus,
    providerId,
  );
}

export interface NormalizedCallback {
  /** Our track_id echoed back (a number becomes its decimal string); null when absent. */
  trackId: string | null;
  result: ProviderResult;
}

/**
 * Normalises a webhook body (already parsed JSON, or the raw text). The body is untrusted: the caller
 * must still check that `trackId` names the job the callback URL names.
 */
export function normalizeCallback(body: unknown, options: NormalizeOptions = {}): NormalizedCallback {
  if (typeof body === "string") {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      return { trackId: null, result: normalizeProviderBody(body, null, options) };
    }
    return normalizeCallback(parsed, options);
  }
  let raw: string;
  try {
    raw = JSON.stringify(body) ?? String(body);
  } catch {
    raw = String(body);
  }
  const result = normalizeParsed(body, raw, null, options);
  let trackId: string | null = null;
  if (isObject(body)) {
    const meta = isObject(body.meta) ? body.meta : {};
    trackId = normalizeId(body.track_id) ?? normalizeId(meta.track_id);
  }
  return { trackId, result };
}
