import type { LatencySummary } from "./stats.ts";

/** Milliseconds with a precision that suits their size. */
export function ms(value: number): string {
  if (!Number.isFinite(value)) return "n/a";
  return value >= 100
    ? `${value.toFixed(0)} ms`
    : value >= 10
      ? `${value.toFixed(1)} ms`
      : `${value.toFixed(2)} ms`;
}

export function rate(perSecond: number): string {
  // A rate under 10/s (a provider-limited run) keeps its tenths: "1/s" would hide 1.4 against 5.
  return Number.isFinite(perSecond) ? `${perSecond.toFixed(perSecond < 10 ? 1 : 0)}/s` : "n/a";
}

export function ratio(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}x` : "n/a";
}

/** One aligned line per summary: label, count, p50, p90, p99, max, throughput. */
export function summaryTable(rows: ReadonlyArray<{ label: string; summary: LatencySummary }>): string {
  const header = ["", "n", "p50", "p90", "p99", "max", "throughput"];
  const body = rows.map(({ label, summary: s }) => [
    label,
    String(s.count),
    ms(s.p50Ms),
    ms(s.p90Ms),
    ms(s.p99Ms),
    ms(s.maxMs),
    rate(s.perSecond),
  ]);
  return table([header, ...body]);
}

/** Left-aligned first column, right-aligned others, two spaces between columns. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}
