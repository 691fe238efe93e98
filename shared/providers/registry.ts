/**
 * The provider registry: one row per provider module, keyed by its id (every id of PROVIDER_IDS has
 * exactly one row). Functions build their providers from it (`bindProviders`), config.ts composes the
 * modules' settings from it (`providersConfig`), and the callback endpoint takes its parsers from it.
 * Use cases never import it: they get a `Providers` and decide by capabilities.
 */
import * as z from "zod/mini";
import type { UnsupportedParam } from "../domain/fleet-capabilities.ts";
import type { JobError } from "../domain/job.ts";
import type { ProviderId } from "../domain/providers.ts";
import type { CapacityGate, CircuitBreaker, WaitingList } from "../ports/index.ts";
import type { AutoRoute, CallbackNormalizer, ProviderBinding, Providers } from "../ports/provider.ts";
import { modelsLabModule, modelsLabSettings } from "./modelslab.ts";
import type { ProviderContext, ProviderModule } from "./module.ts";
import { fleetUnsupported, selfHostedModule, selfHostedSettings } from "./self-hosted.ts";

export const PROVIDER_REGISTRY = {
  modelslab: modelsLabModule,
  "self-hosted": selfHostedModule,
} as const satisfies Record<ProviderId, ProviderModule>;

/**
 * Each row's settings schema (its module's `config`), apart from the modules themselves: config.ts
 * composes these, and a function that only parses its environment (the authorizer, the API) must not
 * bundle any provider's client for it.
 */
export const PROVIDER_SETTINGS = {
  modelslab: modelsLabSettings,
  "self-hosted": selfHostedSettings,
} as const satisfies Record<ProviderId, z.ZodMiniObject>;

/**
 * What each row cannot honour of a request, given the function's configuration (null: it takes every
 * parameter), apart from the modules for the same reason: the API refuses a pinned job's unsupported
 * parameters at submit without bundling any provider's client. The same as a built provider's
 * `capabilities.unsupported` (test/unit/fleet-capabilities.test.ts).
 */
export const PROVIDER_UNSUPPORTED = {
  modelslab: null,
  "self-hosted": fleetUnsupported,
} as const satisfies Record<
  ProviderId,
  // Each row reads its own settings from the function's parsed configuration.
  ((request: Readonly<Record<string, unknown>>, config: never) => UnsupportedParam[]) | null
>;

/** A registry: the production one, or one a test builds with a provider of its own. */
export type ProviderRegistry = Readonly<Record<string, ProviderModule>>;

/** `auto` jobs: ModelsLab first; the self-hosted fleet when ModelsLab cannot take them in time. */
export const AUTO_ROUTE: AutoRoute = { primary: "modelslab", fallback: "self-hosted" };

type Intersection<U> = (U extends unknown ? (u: U) => void : never) extends (i: infer I) => void ? I : never;
/** Every registry row's settings fields, typed as each module declares them. */
type ProvidersShape = Intersection<(typeof PROVIDER_SETTINGS)[ProviderId]["shape"]>;

/**
 * Every module's settings in one object schema, for the functions that use providers. No two modules
 * declare one variable (test/unit/provider-registry.test.ts).
 */
export const providersConfig = /* @__PURE__ */ z.object(
  Object.assign({}, ...Object.values(PROVIDER_SETTINGS).map((settings) => settings.shape)) as ProvidersShape,
);

/** One object schema of a registry's settings: `providersConfig` for any registry (a test's own). */
export const registrySettings = (registry: ProviderRegistry): z.ZodMiniObject =>
  z.object(Object.assign({}, ...Object.values(registry).map((module) => module.config.shape)));

/** Stores for the per-provider gate, waiting list and breaker items (the DynamoDB adapters, or fakes). */
export interface ProviderStores {
  gate(key: string, limit: number): CapacityGate;
  waiting(key: string): WaitingList;
  breaker(key: string): CircuitBreaker;
}

/**
 * The providers of one function: every registry row built with its settings (already parsed as part of
 * the function's configuration), its capacity gate (`CAPACITY#<id>`, limit from its row) and its
 * breaker (`BREAKER#<key>`, rows that have one).
 */
export function bindProviders(
  config: Record<string, unknown>,
  context: ProviderContext,
  stores: ProviderStores,
  registry: ProviderRegistry = PROVIDER_REGISTRY,
  auto: AutoRoute = AUTO_ROUTE,
): ProviderSet {
  const bindings = Object.values(registry).map((module): ProviderBinding => {
    const settings = pick(config, Object.keys(module.config.shape));
    return {
      provider: module.create(settings, context),
      gate: stores.gate(module.id, module.capacity(settings)),
      waiting: stores.waiting(module.id),
      ...(module.breakerKey !== null && { breaker: stores.breaker(module.breakerKey) }),
    };
  });
  return new ProviderSet(bindings, auto, registry);
}

const pick = (config: Record<string, unknown>, keys: string[]): Record<string, unknown> =>
  Object.fromEntries(keys.map((key) => [key, config[key]]));

/** `Providers` over a list of bindings; a registry row without a binding answers its `unavailable` error. */
export class ProviderSet implements Providers {
  private readonly byId: Map<ProviderId, ProviderBinding>;

  constructor(
    bindings: ProviderBinding[],
    readonly auto: AutoRoute,
    private readonly registry: ProviderRegistry = PROVIDER_REGISTRY,
  ) {
    this.byId = new Map(bindings.map((binding) => [binding.provider.id, binding]));
  }

  get(id: ProviderId): ProviderBinding | undefined {
    return this.byId.get(id);
  }

  all(): ProviderBinding[] {
    return [...this.byId.values()];
  }

  unavailable(id: ProviderId): JobError {
    return (
      this.registry[id]?.unavailable ?? {
        code: "PROVIDER_UNAVAILABLE",
        message: `No ${id} provider is configured for this deployment.`,
      }
    );
  }
}

/** The callback parsers of the providers that take callbacks, by id. */
export function callbackNormalizers(
  log: ProviderContext["log"],
  registry: ProviderRegistry = PROVIDER_REGISTRY,
): ReadonlyMap<ProviderId, CallbackNormalizer> {
  const parsers = new Map<ProviderId, CallbackNormalizer>();
  for (const module of Object.values(registry)) {
    const normalize = module.normalizeCallback;
    if (module.capabilities.callback && normalize) parsers.set(module.id, (body) => normalize(body, log));
  }
  return parsers;
}
