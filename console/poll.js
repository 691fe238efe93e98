/**
 * A polling loop with backoff: `run` is called, then again after `minMs` when it reports a change,
 * after a delay growing by `factor` up to `maxMs` while nothing changes, and doubling (to `maxMs`)
 * after a failure. While the page is hidden nothing runs; it runs at once when the page shows again.
 *
 * `run` resolves to true when what it fetched changed; `onState` hears "waiting", "running",
 * "paused" or "stopped" with the delay before the next run.
 */
export function createPoller({ run, minMs = 1000, maxMs = 30000, factor = 1.6, doc = document, onState }) {
  let delay = minMs;
  let timer = null;
  let running = false;
  let stopped = false;
  let again = false;

  const report = (state) => onState?.(state, delay);

  const schedule = () => {
    if (stopped) return;
    if (doc.hidden) {
      report("paused");
      return;
    }
    timer = setTimeout(tick, delay);
    report("waiting");
  };

  async function tick() {
    timer = null;
    if (stopped || running) return;
    if (doc.hidden) {
      report("paused");
      return;
    }
    running = true;
    report("running");
    try {
      const changed = await run();
      delay = changed ? minMs : Math.min(Math.round(delay * factor), maxMs);
    } catch {
      delay = Math.min(delay * 2, maxMs);
    } finally {
      running = false;
    }
    if (again) {
      again = false;
      delay = minMs;
    }
    schedule();
  }

  const onVisibility = () => {
    if (stopped) return;
    if (doc.hidden) {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      report("paused");
    } else if (timer === null && !running) {
      void tick();
    }
  };
  doc.addEventListener("visibilitychange", onVisibility);

  return {
    /** Runs now and restarts the backoff (after a user action that will change things). */
    poke() {
      delay = minMs;
      if (running) {
        again = true;
        return;
      }
      if (timer !== null) clearTimeout(timer);
      timer = null;
      void tick();
    },
    stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      doc.removeEventListener("visibilitychange", onVisibility);
      report("stopped");
    },
    get delay() {
      return delay;
    },
  };
}
