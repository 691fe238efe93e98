import {
  admissionOrder,
  DEFAULT_CONCURRENCY_KEY,
  type LaneView,
  laneShare,
  queueEstimate,
  type SlotHolder,
} from "../domain/admission.ts";
import { StaleWriteError } from "../domain/errors.ts";
import type { Job } from "../domain/job.ts";
import type { Clock, GateSnapshot, JobStore, Lane, Queue, WaitingEntry } from "../ports/index.ts";
import type { ProviderBinding } from "../ports/provider.ts";
import type { AdmissionMessage } from "../schemas/messages.ts";

/**
 * Admission: a job that finds its provider's gate full waits in the provider's waiting list (no
 * message, no polling); every release of a slot admits the next job by fair share in the same step
 * (`releaseAndAdmit`); the reconciler's tick (`admit`) is only the safety net.
 */
export interface AdmissionDeps {
  jobs: JobStore;
  /** Where an admitted job's message goes: apart from the jobs queue, whose backlog it must not wait behind. */
  admissionsQueue: Queue<AdmissionMessage>;
  clock: Clock;
  log?: (message: string, data: Record<string, unknown>) => void;
}

/** Lanes read per admission round; a provider's lanes past this wait for the sweep to drop idle ones. */
export const MAX_LANES = 200;
/** A lane found empty is dropped from the listing once untouched this long (an enqueue re-creates it). */
export const IDLE_LANE_MS = 5 * 60_000;
/** Entries counted ahead of a job when its queue position is estimated (one capped COUNT query). */
export const POSITION_COUNT_CAP = 1_000;

const laneOf = (job: Pick<Job, "tenantId" | "concurrencyKey">) => ({
  tenant: job.tenantId,
  key: job.concurrencyKey ?? DEFAULT_CONCURRENCY_KEY,
});

/** The job's wait bound (epoch ms): its own for a first start, else (a retry, an older job) its deadline. */
export function waitBoundOf(job: Job): number {
  return job.waitUntil !== undefined && job.attempts.length === 0
    ? Date.parse(job.waitUntil)
    : Date.parse(job.deadlineAt);
}

/**
 * Puts a queued job on `binding`'s waiting list and records its place on the job, whose next look by
 * the reconciler moves to its wait bound (nothing is due meanwhile). "ignored": the job changed
 * meanwhile (its entry is taken back). Then, should a slot have freed while the job was being
 * enqueued, it is admitted at once (no release would come to admit it).
 */
export async function enqueueJob(
  deps: AdmissionDeps,
  job: Job,
  binding: ProviderBinding,
): Promise<{ outcome: "waiting" | "ignored"; entry: WaitingEntry; gate: GateSnapshot | null }> {
  const now = deps.clock.now();
  const entry = await binding.waiting.enqueue(
    { jobId: job.id, ...laneOf(job), priority: job.priority ?? "normal", enqueuedAt: now.getTime() },
    now,
  );
  try {
    await deps.jobs.update(job, {
      waiting: { ...entry, provider: binding.provider.id },
      dueAt: waitBoundOf(job),
    });
  } catch (error) {
    if (!(error instanceof StaleWriteError)) throw error;
    await binding.waiting.remove(entry);
    return { outcome: "ignored", entry, gate: null };
  }
  const gate = await binding.gate.snapshot();
  await admitFrom(deps, binding, gate);
  return { outcome: "waiting", entry, gate };
}

/**
 * Frees `jobId`'s slot on `binding`, then admits waiting jobs while the gate has free slots. Every
 * release goes through here. The release itself must succeed (its error propagates); admission is
 * best effort (the reconciler's sweep admits what a failure here left waiting).
 */
export async function releaseAndAdmit(
  deps: AdmissionDeps,
  binding: ProviderBinding,
  jobId: string,
): Promise<number> {
  const snapshot = await binding.gate.release(jobId, deps.clock.now());
  return admitFrom(deps, binding, snapshot);
}

/** Admits waiting jobs while `binding`'s gate has free slots (the sweep, and after an enqueue). */
export async function admit(deps: AdmissionDeps, binding: ProviderBinding): Promise<number> {
  const snapshot = await binding.gate.snapshot();
  return admitFrom(deps, binding, snapshot);
}

async function admitFrom(deps: AdmissionDeps, binding: ProviderBinding, snapshot: GateSnapshot) {
  if (snapshot.holders.length >= snapshot.limit) return 0;
  try {
    return await admitWhileFree(deps, binding, snapshot);
  } catch (error) {
    if (error instanceof StaleWriteError) return 0;
    deps.log?.("admission failed; the sweep admits later", {
      provider: binding.provider.id,
      error: String(error),
    });
    return 0;
  }
}

const laneKey = (lane: Pick<LaneView, "tenant" | "key">) => `${lane.tenant}#${lane.key}`;

/**
 * One admission per free slot, at most `limit` in one call: the next lane by fair share
 * (`admissionOrder`) whose head is found; the slot taken on the job's behalf (holder keyed by its job
 * id, with its tenant and key); its entry deleted (conditional: whoever deletes it owns the
 * admission); then the job's admission message, which starts it without asking the gate again.
 *
 * The slot comes before the delete so that no crash leaves a job neither waiting nor holding a slot:
 * a crash after the acquire leaves a queued job holding a slot, which the reconciler sends again
 * (`SLOT_GRACE_SECONDS`), its entry removed first; a crash before it leaves the entry in place.
 */
async function admitWhileFree(
  deps: AdmissionDeps,
  binding: ProviderBinding,
  snapshot: GateSnapshot,
): Promise<number> {
  const { waiting, gate } = binding;
  let free = snapshot.limit - snapshot.holders.length;
  const lanes = await waiting.lanes(MAX_LANES);
  if (lanes.length === 0) return 0;
  const holders: SlotHolder[] = [...snapshot.holders];
  const empty = new Set<string>();
  let admitted = 0;
  for (let round = 0; free > 0 && round < snapshot.limit * 2; round++) {
    const next = await nextEntry(deps, binding, holders, lanes, empty);
    if (!next) break;
    const now = deps.clock.now();
    const owner = { tenant: next.tenant, key: next.key };
    // A dispatcher took the last slot meanwhile: the job keeps its place for the next release.
    if (!(await gate.tryAcquire(next.jobId, now, owner))) break;
    if (!(await waiting.remove(next))) {
      // Another admitter took it (the slot, keyed by job id, is the same one: its message starts the
      // job), or the job left the list (cancelled, overflowed): then the slot is nobody's.
      await releaseUnlessAdmitted(deps, binding, next.jobId);
      continue;
    }
    await deps.admissionsQueue.send({ jobId: next.jobId, admittedBy: binding.provider.id });
    holders.push({ jobId: next.jobId, acquiredAt: now.getTime(), ...owner });
    free--;
    admitted++;
  }
  return admitted;
}

/**
 * After a lost race for `jobId`'s entry: its slot stays when the job is still queued (admitted by
 * the winner, whose message is on its way) or processing on this provider (started on it); otherwise
 * it goes back. Should the winner's message be lost, the reconciler's grace rule covers the slot.
 */
async function releaseUnlessAdmitted(deps: AdmissionDeps, binding: ProviderBinding, jobId: string) {
  const job = await deps.jobs.get(jobId);
  const kept =
    job?.status === "queued" ||
    (job?.status === "processing" && job.attempts.at(-1)?.provider === binding.provider.id);
  if (!kept) await binding.gate.release(jobId, deps.clock.now());
}

/** The head of the first non-empty lane in fair-share order; lanes found empty (and idle) are dropped. */
async function nextEntry(
  deps: AdmissionDeps,
  binding: ProviderBinding,
  holders: SlotHolder[],
  lanes: Lane[],
  empty: Set<string>,
): Promise<WaitingEntry | undefined> {
  const order = admissionOrder(
    holders,
    lanes.filter((lane) => !empty.has(laneKey(lane))),
  );
  for (const lane of order) {
    const [head] = await binding.waiting.head(lane.tenant, lane.key, 1);
    if (head) return head;
    empty.add(laneKey(lane));
    const listed = lanes.find((l) => laneKey(l) === laneKey(lane));
    if (listed && listed.touchedAt < deps.clock.now().getTime() - IDLE_LANE_MS) {
      await binding.waiting.dropLane(listed);
    }
  }
  return undefined;
}

/**
 * Whether a job that starts waiting now in a lane getting `share` of the slots could start past
 * `waitBound` at all: false when even the most a queue estimate can count (POSITION_COUNT_CAP ahead)
 * would start it in time, so the count is not worth its reads; true when it may. False too when no
 * turnover was measured yet: then nothing can be estimated.
 */
export function mayStartPast(gate: GateSnapshot, share: number, now: number, waitBound: number): boolean {
  if (gate.avgHoldMs === null || gate.limit <= 0) return false;
  const worst = queueEstimate({
    ahead: POSITION_COUNT_CAP,
    share,
    limit: gate.limit,
    avgHoldMs: gate.avgHoldMs,
  });
  return now + (worst.etaSeconds ?? 0) * 1000 > waitBound;
}

/**
 * Where a waiting job stands: its position among every waiting job (from the entries ahead in its
 * own lane, one capped COUNT, and its lane's fair share of the slots) and its estimated start from the
 * gate's measured slot turnover. Null when the job does not wait.
 */
export async function queuePosition(
  binding: Pick<ProviderBinding, "gate" | "waiting">,
  job: Job,
): Promise<{ position: number; etaSeconds: number | null } | null> {
  const place = job.waiting;
  if (job.status !== "queued" || !place) return null;
  const [ahead, lanes, gate] = await Promise.all([
    binding.waiting.countAhead(place, POSITION_COUNT_CAP),
    binding.waiting.lanes(MAX_LANES),
    binding.gate.snapshot(),
  ]);
  return queueEstimate({
    ahead,
    share: laneShare(place, lanes),
    limit: gate.limit,
    avgHoldMs: gate.avgHoldMs,
  });
}
