import { verifyCallbackToken } from "../domain/callback-token.ts";
import { UnauthorizedError, ValidationError } from "../domain/errors.ts";
import type { Clock, Queue } from "../ports/index.ts";
import type { ProviderResult } from "../ports/provider.ts";
import type { ResultMessage } from "../schemas/messages.ts";

export interface ReceiveCallbackDeps {
  resultsQueue: Queue<ResultMessage>;
  clock: Clock;
  callbackSecret: string;
  /** The provider's lenient parser: callback body → (track_id, normalised result). */
  normalize: (body: unknown) => { trackId: string | null; result: ProviderResult };
}

export interface CallbackInput {
  jobId: string;
  token: string | undefined;
  /** Reads and parses the body; called only once the token checks out, so strangers get nothing parsed. */
  readBody: () => unknown;
}

/**
 * A callback is a hint, not a command: check the job's token and that track_id names the same job,
 * then hand the normalised result to finalize, which decides against the stored job. Answering fast
 * matters more than anything here (the provider gives up after 30 s and rarely retries).
 */
export async function receiveCallback(
  deps: ReceiveCallbackDeps,
  input: CallbackInput,
): Promise<"queued" | "acknowledged"> {
  if (!verifyCallbackToken(deps.callbackSecret, input.jobId, input.token)) {
    throw new UnauthorizedError("The callback token is missing or does not match this job.");
  }
  const { trackId, result } = deps.normalize(input.readBody());
  if (trackId !== input.jobId) {
    throw new ValidationError(
      "track_id does not name the job in the callback URL.",
      [{ path: "track_id", message: `expected ${input.jobId}` }],
      "TRACK_ID_MISMATCH",
    );
  }
  // "processing" notifications carry nothing final; the reconciler and the final callback cover the rest.
  if (result.kind !== "done" && result.kind !== "rejected") return "acknowledged";
  const message: ResultMessage = {
    jobId: input.jobId,
    source: "callback",
    observedAt: deps.clock.now().toISOString(),
    result,
  };
  await deps.resultsQueue.send(message);
  return "queued";
}
