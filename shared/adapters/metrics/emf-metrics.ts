import type { Logger } from "@aws-lambda-powertools/logger";
import { MetricUnit, Metrics as PowertoolsMetrics } from "@aws-lambda-powertools/metrics";
import {
  type BytesMetric,
  type CountMetric,
  type DurationMetric,
  dimensionSetsOf,
  type GaugeMetric,
  METRIC_CATALOG,
  type MetricDimension,
  type MetricDimensions,
  type MetricName,
  type Metrics,
  STAGE_DIMENSION,
} from "../../ports/metrics.ts";

export interface EmfMetricsOptions {
  namespace: string;
  stage: string;
  /** Where a metric recorded wrongly (no dimension set filled) and Powertools' own warnings are reported. */
  logger: Pick<Logger, "warn" | "info" | "debug" | "error">;
}

/** One EMF document: the records that share their dimensions and dimension sets. */
interface Group {
  dimensions: Record<string, string>;
  sets: (readonly MetricDimension[])[];
  /** Counts are summed into one value; every other value is kept (a distribution). */
  values: Map<MetricName, number[]>;
}

/**
 * EMF allows 100 values of a metric in one document (Powertools publishes early at 100, which would
 * drop a document's dimension sets): larger groups go out as several documents.
 */
const VALUES_PER_DOCUMENT = 99;

/**
 * Powertools warnings that say nothing here: an invocation that recorded nothing (most API calls
 * record none), and a dimension shared by two of a document's dimension sets (it has one value by
 * construction).
 */
const EXPECTED_WARNINGS = [
  /^No application metrics to publish/,
  /^EMF key "[^"]+" is defined as both a dimension set and dimension set/,
];

/**
 * The metrics port on Powertools Metrics: records are buffered per invocation and flushed as CloudWatch
 * Embedded Metric Format lines on stdout (CloudWatch Logs turns them into metrics; no API call).
 *
 * It is itself a Powertools `Metrics`, so each function's handler flushes it with Powertools' middy
 * middleware (`logMetrics`) after every invocation, error or not. Powertools publishes one dimension set
 * list per document for all its metrics, so the buffer groups records by their dimensions: one document
 * per group, under every dimension set of METRIC_CATALOG the group fills, plus the stage.
 *
 * A metric recorded wrongly is reported and dropped, never thrown: a job's progress never depends on
 * its metrics. POWERTOOLS_METRICS_DISABLED (or POWERTOOLS_DEV, as Powertools reads them) turns output off.
 */
export class EmfMetrics extends PowertoolsMetrics implements Metrics {
  private readonly groups = new Map<string, Group>();
  /** Writes each group's documents (Powertools' serialization, validation and stdout). */
  private readonly writer: PowertoolsMetrics;
  private readonly warn: EmfMetricsOptions["logger"]["warn"];

  constructor(options: EmfMetricsOptions) {
    const logger = quietOnExpected(options.logger);
    super({ namespace: options.namespace, logger });
    this.warn = options.logger.warn.bind(options.logger);
    this.writer = new PowertoolsMetrics({ namespace: options.namespace, logger });
    // The stage alone, not Powertools' `service`: every dimension is one more billed aggregation.
    this.writer.clearDefaultDimensions();
    this.writer.setDefaultDimensions({ [STAGE_DIMENSION]: options.stage });
  }

  count(name: CountMetric, dims: MetricDimensions = {}, value = 1): void {
    this.record(name, value, dims);
  }

  duration(name: DurationMetric, ms: number, dims: MetricDimensions = {}): void {
    this.record(name, Math.max(0, Math.round(ms)), dims);
  }

  bytes(name: BytesMetric, bytes: number, dims: MetricDimensions = {}): void {
    this.record(name, bytes, dims);
  }

  gauge(name: GaugeMetric, value: number, dims: MetricDimensions = {}): void {
    this.record(name, value, dims);
  }

  private record(name: MetricName, value: number, dims: MetricDimensions): void {
    let sets: (readonly MetricDimension[])[];
    try {
      if (!Number.isFinite(value)) throw new Error(`metric ${name}: ${value} is not a finite number`);
      sets = dimensionSetsOf(name, dims);
    } catch (error) {
      this.warn("metric not recorded", { metric: name, error: String(error) });
      return;
    }
    const used = [...new Set(sets.flat())].sort();
    const dimensions = Object.fromEntries(used.map((d) => [d, dims[d] as string]));
    const key = JSON.stringify([sets, dimensions]);
    let group = this.groups.get(key);
    if (!group) {
      group = { dimensions, sets, values: new Map() };
      this.groups.set(key, group);
    }
    const values = group.values.get(name) ?? [];
    if (METRIC_CATALOG[name].kind === "count" && values.length > 0) {
      values[0] = (values[0] ?? 0) + value;
    } else {
      values.push(value);
    }
    group.values.set(name, values);
  }

  override hasStoredMetrics(): boolean {
    return this.groups.size > 0;
  }

  /** Writes every buffered group as EMF documents and empties the buffer (the middleware calls it). */
  override publishStoredMetrics(): this {
    const groups = [...this.groups.values()];
    this.groups.clear();
    for (const group of groups) {
      const longest = Math.max(...[...group.values.values()].map((values) => values.length));
      for (let start = 0; start < longest; start += VALUES_PER_DOCUMENT) {
        for (const set of group.sets) {
          this.writer.addDimensions(Object.fromEntries(set.map((d) => [d, group.dimensions[d] as string])));
        }
        for (const [name, values] of group.values) {
          for (const value of values.slice(start, start + VALUES_PER_DOCUMENT)) {
            this.writer.addMetric(name, MetricUnit[METRIC_CATALOG[name].unit], value);
          }
        }
        this.writer.publishStoredMetrics();
      }
    }
    return this;
  }
}

function quietOnExpected(logger: EmfMetricsOptions["logger"]): EmfMetricsOptions["logger"] {
  return {
    debug: logger.debug.bind(logger),
    info: logger.info.bind(logger),
    error: logger.error.bind(logger),
    warn: (message: unknown, ...rest: unknown[]) => {
      if (typeof message === "string" && EXPECTED_WARNINGS.some((expected) => expected.test(message))) return;
      (logger.warn as (...args: unknown[]) => void)(message, ...rest);
    },
  } as EmfMetricsOptions["logger"];
}
