/**
 * The metrics port: what use cases record about the product at work (job outcomes, latencies, slot
 * use, breaker state, deliveries). In AWS the adapter writes CloudWatch Embedded Metric Format lines
 * to the function's log (shared/adapters/metrics/emf-metrics.ts): no API call per job. Unit tests use
 * `RecordingMetrics` (test/support/fake-metrics.ts).
 *
 * Every metric is declared once in METRIC_CATALOG with its unit and the dimension sets it is published
 * under: CloudWatch bills each distinct (name, dimensions) pair as a metric, so dimensions stay few
 * (the stage, always; a provider, an outcome, an error code; a tenant only where a setting asks).
 * Metrics recorded together with the same sets share one EMF line (a success's times and bytes do).
 */

/** The dimensions a metric may carry besides the stage (every metric has that one). */
export type MetricDimension = "provider" | "outcome" | "code" | "tenant";
/** The stage: a default dimension of every metric, set by the adapter. */
export const STAGE_DIMENSION = "stage";
export type MetricDimensions = Partial<Record<MetricDimension, string>>;

type Unit = "Count" | "Milliseconds" | "Seconds" | "Bytes" | "Percent";

interface MetricSpec {
  unit: Unit;
  /**
   * `count`: events, summed (`Metrics.count`); `gauge`: a level sampled now (`Metrics.gauge`);
   * `sample`: one measurement per event, kept as a distribution (`duration`, `bytes`).
   */
  kind: "count" | "gauge" | "sample";
  /**
   * The aggregations it is published under (the stage is added to each). A record carrying only some
   * of these dimensions is published under the sets it fills; `[]` is the stage-wide total.
   */
  dimensionSets: readonly (readonly MetricDimension[])[];
  /** What it means, for the dashboard and docs/operations.md. */
  description: string;
}

export const METRIC_CATALOG = {
  Jobs: {
    unit: "Count",
    kind: "count",
    dimensionSets: [["outcome"], ["provider", "outcome"], ["outcome", "code"]],
    description:
      "Jobs that reached a terminal state: outcome succeeded, failed or cancelled; provider is the route of the last attempt (none when it never started); code is a failed job's error.code.",
  },
  ProviderSubmitLatency: {
    unit: "Milliseconds",
    kind: "sample",
    dimensionSets: [["provider"]],
    description: "How long one submission to a provider took to answer (any answer).",
  },
  SlotWait: {
    unit: "Milliseconds",
    kind: "sample",
    dimensionSets: [["provider"]],
    description: "Time from a job being queued (or re-queued) to its attempt starting with a capacity slot.",
  },
  ProviderTime: {
    unit: "Milliseconds",
    kind: "sample",
    dimensionSets: [[], ["provider"]],
    description: "Time at the provider of a succeeded job's last attempt (started to result).",
  },
  StoringTime: {
    unit: "Milliseconds",
    kind: "sample",
    dimensionSets: [[], ["provider"]],
    description: "Time a succeeded job spent storing its outputs (result to succeeded).",
  },
  EndToEndTime: {
    unit: "Milliseconds",
    kind: "sample",
    dimensionSets: [[], ["provider"]],
    description: "Time from a job's creation to its success.",
  },
  OutputBytes: {
    unit: "Bytes",
    kind: "sample",
    dimensionSets: [[], ["provider"]],
    description: "Bytes of the outputs a succeeded job stored.",
  },
  FallbackRoutings: {
    unit: "Count",
    kind: "count",
    dimensionSets: [["provider"]],
    description: "Attempts an auto job started on the fallback provider (provider: the fallback).",
  },
  Notifications: {
    unit: "Count",
    kind: "count",
    dimensionSets: [["outcome"]],
    description:
      "Webhook delivery tries by outcome: delivered, retried (a try failed, another is scheduled), gone (410) or dead_lettered (every try failed).",
  },
  WaitingJobs: {
    unit: "Count",
    kind: "gauge",
    dimensionSets: [[], ["provider"]],
    description:
      "Jobs waiting for a provider's capacity slot, sampled by the reconciler once a tick per provider (the stage-wide Sum over a tick is the total).",
  },
  WaitingJobsByTenant: {
    unit: "Count",
    kind: "gauge",
    dimensionSets: [["tenant"]],
    description:
      "WaitingJobs per tenant: recorded only with METRICS_TENANT_GAUGES (one metric per tenant is billed).",
  },
  OldestWaitingAge: {
    unit: "Seconds",
    kind: "gauge",
    dimensionSets: [[], ["provider"]],
    description: "Age of the longest-waiting job, sampled by the reconciler (0 when none waits).",
  },
  SlotsInUse: {
    unit: "Count",
    kind: "gauge",
    dimensionSets: [["provider"]],
    description: "Capacity slots held, sampled by the reconciler.",
  },
  SlotLimit: {
    unit: "Count",
    kind: "gauge",
    dimensionSets: [["provider"]],
    description: "A provider's capacity limit, sampled with SlotsInUse.",
  },
  SlotUtilisation: {
    unit: "Percent",
    kind: "gauge",
    dimensionSets: [["provider"]],
    description: "Slots in use over the limit, in percent, sampled by the reconciler.",
  },
  BreakerOpen: {
    unit: "Count",
    kind: "gauge",
    dimensionSets: [["provider"]],
    description:
      "1 while a provider's circuit breaker is open or half-open, 0 while closed, sampled by the reconciler.",
  },
} as const satisfies Record<string, MetricSpec>;

export type MetricName = keyof typeof METRIC_CATALOG;
type NamesOf<Kind, U extends Unit = Unit> = {
  [K in MetricName]: (typeof METRIC_CATALOG)[K] extends { kind: Kind; unit: U } ? K : never;
}[MetricName];
export type CountMetric = NamesOf<"count">;
export type DurationMetric = NamesOf<"sample", "Milliseconds">;
export type BytesMetric = NamesOf<"sample", "Bytes">;
export type GaugeMetric = NamesOf<"gauge">;

export interface Metrics {
  /** One more (or `value` more) of something that happened. */
  count(name: CountMetric, dims?: MetricDimensions, value?: number): void;
  duration(name: DurationMetric, ms: number, dims?: MetricDimensions): void;
  bytes(name: BytesMetric, bytes: number, dims?: MetricDimensions): void;
  /** A sampled level (waiting jobs, slots, a breaker's state). */
  gauge(name: GaugeMetric, value: number, dims?: MetricDimensions): void;
}

/** Records nothing: a use case whose deps give no metrics. */
export const noMetrics: Metrics = {
  count: () => undefined,
  duration: () => undefined,
  bytes: () => undefined,
  gauge: () => undefined,
};

/**
 * The catalog's dimension sets a record fills (each set's dimensions all given), or none. A record
 * whose dimensions fill no set is a programming error: it would be published nowhere.
 */
export function dimensionSetsOf(name: MetricName, dims: MetricDimensions): (readonly MetricDimension[])[] {
  const sets = (METRIC_CATALOG[name].dimensionSets as readonly (readonly MetricDimension[])[]).filter((set) =>
    set.every((dimension) => dims[dimension] !== undefined && dims[dimension] !== ""),
  );
  if (sets.length === 0) {
    throw new Error(
      `metric ${name} recorded with dimensions ${JSON.stringify(dims)} that fill none of its sets`,
    );
  }
  return sets;
}
