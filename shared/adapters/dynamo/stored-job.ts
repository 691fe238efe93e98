import type { Attempt, Job } from "../../domain/job.ts";

/**
 * Reads a job item in the shape written before the provider port (the table keeps such items until
 * they expire; nothing rewrites them): an attempt's provider was its `route`; a self-hosted attempt's
 * state was phase `self-hosted` with `sent`; an accepted attempt kept ModelsLab's `fetchUrl` where it
 * now keeps the provider's handle (`{ fetchUrl }` is ModelsLab's handle). Items in today's shape are
 * returned as they are.
 */
export function upgradeStoredJob(job: Job): Job {
  const attempts = job.attempts.map(upgradeAttempt);
  // As stored: any shape this store ever wrote.
  const state = job.providerState as Record<string, unknown> | undefined;
  let providerState = state;
  if (state?.phase === "self-hosted") {
    // Sent: the fleet holds it (accepted); unsent: its submission is to be made again (submitting).
    providerState =
      state.sent === true
        ? { phase: "accepted", providerId: null, etaSeconds: null, handle: {}, checks: 0 }
        : { phase: "submitting" };
  } else if (state?.phase === "accepted" && state.handle === undefined) {
    const { fetchUrl, ...rest } = state;
    providerState = { ...rest, handle: { fetchUrl: typeof fetchUrl === "string" ? fetchUrl : null } };
  }
  const changed = providerState !== state || attempts.some((a, i) => a !== job.attempts[i]);
  return changed
    ? { ...job, attempts, ...(providerState && { providerState: providerState as Job["providerState"] }) }
    : job;
}

function upgradeAttempt(attempt: Attempt): Attempt {
  const stored = attempt as Attempt & { route?: Attempt["provider"] };
  if (stored.provider !== undefined || stored.route === undefined) return attempt;
  const { route, ...rest } = stored;
  return { ...rest, provider: route };
}
