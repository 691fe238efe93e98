import type { Clock } from "../ports/index.ts";
import type { Metrics } from "../ports/metrics.ts";
import type { ProviderBinding, Providers } from "../ports/provider.ts";

export interface GaugeDeps {
  providers: Providers;
  metrics: Metrics;
  clock: Clock;
  /** WaitingJobsByTenant too (METRICS_TENANT_GAUGES): one billed metric per tenant that waits. */
  perTenant: boolean;
  log?: (message: string, data: Record<string, unknown>) => void;
}

/** Lanes read per provider and tick (as many as admission itself reads in one round). */
export const GAUGE_MAX_LANES = 200;
/** Entries counted per lane and tick: a longer lane is reported at this count (the gauge saturates). */
export const GAUGE_LANE_CAP = 1_000;

/**
 * The reconciler's sample of the levels no single job shows (shared/ports/metrics.ts), once a tick
 * per provider: its gate (slots in use, limit, utilisation), its waiting list (jobs waiting, the
 * oldest one's age; per tenant when asked) and whether its breaker is open. A provider whose gate,
 * list or breaker cannot be read now is reported and skipped: a gauge is a sample, the next tick
 * takes another, and the sweep must not fail for it.
 */
export async function reportGauges(deps: GaugeDeps): Promise<void> {
  await Promise.all(deps.providers.all().map((binding) => reportProvider(deps, binding)));
}

async function reportProvider(deps: GaugeDeps, binding: ProviderBinding): Promise<void> {
  const provider = binding.provider.id;
  const { metrics } = deps;
  const now = deps.clock.now();
  try {
    const [gate, breaker, waiting] = await Promise.all([
      binding.gate.snapshot(),
      binding.breaker?.state(now),
      waitingOn(binding),
    ]);
    const inUse = gate.holders.length;
    metrics.gauge("SlotsInUse", inUse, { provider });
    metrics.gauge("SlotLimit", gate.limit, { provider });
    if (gate.limit > 0) {
      metrics.gauge("SlotUtilisation", Math.min(100, (100 * inUse) / gate.limit), { provider });
    }
    if (breaker !== undefined) metrics.gauge("BreakerOpen", breaker === "closed" ? 0 : 1, { provider });
    metrics.gauge("WaitingJobs", waiting.count, { provider });
    const oldestSeconds = waiting.oldest === null ? 0 : Math.max(0, (now.getTime() - waiting.oldest) / 1000);
    metrics.gauge("OldestWaitingAge", Math.round(oldestSeconds), { provider });
    if (deps.perTenant) {
      for (const [tenant, count] of waiting.byTenant) metrics.gauge("WaitingJobsByTenant", count, { tenant });
    }
  } catch (error) {
    deps.log?.("gauges of a provider not sampled", { provider, error: String(error) });
  }
}

/** The provider's waiting jobs: how many (each lane counted up to its cap), per tenant, and the oldest's enqueue time. */
async function waitingOn(
  binding: ProviderBinding,
): Promise<{ count: number; oldest: number | null; byTenant: Map<string, number> }> {
  const lanes = await binding.waiting.lanes(GAUGE_MAX_LANES);
  const heads = await Promise.all(
    lanes.map((lane) => binding.waiting.head(lane.tenant, lane.key, GAUGE_LANE_CAP)),
  );
  let count = 0;
  let oldest: number | null = null;
  const byTenant = new Map<string, number>();
  for (const [index, entries] of heads.entries()) {
    const tenant = lanes[index]?.tenant as string;
    count += entries.length;
    if (entries.length > 0) byTenant.set(tenant, (byTenant.get(tenant) ?? 0) + entries.length);
    for (const entry of entries)
      oldest = oldest === null ? entry.enqueuedAt : Math.min(oldest, entry.enqueuedAt);
  }
  return { count, oldest, byTenant };
}
