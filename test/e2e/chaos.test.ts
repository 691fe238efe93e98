import { describe, expect, it } from "vitest";
import { runChaos } from "../../bench/chaos.ts";

/**
 * `npm run chaos` at 100 jobs: provider 5xx and 429 bursts, lost/duplicated/reordered/early callbacks,
 * slow and failing output downloads, S3 write errors, and the queue handlers' process SIGKILLed and
 * restarted at random points. Nothing may be lost, sent twice, left unannounced or announced under two
 * identities, and the provider's concurrency limit must hold.
 */
describe("chaos", () => {
  it("loses nothing, sends nothing twice and notifies every terminal job once under 100 jobs of faults", async () => {
    const report = await runChaos({ jobs: 100, seed: 1 });
    expect(report.submitted).toBe(100);
    expect({
      lost: report.lost,
      double_sent: report.double_sent,
      undelivered: report.undelivered,
      split_identity: report.split_identity,
      examples: report.details.examples,
    }).toEqual({
      lost: 0,
      double_sent: 0,
      undelivered: 0,
      split_identity: 0,
      examples: { lost: [], double_sent: [], undelivered: [], split_identity: [] },
    });
    expect(report.max_provider_concurrency).toBeLessThanOrEqual(report.provider_limit);
    expect(report.terminal).toBe(100);
    // The faults really happened.
    expect(report.details.pollers_killed).toBeGreaterThan(0);
    expect(report.details.provider.callbacks_dropped).toBeGreaterThan(0);
    expect(report.details.s3.faulted).toBeGreaterThan(0);
  }, 240_000);
});
