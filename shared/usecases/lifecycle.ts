import { type LifecycleEvent, lifecycleEvent } from "../domain/events.ts";
import { isTerminal, type Job, type JobStatus } from "../domain/job.ts";
import type {
  Clock,
  CreateJobResult,
  EventPublisher,
  IdempotencyRecord,
  JobPage,
  JobPatch,
  JobStore,
  ListJobsQuery,
  Queue,
} from "../ports/index.ts";
import { type Metrics, noMetrics } from "../ports/metrics.ts";
import type { NotifyMessage } from "../schemas/messages.ts";
import { recordTransition } from "./job-metrics.ts";

export interface LifecycleDeps {
  notifications: Queue<NotifyMessage>;
  events: EventPublisher;
  clock: Clock;
  /** How long after a terminal transition the reconciler re-sends a notify message still pending. */
  notifyGraceSeconds: number;
  /**
   * `all`: every state change is published; `terminal`: only the terminal ones (by the notify step,
   * from the outbox); `none`: nothing (this store publishes only with `all` anyway).
   */
  publish: "terminal" | "all" | "none";
  /** Job outcomes and times, recorded from each transition written (job-metrics.ts). */
  metrics?: Metrics;
  log?: (message: string, data: Record<string, unknown>) => void;
}

/**
 * A JobStore that announces state changes, so no use case can forget to: a terminal one (or
 * `processing`, when the client asked) becomes a notify message, whose notify step publishes the
 * terminal lifecycle event; with `publish: "all"` every other change is published here, after its
 * write. Terminal transitions also set the job's outbox flag (`notifyPending` with a `dueAt`) in
 * the same write, so a crash before the message is sent is repaired by the reconciler. Each written
 * transition is measured (job outcomes and times: job-metrics.ts).
 */
export class LifecycleJobStore implements JobStore {
  constructor(
    private readonly inner: JobStore,
    private readonly deps: LifecycleDeps,
  ) {}

  async create(job: Job, idempotency?: IdempotencyRecord): Promise<CreateJobResult> {
    const result = await this.inner.create(job, idempotency);
    if (result.created && this.deps.publish === "all") await this.publish(lifecycleEvent(result.job));
    return result;
  }

  get(id: string): Promise<Job | null> {
    return this.inner.get(id);
  }

  listByTenant(tenantId: string, query: ListJobsQuery): Promise<JobPage> {
    return this.inner.listByTenant(tenantId, query);
  }

  findDue(now: Date, limit: number): Promise<Job[]> {
    return this.inner.findDue(now, limit);
  }

  update(job: Job, patch: JobPatch): Promise<Job> {
    return this.inner.update(job, patch);
  }

  async transition(job: Job, to: JobStatus, patch: JobPatch = {}): Promise<Job> {
    const outbox: JobPatch = isTerminal(to)
      ? { notifyPending: true, dueAt: this.deps.clock.now().getTime() + this.deps.notifyGraceSeconds * 1000 }
      : {};
    const next = await this.inner.transition(job, to, { ...patch, ...outbox });
    recordTransition(this.deps.metrics ?? noMetrics, job, next);
    // Terminal events are published by the notify step from the outbox (at least once).
    if (!isTerminal(to) && this.deps.publish === "all") await this.publish(lifecycleEvent(next));
    if (isTerminal(to) || (to === "processing" && next.notifyProcessing)) await sendJobEvent(this.deps, next);
    return next;
  }

  private async publish(event: LifecycleEvent): Promise<void> {
    try {
      await this.deps.events.publish([event]);
    } catch (error) {
      this.deps.log?.("lifecycle event not published", {
        jobId: event.detail.job_id,
        type: event.type,
        error: String(error),
      });
    }
  }
}

/** Sends the notify message of a job's current state; a failure is repaired by the reconciler (terminal) or logged. */
export async function sendJobEvent(
  deps: Pick<LifecycleDeps, "notifications" | "log">,
  job: Job,
): Promise<void> {
  const message: NotifyMessage = { kind: "job-event", jobId: job.id, status: job.status };
  try {
    await deps.notifications.send(message);
  } catch (error) {
    deps.log?.("notify message not sent; the reconciler will retry", { jobId: job.id, error: String(error) });
  }
}
