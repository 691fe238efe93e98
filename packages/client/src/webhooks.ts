import { WebhookVerificationError as LibraryVerificationError, Webhook } from "standardwebhooks";
import { WebhookVerificationError } from "./errors.ts";
import type { WebhookEvent } from "./types.ts";

/** Headers as a server framework gives them: a Headers object, or a record (Node's IncomingHttpHeaders). */
export type WebhookHeaders = Headers | Readonly<Record<string, string | readonly string[] | undefined>>;

const NAMES = ["webhook-id", "webhook-timestamp", "webhook-signature"] as const;

function standardHeaders(headers: WebhookHeaders): Record<(typeof NAMES)[number], string> {
  const read = (name: string): string | undefined => {
    if (headers instanceof Headers) return headers.get(name) ?? undefined;
    const key = Object.keys(headers).find((candidate) => candidate.toLowerCase() === name);
    const value = key === undefined ? undefined : headers[key];
    return typeof value === "string" ? value : value?.join(" ");
  };
  const found = {} as Record<(typeof NAMES)[number], string>;
  for (const name of NAMES) {
    const value = read(name);
    if (!value) throw new WebhookVerificationError(`The ${name} header is missing.`);
    found[name] = value;
  }
  return found;
}

/**
 * Checks a notification's signature (Standard Webhooks) and returns its body, parsed. `secrets` may
 * hold several `whsec_…` secrets: during a rotation keep the old one beside the new until the
 * deliveries signed before it have come (the service signs with every secret in force meanwhile).
 * `payload` must be the body exactly as received, before any JSON parsing.
 */
export function verifyWebhook(
  payload: string | Uint8Array,
  headers: WebhookHeaders,
  secrets: string | readonly string[],
): WebhookEvent {
  const list = typeof secrets === "string" ? [secrets] : secrets;
  if (list.length === 0) throw new WebhookVerificationError("No secret to verify the webhook with.");
  const standard = standardHeaders(headers);
  const body = typeof payload === "string" ? payload : Buffer.from(payload);
  let last: unknown;
  for (const secret of list) {
    try {
      return new Webhook(secret).verify(body, standard) as WebhookEvent;
    } catch (error) {
      if (!(error instanceof LibraryVerificationError)) {
        throw new WebhookVerificationError(`The webhook could not be verified: ${(error as Error).message}`, {
          cause: error,
        });
      }
      last = error;
    }
  }
  throw new WebhookVerificationError(
    `The webhook matches none of the ${list.length} secret(s): ${(last as Error).message}`,
    { cause: last },
  );
}
