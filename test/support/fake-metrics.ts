import {
  type BytesMetric,
  type CountMetric,
  type DurationMetric,
  dimensionSetsOf,
  type GaugeMetric,
  type MetricDimensions,
  type MetricName,
  type Metrics,
} from "../../shared/ports/metrics.ts";

export interface MetricRecord {
  name: MetricName;
  value: number;
  dims: MetricDimensions;
}

/**
 * The metrics port for unit tests: keeps every record. A record whose dimensions fill none of its
 * catalog's sets throws here (the EMF adapter reports and drops it), so a test catches the mistake.
 */
export class RecordingMetrics implements Metrics {
  readonly records: MetricRecord[] = [];

  count(name: CountMetric, dims: MetricDimensions = {}, value = 1): void {
    this.record(name, value, dims);
  }
  duration(name: DurationMetric, ms: number, dims: MetricDimensions = {}): void {
    this.record(name, ms, dims);
  }
  bytes(name: BytesMetric, bytes: number, dims: MetricDimensions = {}): void {
    this.record(name, bytes, dims);
  }
  gauge(name: GaugeMetric, value: number, dims: MetricDimensions = {}): void {
    this.record(name, value, dims);
  }

  private record(name: MetricName, value: number, dims: MetricDimensions): void {
    dimensionSetsOf(name, dims);
    this.records.push({ name, value, dims: { ...dims } });
  }

  /** The records of `name` whose dimensions include `dims`. */
  of(name: MetricName, dims: MetricDimensions = {}): MetricRecord[] {
    return this.records.filter(
      (record) =>
        record.name === name &&
        Object.entries(dims).every(([key, value]) => record.dims[key as keyof MetricDimensions] === value),
    );
  }

  /** The sum of the values of `of(name, dims)`. */
  total(name: MetricName, dims: MetricDimensions = {}): number {
    return this.of(name, dims).reduce((sum, record) => sum + record.value, 0);
  }
}
