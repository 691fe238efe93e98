import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createPoller, type PollState } from "../../console/poll.js";

/** A document whose visibility the test sets, firing visibilitychange as a browser does. */
class FakeDocument extends EventTarget {
  hidden = false;
  setHidden(hidden: boolean): void {
    this.hidden = hidden;
    this.dispatchEvent(new Event("visibilitychange"));
  }
}

describe("the console's polling loop", () => {
  let doc: FakeDocument;
  let states: PollState[];
  beforeEach(() => {
    vi.useFakeTimers();
    doc = new FakeDocument();
    states = [];
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const start = (run: () => Promise<boolean>) =>
    createPoller({
      run,
      minMs: 1000,
      maxMs: 8000,
      factor: 2,
      doc,
      onState: (state) => states.push(state),
    });

  it("backs off while nothing changes, up to the bound, and comes back to the minimum on a change", async () => {
    const changes = [false, false, false, false, false, true];
    const run = vi.fn(async () => changes.shift() ?? false);
    const poller = start(run);
    poller.poke();
    await vi.advanceTimersByTimeAsync(0);
    expect(run).toHaveBeenCalledTimes(1);
    expect(poller.delay).toBe(2000);
    await vi.advanceTimersByTimeAsync(2000);
    expect(poller.delay).toBe(4000);
    await vi.advanceTimersByTimeAsync(4000);
    expect(poller.delay).toBe(8000);
    await vi.advanceTimersByTimeAsync(8000);
    expect(poller.delay).toBe(8000);
    await vi.advanceTimersByTimeAsync(8000);
    expect(run).toHaveBeenCalledTimes(5);
    await vi.advanceTimersByTimeAsync(8000);
    expect(run).toHaveBeenCalledTimes(6);
    expect(poller.delay).toBe(1000);
    poller.stop();
  });

  it("doubles the delay after a failure and keeps going", async () => {
    const run = vi.fn(async () => {
      throw new Error("network error");
    });
    const poller = start(run);
    poller.poke();
    await vi.advanceTimersByTimeAsync(0);
    expect(poller.delay).toBe(2000);
    await vi.advanceTimersByTimeAsync(2000);
    expect(poller.delay).toBe(4000);
    expect(run).toHaveBeenCalledTimes(2);
    poller.stop();
  });

  it("runs nothing while the page is hidden, and runs at once when it shows again", async () => {
    const run = vi.fn(async () => false);
    const poller = start(run);
    poller.poke();
    await vi.advanceTimersByTimeAsync(0);
    expect(run).toHaveBeenCalledTimes(1);
    doc.setHidden(true);
    expect(states.at(-1)).toBe("paused");
    await vi.advanceTimersByTimeAsync(60_000);
    expect(run).toHaveBeenCalledTimes(1);
    doc.setHidden(false);
    await vi.advanceTimersByTimeAsync(0);
    expect(run).toHaveBeenCalledTimes(2);
    expect(states.at(-1)).toBe("waiting");
    poller.stop();
  });

  it("stops for good: no more runs, and visibility no longer wakes it", async () => {
    const run = vi.fn(async () => true);
    const poller = start(run);
    poller.poke();
    await vi.advanceTimersByTimeAsync(0);
    poller.stop();
    await vi.advanceTimersByTimeAsync(10_000);
    doc.setHidden(true);
    doc.setHidden(false);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(run).toHaveBeenCalledTimes(1);
    expect(states.at(-1)).toBe("stopped");
  });
});
