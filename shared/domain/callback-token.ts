import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * The per-job token in our callback URL: HMAC-SHA256 of the job id under CALLBACK_SECRET. The
 * provider signs nothing, so this token is what makes a callback for job X come from whoever we gave
 * job X's URL to — and nobody can mint one for another job.
 */
export const callbackToken = (secret: string, jobId: string): string =>
  createHmac("sha256", secret).update(`modelslab-callback:${jobId}`).digest("base64url");

export function verifyCallbackToken(secret: string, jobId: string, token: string | undefined): boolean {
  if (!token) return false;
  const expected = Buffer.from(callbackToken(secret, jobId));
  const given = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** The path of every callback URL (API Gateway's syntax): its route (shared/http/callback-route.ts) serves it. */
export const CALLBACK_PATH = "/callbacks/modelslab/{jobId}";

export const callbackUrl = (callbackBaseUrl: string, secret: string, jobId: string): string =>
  `${callbackBaseUrl.replace(/\/+$/, "")}${CALLBACK_PATH.replace("{jobId}", encodeURIComponent(jobId))}?token=${callbackToken(secret, jobId)}`;
