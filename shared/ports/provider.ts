/**
 * The provider port: what a use case may ask of any provider (ModelsLab over HTTP, the self-hosted GPU
 * fleet through its queue, ...) and one typed result for every answer one can give. Provider modules
 * (shared/providers/) normalise their provider's own answers into these shapes; use cases only ever
 * branch on `kind` and on the provider's declared capabilities, never on which provider it is.
 */
import type { UnsupportedParam } from "../domain/fleet-capabilities.ts";
import type { JobError, ProviderFailureCode } from "../domain/job.ts";
import type { ProviderHandle, ProviderId } from "../domain/providers.ts";
import type { CapacityGate, CircuitBreaker, WaitingList } from "./index.ts";

export type ProviderOutput = { kind: "url"; url: string } | { kind: "base64"; data: string };

export type { ProviderHandle } from "../domain/providers.ts";

export type ProviderResult =
  /** Queued or processing at the provider; the result comes later (callback, worker, or `fetch`). */
  | {
      kind: "accepted";
      /** The provider's id of the request, when it has one (shown on the attempt; results must match it). */
      providerId: string | null;
      etaSeconds: number | null;
      handle: ProviderHandle;
    }
  /** Finished with outputs. */
  | {
      kind: "done";
      providerId: string | null;
      outputs: ProviderOutput[];
      generationTimeSeconds: number | null;
      seed: number | null;
      /** The provider's NSFW flag, where it reports one (absent otherwise). */
      nsfwContentDetected?: boolean | null;
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
      /** The job's error code if this ends it, instead of PROVIDER_REJECTED / PROVIDER_UNAVAILABLE. */
      code?: ProviderFailureCode;
    }
  /**
   * The request may or may not have been accepted (timeout or connection loss after sending).
   * Never re-post blindly: the provider would bill twice. The reconciler finds out.
   */
  | { kind: "indeterminate"; reason: string };

/** One attempt of one job, as handed to its provider. */
export interface ProviderSubmission {
  jobId: string;
  tenantId: string;
  /** The attempt's index in the job's attempts; every result of it names it. */
  attempt: number;
  /** The client's ControlNet parameters, stored inputs presigned. */
  params: Record<string, unknown>;
  /** Where the provider posts its result (`/callbacks/{provider}/{jobId}?attempt=&token=`); null for providers without callbacks. */
  callbackUrl: string | null;
}

/** An accepted request to look up again. */
export interface ProviderFetch {
  providerId: string | null;
  handle: ProviderHandle;
}

/** What a provider can do besides `submit`; use cases decide by these, never by the provider's id. */
export interface ProviderCapabilities {
  /** An accepted request can be looked up (`fetch`): the reconciler polls it when its result is overdue. */
  fetch: boolean;
  /** The provider posts results to our callback URL (`/callbacks/{provider}/{jobId}`). */
  callback: boolean;
  /**
   * A submission whose outcome is unknown may simply be sent again (nothing is billed twice: a queue
   * of our own). Otherwise only a callback or the deadline settles it.
   */
  resubmit: boolean;
  /**
   * The request parameters it cannot honour (none when absent): a job pinned to it that sets one is
   * refused at submit, and an `auto` job that sets one is never routed to it.
   */
  unsupported?: (request: Readonly<Record<string, unknown>>) => UnsupportedParam[];
}

/** Turns a callback body into (the track id it names, the normalised result). Never throws. */
export type CallbackNormalizer = (body: unknown) => { trackId: string | null; result: ProviderResult };

export interface Provider {
  readonly id: ProviderId;
  readonly capabilities: ProviderCapabilities;
  /** The longest a `submit` may take (its own deadline); an attempt left submitting is looked at after it. */
  readonly submitTimeoutSeconds: number;
  /** Starts one generation. Never throws for anything the provider does; may throw when our own plumbing fails. */
  submit(submission: ProviderSubmission): Promise<ProviderResult>;
  /** Looks an accepted request up (only with `capabilities.fetch`). Never starts a generation. */
  fetch?(request: ProviderFetch): Promise<ProviderResult>;
}

/** A provider as the use cases get it: with its capacity gate and, where it has one, its circuit breaker. */
export interface ProviderBinding {
  provider: Provider;
  /** At most the provider's capacity (its registry row's limit) of jobs hold a slot at once. */
  gate: CapacityGate;
  /** Jobs that found the gate full wait here; a release admits the next (shared/usecases/admission.ts). */
  waiting: WaitingList;
  /** Consulted before an `auto` job is sent to this provider when it could go to the fallback instead. */
  breaker?: CircuitBreaker;
}

/** How `auto` jobs are routed: the primary first; the fallback when the primary cannot take them in time. */
export interface AutoRoute {
  primary: ProviderId;
  fallback: ProviderId | null;
}

/** Every provider this deployment can use, by id, and the routing of `auto` jobs. */
export interface Providers {
  readonly auto: AutoRoute;
  /** The provider bound under `id`, or undefined when this deployment has none. */
  get(id: ProviderId): ProviderBinding | undefined;
  all(): ProviderBinding[];
  /** Why a job asking for `id` fails where this deployment has no such provider. */
  unavailable(id: ProviderId): JobError;
}
