import type { ProviderId } from "../domain/providers.ts";
import type { Clock } from "../ports/index.ts";
import type { Metrics } from "../ports/metrics.ts";
import type { ProviderBinding, Providers } from "../ports/provider.ts";

export interface GaugeDeps {
  providers: Providers;
  metrics: Metrics;
  clock: Clock;
  /** Each provider's capacity limit (its registry row's, as its gate enforces it). */
  limits: Partial<Record<ProviderId, number>>;
  log?: (message: string, data: Record<string, unknown>) => void;
}

/**
 * The reconciler's sample of the levels no single job shows (shared/ports/metrics.ts), once a tick
 * per provider: its slots in use, limit and utilisation, and whether its breaker is open. A provider
 * whose gate or breaker cannot be read now is reported and skipped: a gauge is a sample, the next tick
 * takes another, and the sweep must not fail for it.
 */
export async function reportGauges(deps: GaugeDeps): Promise<void> {
  await Promise.all(deps.providers.all().map((binding) => reportProvider(deps, binding)));
}

async function reportProvider(deps: GaugeDeps, binding: ProviderBinding): Promise<void> {
  const provider = binding.provider.id;
  const { metrics } = deps;
  try {
    const [holders, breaker] = await Promise.all([
      binding.gate.holders(),
      binding.breaker?.state(deps.clock.now()),
    ]);
    const inUse = Object.keys(holders).length;
    const limit = deps.limits[provider];
    metrics.gauge("SlotsInUse", inUse, { provider });
    if (limit !== undefined && limit > 0) {
      metrics.gauge("SlotLimit", limit, { provider });
      metrics.gauge("SlotUtilisation", Math.min(100, (100 * inUse) / limit), { provider });
    }
    if (breaker !== undefined) metrics.gauge("BreakerOpen", breaker === "closed" ? 0 : 1, { provider });
  } catch (error) {
    deps.log?.("gauges of a provider not sampled", { provider, error: String(error) });
  }
}
