import { verifyCallbackToken } from "../domain/callback-token.ts";
import { NotFoundError, UnauthorizedError, ValidationError } from "../domain/errors.ts";
import type { ProviderId } from "../domain/providers.ts";
import type { Clock, Queue } from "../ports/index.ts";
import type { CallbackNormalizer } from "../ports/provider.ts";
import type { ResultMessage } from "../schemas/messages.ts";

export interface ReceiveCallbackDeps {
  resultsQueue: Queue<ResultMessage>;
  clock: Clock;
  callbackSecret: string;
  /** The callback parsers of the providers that take callbacks (shared/providers/registry.ts), by id. */
  normalizers: ReadonlyMap<ProviderId, CallbackNormalizer>;
}

export interface CallbackInput {
  /** The provider the callback path names. */
  provider: string;
  jobId: string;
  /** The `attempt` query parameter: the attempt index the URL was issued for. */
  attempt: string | undefined;
  token: string | undefined;
  /** Reads and parses the body; called only once the token checks out, so strangers get nothing parsed. */
  readBody: () => unknown;
}

/** Attempt indexes as callback URLs carry them: a job has far fewer attempts than this bounds. */
const ATTEMPT_INDEX = /^\d{1,4}$/;

/**
 * A callback is a hint, not a command: a provider that takes callbacks, the token of this provider,
 * job and attempt, and a track_id that names the same job; then the normalised result goes to
 * finalize, which decides against the stored job. Answering fast matters more than anything here
 * (a provider gives up after seconds and rarely retries).
 */
export async function receiveCallback(
  deps: ReceiveCallbackDeps,
  input: CallbackInput,
): Promise<"queued" | "acknowledged"> {
  const provider = input.provider as ProviderId;
  const normalize = deps.normalizers.get(provider);
  if (!normalize) {
    throw new NotFoundError("ROUTE_NOT_FOUND", "No provider of this deployment calls back on this path.");
  }
  // An attempt that is not a small number was never in a URL we issued: its token cannot match.
  const attempt = ATTEMPT_INDEX.test(input.attempt ?? "") ? Number(input.attempt) : null;
  if (
    attempt === null ||
    !verifyCallbackToken(deps.callbackSecret, provider, input.jobId, attempt, input.token)
  ) {
    throw new UnauthorizedError("The callback token is missing or does not match this job.");
  }
  const { trackId, result } = normalize(input.readBody());
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
    provider,
    attempt,
    source: "callback",
    observedAt: deps.clock.now().toISOString(),
    result,
  };
  await deps.resultsQueue.send(message);
  return "queued";
}
