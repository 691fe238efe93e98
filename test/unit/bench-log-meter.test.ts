import { describe, expect, it } from "vitest";
import { LogMeter } from "../../bench/lib/log-meter.ts";

describe("LogMeter (the bench's log bytes)", () => {
  it("counts every byte, and the EMF lines' bytes and documents apart", () => {
    const meter = new LogMeter();
    const emf = '{"_aws":{"Timestamp":1,"CloudWatchMetrics":[]},"stage":"dev","Jobs":1}';
    const log = '{"level":"INFO","message":"dispatched","é":"ü"}';
    meter.add(`${emf}\n`);
    meter.add(Buffer.from(`${log}\n`));
    meter.add(`${log}\n${emf}\n${emf}\n`);

    expect(meter.bytes).toBe(3 * (Buffer.byteLength(emf) + 1) + 2 * (Buffer.byteLength(log) + 1));
    expect(meter.metricBytes).toBe(3 * (Buffer.byteLength(emf) + 1));
    expect(meter.metricDocuments).toBe(3);
    meter.reset();
    expect([meter.bytes, meter.metricBytes, meter.metricDocuments]).toEqual([0, 0, 0]);
  });
});
