import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * The path of every callback URL (API Gateway's syntax), declared once: its route
 * (shared/http/callback-route.ts) serves it and `callbackUrl` builds it. `{provider}` is a provider id
 * whose module takes callbacks.
 */
export const CALLBACK_PATH = "/callbacks/{provider}/{jobId}";

const CALLBACK_PATTERN = new RegExp(`^${CALLBACK_PATH.replace(/\{[a-zA-Z]+\}/g, "([^/]+)")}$`);

/**
 * The provider and job a callback path names, or null when the path is not a callback path. Segments
 * are taken as they arrive: provider ids and job ids (ULIDs) need no percent-encoding.
 */
export function parseCallbackPath(path: string): { provider: string; jobId: string } | null {
  const match = CALLBACK_PATTERN.exec(path);
  return match?.[1] && match[2] ? { provider: match[1], jobId: match[2] } : null;
}

/**
 * The per-attempt token in our callback URL: HMAC-SHA256, under CALLBACK_SECRET, of the provider, the
 * job id and the attempt's index. Providers sign nothing, so this token is what makes a callback for
 * attempt N of job X come from whoever we gave that URL to — and nobody can mint one for another
 * job, another provider or another attempt.
 */
export const callbackToken = (secret: string, provider: string, jobId: string, attempt: number): string =>
  createHmac("sha256", secret).update(`${provider}-callback:${jobId}:${attempt}`).digest("base64url");

export function verifyCallbackToken(
  secret: string,
  provider: string,
  jobId: string,
  attempt: number,
  token: string | undefined,
): boolean {
  if (!token) return false;
  const expected = Buffer.from(callbackToken(secret, provider, jobId, attempt));
  const given = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** `<base>/callbacks/<provider>/<jobId>?attempt=<n>&token=<HMAC>`. */
export function callbackUrl(
  callbackBaseUrl: string,
  secret: string,
  provider: string,
  jobId: string,
  attempt: number,
): string {
  const path = CALLBACK_PATH.replace("{provider}", encodeURIComponent(provider)).replace(
    "{jobId}",
    encodeURIComponent(jobId),
  );
  const token = callbackToken(secret, provider, jobId, attempt);
  return `${callbackBaseUrl.replace(/\/+$/, "")}${path}?attempt=${attempt}&token=${token}`;
}
