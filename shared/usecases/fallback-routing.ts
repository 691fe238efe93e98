import type { Job } from "../domain/job.ts";
import type { ProviderBinding } from "../ports/provider.ts";
import { type AdmissionDeps, releaseAndAdmit } from "./admission.ts";
import type { AttemptDeps } from "./attempt-outcomes.ts";
import { startAttempt } from "./start-attempt.ts";

/**
 * Whether `binding`'s provider can honour every parameter the job sets (its `capabilities.unsupported`
 * finds none): an `auto` job goes to the fallback only then, else it waits for its primary.
 */
export function honoursRequest(binding: ProviderBinding | undefined, job: Job): boolean {
  return (binding?.provider.capabilities.unsupported?.(job.request) ?? []).length === 0;
}

/**
 * Moves an `auto` job to the fallback provider (the job keeps its id and gains an attempt there): from
 * `queued` (dispatch: the primary's breaker is open, or its capacity would come too late) or from
 * `processing` (its primary attempt gave up; that attempt is closed as failed with `reason`, and its
 * slot is the caller's to release). The fallback's capacity slot is taken first: "full" when it has
 * none, and nothing changed. The caller has checked that this deployment has a fallback, and that it
 * honours the job (`honoursRequest`).
 */
export async function routeToFallback(
  deps: AttemptDeps,
  job: Job,
  reason: string,
): Promise<"fallback" | "ignored" | "full"> {
  const id = deps.providers.auto.fallback;
  const binding = id === null ? undefined : deps.providers.get(id);
  if (!binding) throw new Error("routing to the fallback of a deployment without one");
  if (!honoursRequest(binding, job)) throw new Error("routing to a fallback that cannot honour the job");
  if (!(await binding.gate.tryAcquire(job.id, deps.clock.now()))) return "full";
  let outcome: Awaited<ReturnType<typeof startAttempt>>;
  try {
    outcome = await startAttempt(deps, job, binding, { reason });
  } catch (error) {
    // Once written, the attempt keeps its slot even if its submission failed (the reconciler submits
    // it again); a job that moved on meanwhile (the caller decides again) holds none here.
    await releaseUnlessHeld(deps, job, binding);
    throw error;
  }
  if (outcome !== "ignored") {
    deps.metrics?.count("FallbackRoutings", { provider: binding.provider.id });
    return "fallback";
  }
  // From queued, someone else moved the job first.
  await releaseUnlessHeld(deps, job, binding);
  return "ignored";
}

/** Releases the job's slot on `binding` unless the job is processing there (then the slot is that attempt's). */
export async function releaseUnlessHeld(
  deps: AdmissionDeps,
  job: Job,
  binding: ProviderBinding,
): Promise<void> {
  const current = await deps.jobs.get(job.id);
  const held = current?.status === "processing" && current.attempts.at(-1)?.provider === binding.provider.id;
  if (!held) await releaseAndAdmit(deps, binding, job.id);
}
