/**
 * ModelsLab (docs/provider-modelslab.md) as a provider module: the HTTP client and the normaliser of
 * shared/adapters/modelslab/ behind the provider port. It takes callbacks, can be polled, and a
 * submission in doubt is never re-posted (it would be billed twice).
 */
import * as z from "zod/mini";
import { ModelsLabProvider } from "../adapters/modelslab/client.ts";
import { normalizeCallback } from "../adapters/modelslab/normalize.ts";
import type { Provider, ProviderFetch, ProviderResult, ProviderSubmission } from "../ports/provider.ts";
import { int, optionalSecret, SHARED_DEFAULTS } from "../schemas/config-fields.ts";
import type { ProviderContext, ProviderModule } from "./module.ts";

/** Its settings (composed into the functions' configuration through PROVIDER_SETTINGS). */
export const modelsLabSettings = z.object({
  MODELSLAB_BASE_URL: z._default(z.url(), SHARED_DEFAULTS.MODELSLAB_BASE_URL),
  /** The plan's concurrent generations: the capacity gate's limit. */
  MODELSLAB_MAX_CONCURRENCY: int(1, 1_000, SHARED_DEFAULTS.MODELSLAB_MAX_CONCURRENCY),
  MODELSLAB_SUBMIT_TIMEOUT_SECONDS: int(1, 600, 90),
  MODELSLAB_API_KEY: optionalSecret,
  MODELSLAB_API_KEY_SECRET_ARN: optionalSecret,
});
type ModelsLabConfig = z.infer<typeof modelsLabSettings>;

const capabilities = { fetch: true, callback: true, resubmit: false } as const;

/**
 * The client is built on first use, once its API key is read: a function that never calls ModelsLab
 * (finalize) needs no grant to the key. A key that cannot be read is a retryable rejection: nothing
 * was sent.
 */
class LazyModelsLab implements Provider {
  readonly id = "modelslab" as const;
  readonly capabilities = capabilities;
  readonly submitTimeoutSeconds: number;
  private client: Promise<ModelsLabProvider> | undefined;

  constructor(
    private readonly settings: ModelsLabConfig,
    private readonly context: ProviderContext,
  ) {
    this.submitTimeoutSeconds = settings.MODELSLAB_SUBMIT_TIMEOUT_SECONDS;
  }

  async submit(submission: ProviderSubmission): Promise<ProviderResult> {
    const client = await this.build();
    return client instanceof ModelsLabProvider ? client.submit(submission) : client;
  }

  async fetch(request: ProviderFetch): Promise<ProviderResult> {
    const client = await this.build();
    return client instanceof ModelsLabProvider ? client.fetch(request) : client;
  }

  private async build(): Promise<ModelsLabProvider | ProviderResult> {
    this.client ??= this.context
      .secret(this.settings, "MODELSLAB_API_KEY", "MODELSLAB_API_KEY_SECRET_ARN")
      .then(
        (apiKey) =>
          new ModelsLabProvider({
            baseUrl: this.settings.MODELSLAB_BASE_URL,
            apiKey,
            submitTimeoutMs: this.settings.MODELSLAB_SUBMIT_TIMEOUT_SECONDS * 1000,
            onUnexpected: (unexpected) => this.context.log("unexpected provider answer", { ...unexpected }),
          }),
      );
    try {
      return await this.client;
    } catch (error) {
      this.client = undefined; // read it again next time
      return {
        kind: "rejected",
        providerId: null,
        retryable: true,
        reason: `The ModelsLab API key could not be read; nothing was sent: ${String(error)}`.slice(0, 1000),
        retryAfterSeconds: null,
        httpStatus: null,
      };
    }
  }
}

export const modelsLabModule = {
  id: "modelslab",
  capabilities,
  config: modelsLabSettings,
  capacity: (settings) => settings.MODELSLAB_MAX_CONCURRENCY,
  breakerKey: "modelslab",
  create: (settings, context) => new LazyModelsLab(settings, context),
  normalizeCallback: (body, log) =>
    normalizeCallback(body, {
      onUnexpected: (unexpected) => log("unexpected callback body", { ...unexpected }),
    }),
} satisfies ProviderModule<typeof modelsLabSettings>;
