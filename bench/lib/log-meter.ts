/**
 * Counts what the functions print during a bench window, as CloudWatch Logs would ingest it: every
 * byte, and apart the bytes of the business metrics' EMF lines (shared/adapters/metrics/emf-metrics.ts),
 * which are ingested at the logs' price too.
 */
export class LogMeter {
  /** Every byte printed (EMF lines included). */
  bytes = 0;
  /** Bytes of EMF lines (JSON objects with an `_aws` metadata key). */
  metricBytes = 0;
  /** EMF documents printed. */
  metricDocuments = 0;

  add(chunk: string | Uint8Array): void {
    const text = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
    this.bytes += Buffer.byteLength(text);
    // One console line per write as a rule, but a chunk may carry several lines.
    for (const line of text.split("\n")) {
      if (!line.startsWith('{"_aws":')) continue;
      this.metricBytes += Buffer.byteLength(line) + 1;
      this.metricDocuments++;
    }
  }

  reset(): void {
    this.bytes = 0;
    this.metricBytes = 0;
    this.metricDocuments = 0;
  }
}
