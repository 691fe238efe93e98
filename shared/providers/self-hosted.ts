/**
 * The self-hosted GPU fleet (worker/, infra/gpu-fallback.ts) as a provider module. Submitting is
 * sending the worker message to the fallback queue: accepted at once, the result comes back on the
 * results queue from the worker (`provider: "self-hosted"` and the attempt's index). There is nothing
 * to poll and no callback; a submission in doubt is simply sent again (the queue is ours, nothing is
 * billed twice). Its capacity is the fleet's: the jobs it holds at full scale.
 */
import * as z from "zod/mini";
import { unsupportedOnFleet } from "../domain/fleet-capabilities.ts";
import type { ModelCatalog } from "../domain/model-catalog.ts";
import type { Queue } from "../ports/index.ts";
import type {
  Provider,
  ProviderCapabilities,
  ProviderResult,
  ProviderSubmission,
} from "../ports/provider.ts";
import { int } from "../schemas/config-fields.ts";
import type { WorkerJobMessage } from "../schemas/messages.ts";
import { modelCatalogJson } from "../schemas/model-catalog.ts";
import type { ProviderModule } from "./module.ts";

/**
 * The fleet's model catalog (shared/domain/model-catalog.ts) as JSON: what the API checks a pinned
 * job against and lists at GET /v1/models, and what routing checks an `auto` job against. Infra sets
 * it from the CDK context `selfHostedModels` (without the S3 locations).
 */
export const selfHostedCatalogSettings = z.object({ SELF_HOSTED_MODELS: modelCatalogJson });

/** Its settings (composed into the functions' configuration through PROVIDER_SETTINGS). */
export const selfHostedSettings = z.object({
  ...selfHostedCatalogSettings.shape,
  /** The fleet's queue (the worker's WorkerJobMessage). */
  FALLBACK_QUEUE_URL: z.url(),
  /**
   * The jobs the fleet holds at once, running or queued for a task: its largest task count times the
   * backlog per task it scales on (infra sets it from gpuMaxTasks × gpuBacklogPerTask).
   */
  SELF_HOSTED_MAX_JOBS: int(1, 10_000, 8),
});

/** What it can do, known without its catalog; a built provider adds `unsupported` from the catalog. */
const capabilities = {
  fetch: false,
  callback: false,
  resubmit: true,
} as const;

/** The parameters the fleet cannot honour, as the API checks a pinned job (PROVIDER_UNSUPPORTED). */
export const fleetUnsupported = (
  request: Readonly<Record<string, unknown>>,
  settings: { SELF_HOSTED_MODELS: ModelCatalog },
) => unsupportedOnFleet(request, settings.SELF_HOSTED_MODELS);

/** Hands one attempt to the fleet through its queue. */
export class SelfHostedProvider implements Provider {
  readonly id = "self-hosted" as const;
  readonly capabilities: ProviderCapabilities;
  /** A queue send is quick; the reconciler sends an attempt left unsent after this. */
  readonly submitTimeoutSeconds = 10;

  constructor(
    private readonly queue: Queue<WorkerJobMessage>,
    catalog: ModelCatalog,
  ) {
    this.capabilities = {
      ...capabilities,
      unsupported: (request) => unsupportedOnFleet(request, catalog),
    };
  }

  /** Throws when the send fails: the attempt stays unsent and the reconciler sends it again. */
  async submit(submission: ProviderSubmission): Promise<ProviderResult> {
    const message: WorkerJobMessage = {
      jobId: submission.jobId,
      tenantId: submission.tenantId,
      attempt: submission.attempt,
      // Validated by the API at submit; the worker parses it again.
      request: submission.params as WorkerJobMessage["request"],
      // The worker writes its images beside the job's stored outputs (copy-output's `{tenant}/{jobId}`).
      outputsPrefix: `${submission.tenantId}/${submission.jobId}`,
    };
    await this.queue.send(message);
    return { kind: "accepted", providerId: null, etaSeconds: null, handle: {} };
  }
}

export const selfHostedModule = {
  id: "self-hosted",
  capabilities,
  config: selfHostedSettings,
  capacity: (settings) => settings.SELF_HOSTED_MAX_JOBS,
  // The last resort of `auto` jobs: nothing is routed around it.
  breakerKey: null,
  create: (settings, context) =>
    new SelfHostedProvider(
      context.queue("fallback", settings.FALLBACK_QUEUE_URL),
      settings.SELF_HOSTED_MODELS as ModelCatalog,
    ),
  unavailable: {
    code: "SELF_HOSTED_UNAVAILABLE",
    message: "No self-hosted GPU workers are configured for this deployment.",
  },
} satisfies ProviderModule<typeof selfHostedSettings>;
