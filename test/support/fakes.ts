import { StaleWriteError } from "../../shared/domain/errors.ts";
import { assertTransition, isTerminal, type Job, type JobStatus } from "../../shared/domain/job.ts";
import type {
  CapacityGate,
  Clock,
  CreateJobResult,
  IdempotencyRecord,
  JobPage,
  JobPatch,
  JobStore,
  ListJobsQuery,
  Queue,
  SendOptions,
} from "../../shared/ports/index.ts";
import type { Provider, ProviderResult, ProviderSubmission } from "../../shared/ports/provider.ts";

/** Plain in-memory fakes for use-case unit tests. Behaviour against real services is proven in test/integration. */
export class FakeClock implements Clock {
  constructor(private current = new Date("2026-01-01T00:00:00.000Z")) {}
  now(): Date {
    return new Date(this.current);
  }
  advance(ms: number): void {
    this.current = new Date(this.current.getTime() + ms);
  }
}

export class InMemoryJobStore implements JobStore {
  readonly jobs = new Map<string, Job>();
  readonly idempotency = new Map<string, { jobId: string; requestHash: string; expiresAt: number }>();

  constructor(private readonly clock: Clock) {}

  async create(job: Job, idem?: IdempotencyRecord): Promise<CreateJobResult> {
    if (idem) {
      const key = `${job.tenantId}#${idem.keyHash}`;
      const existing = this.idempotency.get(key);
      if (existing && existing.expiresAt >= this.clock.now().getTime() / 1000) {
        return {
          created: false,
          existingJobId: existing.jobId,
          sameRequest: existing.requestHash === idem.requestHash,
        };
      }
      this.idempotency.set(key, { jobId: job.id, requestHash: idem.requestHash, expiresAt: idem.expiresAt });
    }
    this.jobs.set(job.id, structuredClone(job));
    return { created: true, job: structuredClone(job) };
  }

  async get(id: string): Promise<Job | null> {
    const job = this.jobs.get(id);
    return job ? structuredClone(job) : null;
  }

  async listByTenant(tenantId: string, query: ListJobsQuery): Promise<JobPage> {
    const all = [...this.jobs.values()]
      .filter((j) => j.tenantId === tenantId && (!query.status || j.status === query.status))
      .sort((a, b) => (a.id < b.id ? 1 : -1));
    const start = query.cursor ? all.findIndex((j) => j.id < (query.cursor as string)) : 0;
    const page = start < 0 ? [] : all.slice(start, start + query.limit);
    const last = page.at(-1);
    return { jobs: page, nextCursor: last && start + query.limit < all.length ? last.id : null };
  }

  async transition(job: Job, to: JobStatus, patch: JobPatch = {}): Promise<Job> {
    assertTransition(job.status, to);
    return this.write(job, { ...patch, status: to });
  }

  async update(job: Job, patch: JobPatch): Promise<Job> {
    return this.write(job, patch);
  }

  async findDue(now: Date, limit: number): Promise<Job[]> {
    return [...this.jobs.values()]
      .filter(
        (j) => (!isTerminal(j.status) || j.notifyPending) && j.dueAt !== null && j.dueAt <= now.getTime(),
      )
      .sort((a, b) => (a.dueAt ?? 0) - (b.dueAt ?? 0))
      .slice(0, limit)
      .map((j) => structuredClone(j));
  }

  private write(job: Job, patch: JobPatch & { status?: JobStatus }): Job {
    const stored = this.jobs.get(job.id);
    if (!stored || stored.status !== job.status || stored.version !== job.version) {
      throw new StaleWriteError(`job ${job.id} changed`);
    }
    const next: Job = {
      ...stored,
      ...patch,
      version: stored.version + 1,
      updatedAt: this.clock.now().toISOString(),
    };
    if (isTerminal(next.status) && typeof patch.dueAt !== "number") next.dueAt = null;
    this.jobs.set(job.id, structuredClone(next));
    return structuredClone(next);
  }
}

export class FakeQueue implements Queue {
  readonly sent: { message: Record<string, unknown>; options?: SendOptions }[] = [];
  failNext = 0;

  async send(message: Record<string, unknown>, options?: SendOptions): Promise<void> {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error("queue unavailable");
    }
    this.sent.push({ message, ...(options && { options }) });
  }
}

/**
 * A provider scripted with results: each submit/fetch takes the next scripted answer (or the
 * fallback when the script is empty) and records what it was called with.
 */
export class FakeProvider implements Provider {
  readonly submissions: ProviderSubmission[] = [];
  readonly fetches: { providerId: string; fetchUrl: string | null }[] = [];
  readonly submitResults: ProviderResult[] = [];
  readonly fetchResults: ProviderResult[] = [];

  constructor(
    private readonly fallback: ProviderResult = { kind: "indeterminate", reason: "nothing scripted" },
  ) {}

  scriptSubmit(...results: ProviderResult[]): this {
    this.submitResults.push(...results);
    return this;
  }

  scriptFetch(...results: ProviderResult[]): this {
    this.fetchResults.push(...results);
    return this;
  }

  async submit(submission: ProviderSubmission): Promise<ProviderResult> {
    this.submissions.push(structuredClone(submission));
    return structuredClone(this.submitResults.shift() ?? this.fallback);
  }

  async fetch(providerId: string, fetchUrl: string | null): Promise<ProviderResult> {
    this.fetches.push({ providerId, fetchUrl });
    return structuredClone(this.fetchResults.shift() ?? this.fallback);
  }
}

/** The capacity gate with the DynamoDB gate's semantics: keyed by job id, re-acquire keeps the first time. */
export class InMemoryCapacityGate implements CapacityGate {
  readonly slots = new Map<string, number>();

  constructor(public limit: number) {}

  async tryAcquire(jobId: string, now: Date): Promise<boolean> {
    if (this.slots.has(jobId)) return true;
    if (this.slots.size >= this.limit) return false;
    this.slots.set(jobId, now.getTime());
    return true;
  }

  async release(jobId: string): Promise<void> {
    this.slots.delete(jobId);
  }

  async holders(): Promise<Record<string, number>> {
    return Object.fromEntries(this.slots);
  }
}

let jobSeq = 0;
/** A stored-shape job (queued, version 1, one hour to its deadline) to override one field at a time. */
export function buildJob(clock: Clock, overrides: Partial<Job> = {}): Job {
  const now = clock.now();
  jobSeq++;
  return {
    id: `01JOB${String(jobSeq).padStart(21, "0")}`,
    tenantId: "tenant-a",
    status: "queued",
    version: 1,
    createdAt: now.toISOString(),
    updatedAt: now.toISOString(),
    trackId: "client-track",
    metadata: {},
    provider: "auto",
    request: {
      model_id: "sd15",
      controlnet_model: "canny",
      controlnet_type: "canny",
      prompt: "a lighthouse at dusk",
      control_image: "https://images.example.com/edges.png",
    } as Job["request"],
    webhook: "https://client.example/hook",
    deadlineAt: new Date(now.getTime() + 3_600_000).toISOString(),
    attempts: [],
    outputs: [],
    error: null,
    dueAt: now.getTime() + 300_000,
    ...overrides,
  };
}
