/**
 * Every provider a job can run on, by id. The provider registry (shared/providers/registry.ts) has
 * exactly one module per id (the compiler checks both ways); the API's `provider` choice, a job's
 * attempts, result messages and callback paths all take their values from this list.
 */
export const PROVIDER_IDS = ["modelslab", "self-hosted"] as const;
export type ProviderId = (typeof PROVIDER_IDS)[number];

export const isProviderId = (value: unknown): value is ProviderId =>
  typeof value === "string" && (PROVIDER_IDS as readonly string[]).includes(value);

/**
 * What a provider needs to find an accepted request again (ModelsLab: its fetch URL). Opaque to the
 * use cases: kept with the attempt as JSON and handed back to the same provider's `fetch`.
 */
export type ProviderHandle = Readonly<Record<string, string | number | boolean | null>>;
