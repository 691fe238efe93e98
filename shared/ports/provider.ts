/**
 * The provider port: one typed result for every answer the ModelsLab API (or the self-hosted
 * worker) can give. Adapters normalise the provider's loose JSON into these shapes; use cases only
 * ever branch on `kind`.
 */
export type ProviderOutput = { kind: "url"; url: string } | { kind: "base64"; data: string };

export type ProviderResult =
  /** Queued or processing at the provider; look again later (webhook, or fetch at `fetchUrl`). */
  | {
      kind: "accepted";
      providerId: string;
      etaSeconds: number | null;
      fetchUrl: string | null;
      futureLinks: string[];
    }
  /** Finished with outputs. */
  | {
      kind: "done";
      providerId: string | null;
      outputs: ProviderOutput[];
      generationTimeSeconds: number | null;
      seed: number | null;
    }
  /**
   * Refused or failed. `retryable` says whether the same request may succeed later (429, 5xx,
   * capacity); `retryAfterSeconds` is the provider's hint when it gave one.
   */
  | {
      kind: "rejected";
      providerId: string | null;
      retryable: boolean;
      reason: string;
      retryAfterSeconds: number | null;
      httpStatus: number | null;
    }
  /**
   * The request may or may not have been accepted (timeout or connection loss after sending).
   * Never re-post blindly: the provider would bill twice. The reconciler finds out.
   */
  | { kind: "indeterminate"; reason: string };

/** What the orchestrator sends: the client's ControlNet parameters plus our webhook and track_id. */
export interface ProviderSubmission {
  params: Record<string, unknown>;
  webhook: string;
  trackId: string;
}

export interface Provider {
  submit(submission: ProviderSubmission): Promise<ProviderResult>;
  /** Polls a queued request. Never starts a generation. */
  fetch(providerId: string, fetchUrl: string | null): Promise<ProviderResult>;
}
