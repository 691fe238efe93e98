import { Readable } from "node:stream";
import type { BreakerSettings } from "../../shared/adapters/dynamo/circuit-breaker.ts";
import { decodeCursor, encodeCursor } from "../../shared/adapters/dynamo/job-listing.ts";
import {
  type AdmissionSettings,
  DEFAULT_ADMISSION,
  type Priority,
  type SlotHolder,
  type WaitingPlace,
  waitingSortKey,
} from "../../shared/domain/admission.ts";
import {
  ConflictError,
  NotFoundError,
  StaleWriteError,
  UnavailableError,
} from "../../shared/domain/errors.ts";
import type { LifecycleEvent } from "../../shared/domain/events.ts";
import { newJobId } from "../../shared/domain/ids.ts";
import type { Job, JobStatus } from "../../shared/domain/job.ts";
import {
  DEFAULT_JOB_RULES,
  dueTime,
  type JobChange,
  type JobRules,
  planJobChange,
  planNewJob,
} from "../../shared/domain/job-change.ts";
import type { ModelCatalog } from "../../shared/domain/model-catalog.ts";
import type { ProviderId } from "../../shared/domain/providers.ts";
import type {
  ApiKeyRecord,
  ApiKeyStore,
  BreakerState,
  CapacityGate,
  CircuitBreaker,
  Clock,
  CreateJobResult,
  DeliveryAttempt,
  EventPublisher,
  GateSnapshot,
  IdempotencyRecord,
  JobPage,
  JobPatch,
  JobStore,
  Lane,
  ListJobsQuery,
  NotificationRecord,
  NotificationState,
  NotificationStore,
  ObjectStore,
  PutObjectOptions,
  Queue,
  SendOptions,
  SlotOwner,
  StoredObject,
  WaitingEntry,
  WaitingList,
  WebhookDeliveryResult,
  WebhookSender,
  WebhookSettings,
  WebhookSettingsStore,
} from "../../shared/ports/index.ts";
import type {
  Provider,
  ProviderBinding,
  ProviderCapabilities,
  ProviderFetch,
  ProviderResult,
  ProviderSubmission,
} from "../../shared/ports/provider.ts";
import { AUTO_ROUTE, ProviderSet } from "../../shared/providers/registry.ts";
import { SelfHostedProvider } from "../../shared/providers/self-hosted.ts";
import type { WorkerJobMessage } from "../../shared/schemas/messages.ts";
import { decodeMessage, encodeMessage, type QueueDefinition } from "../../shared/schemas/queue.ts";
import { TEST_MODELS } from "./settings.ts";

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

/**
 * The job store in memory, held to the DynamoDB store's contract (test/support/job-store-contract.ts):
 * what a change makes of a job is `planJobChange`'s, written only over the status and version read.
 */
export class InMemoryJobStore implements JobStore {
  readonly jobs = new Map<string, Job>();
  readonly idempotency = new Map<string, { jobId: string; requestHash: string; expiresAt: number }>();
  /** Epoch seconds after which a finished job may be deleted (what DynamoDB TTL would act on). */
  readonly expiries = new Map<string, number>();

  constructor(
    private readonly clock: Clock,
    private readonly rules: JobRules = DEFAULT_JOB_RULES,
  ) {}

  async create(job: Job, idem?: IdempotencyRecord): Promise<CreateJobResult> {
    const key = idem && `${job.tenantId}#${idem.keyHash}`;
    if (key && idem) {
      const existing = this.idempotency.get(key);
      if (existing && existing.expiresAt >= this.clock.now().getTime() / 1000) {
        return {
          created: false,
          existingJobId: existing.jobId,
          sameRequest: existing.requestHash === idem.requestHash,
        };
      }
    }
    if (this.jobs.has(job.id))
      throw new ConflictError("JOB_EXISTS", `A job with id ${job.id} already exists.`);
    if (key && idem) {
      this.idempotency.set(key, { jobId: job.id, requestHash: idem.requestHash, expiresAt: idem.expiresAt });
    }
    const plan = planNewJob(job, this.clock.now(), this.rules);
    this.jobs.set(job.id, structuredClone(plan.job));
    if (plan.expiresAt !== undefined) this.expiries.set(job.id, plan.expiresAt);
    return { created: true, job: structuredClone(plan.job) };
  }

  async get(id: string): Promise<Job | null> {
    const job = this.jobs.get(id);
    return job ? structuredClone(job) : null;
  }

  async listByTenant(tenantId: string, query: ListJobsQuery): Promise<JobPage> {
    const below = query.cursor === undefined ? undefined : decodeCursor(query.cursor, tenantId);
    const limit = Math.max(1, Math.floor(query.limit));
    const all = [...this.jobs.values()]
      .filter((j) => j.tenantId === tenantId && (!query.status || j.status === query.status))
      .filter((j) => below === undefined || j.id < below)
      .sort((a, b) => (a.id < b.id ? 1 : -1));
    const page = all.slice(0, limit);
    const last = page.at(-1);
    return {
      jobs: page.map((j) => structuredClone(j)),
      nextCursor: last && all.length > limit ? encodeCursor(last.id, tenantId) : null,
    };
  }

  async transition(job: Job, to: JobStatus, patch: JobPatch = {}): Promise<Job> {
    return this.write(job, { to, patch });
  }

  async update(job: Job, patch: JobPatch): Promise<Job> {
    return this.write(job, { patch });
  }

  async findDue(now: Date, limit: number): Promise<Job[]> {
    const due = (job: Job) => dueTime(job) ?? Number.POSITIVE_INFINITY;
    return [...this.jobs.values()]
      .filter((j) => due(j) <= now.getTime())
      .sort((a, b) => due(a) - due(b) || (a.id < b.id ? -1 : 1))
      .slice(0, Math.max(0, limit))
      .map((j) => structuredClone(j));
  }

  private write(job: Job, change: JobChange): Job {
    const plan = planJobChange(job, change, this.clock.now(), this.rules);
    const stored = this.jobs.get(job.id);
    if (!stored || stored.status !== job.status || stored.version !== job.version) {
      throw new StaleWriteError(`job ${job.id} changed`);
    }
    this.jobs.set(job.id, structuredClone(plan.job));
    if (plan.expiresAt !== undefined) this.expiries.set(job.id, plan.expiresAt);
    return structuredClone(plan.job);
  }
}

/**
 * A queue in memory, built from the queue's declaration as `SqsQueue` is: a message that fails the
 * schema is refused with InvalidMessageError before anything else (test/integration/queue-contract.test.ts
 * runs both against one contract). `sent` holds each message as its consumer would read it (parsed
 * back from the body); `failNext` makes the next sends throw as an unavailable queue would.
 */
export class FakeQueue<M> implements Queue<M> {
  readonly sent: { message: M; options?: SendOptions }[] = [];
  failNext = 0;

  constructor(readonly definition: QueueDefinition<M>) {}

  async send(message: M, options?: SendOptions): Promise<void> {
    const body = encodeMessage(this.definition, message);
    if (this.failNext > 0) {
      this.failNext--;
      throw new UnavailableError("QUEUE_UNAVAILABLE", `${this.definition.name} queue unavailable`);
    }
    this.sent.push({ message: decodeMessage(this.definition, body), ...(options && { options }) });
  }
}

/**
 * A provider scripted with results: each submit/fetch takes the next scripted answer (or the
 * fallback when the script is empty) and records what it was called with. ModelsLab's id and
 * capabilities unless told otherwise.
 */
export class FakeProvider implements Provider {
  readonly id: ProviderId;
  readonly capabilities: ProviderCapabilities;
  readonly submitTimeoutSeconds = 90;
  readonly submissions: ProviderSubmission[] = [];
  readonly fetches: ProviderFetch[] = [];
  readonly submitResults: ProviderResult[] = [];
  readonly fetchResults: ProviderResult[] = [];

  constructor(
    private readonly fallback: ProviderResult = { kind: "indeterminate", reason: "nothing scripted" },
    options: { id?: ProviderId; capabilities?: ProviderCapabilities } = {},
  ) {
    this.id = options.id ?? "modelslab";
    this.capabilities = options.capabilities ?? { fetch: true, callback: true, resubmit: false };
  }

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

  async fetch(request: ProviderFetch): Promise<ProviderResult> {
    this.fetches.push(structuredClone(request));
    return structuredClone(this.fetchResults.shift() ?? this.fallback);
  }
}

/**
 * The providers of a use-case test, as the registry binds them: ModelsLab (a scripted FakeProvider)
 * with its gate and, when given, its breaker; the self-hosted fleet (the real SelfHostedProvider on a
 * fake queue) with its own gate, when a fallback queue is given. `auto` routes ModelsLab first.
 */
export function fakeProviders(options: {
  provider: FakeProvider;
  gate: InMemoryCapacityGate;
  breaker?: InMemoryCircuitBreaker;
  fallbackQueue?: FakeQueue<WorkerJobMessage>;
  fleetGate?: InMemoryCapacityGate;
  waiting?: InMemoryWaitingList;
  fleetWaiting?: InMemoryWaitingList;
  /** The fleet's catalog (TEST_MODELS by default). */
  models?: ModelCatalog;
}): ProviderSet {
  const bindings: ProviderBinding[] = [
    {
      provider: options.provider,
      gate: options.gate,
      waiting: options.waiting ?? new InMemoryWaitingList(),
      ...(options.breaker && { breaker: options.breaker }),
    },
  ];
  if (options.fallbackQueue) {
    bindings.push({
      provider: new SelfHostedProvider(options.fallbackQueue, options.models ?? TEST_MODELS),
      gate: options.fleetGate ?? new InMemoryCapacityGate(100),
      waiting: options.fleetWaiting ?? new InMemoryWaitingList(),
    });
  }
  return new ProviderSet(bindings, AUTO_ROUTE);
}

/** The capacity gate with the DynamoDB gate's semantics: keyed by job id, re-acquire keeps the first time. */
export class InMemoryCapacityGate implements CapacityGate {
  readonly slots = new Map<string, number>();
  readonly owners = new Map<string, SlotOwner>();
  avgHoldMs: number | null = null;
  /** The most slots ever held at once (a test's check that the limit held). */
  peak = 0;

  constructor(public limit: number) {}

  async tryAcquire(jobId: string, now: Date, owner?: SlotOwner): Promise<boolean> {
    if (this.slots.has(jobId)) return true;
    if (this.slots.size >= this.limit) return false;
    this.slots.set(jobId, now.getTime());
    if (owner) this.owners.set(jobId, owner);
    this.peak = Math.max(this.peak, this.slots.size);
    return true;
  }

  async release(jobId: string, now: Date = new Date()): Promise<GateSnapshot> {
    const at = this.slots.get(jobId);
    if (at !== undefined) {
      const held = Math.max(0, now.getTime() - at);
      this.avgHoldMs =
        this.avgHoldMs === null ? held : Math.round(this.avgHoldMs + (held - this.avgHoldMs) * 0.2);
    }
    this.slots.delete(jobId);
    this.owners.delete(jobId);
    return this.snapshot();
  }

  async holders(): Promise<Record<string, number>> {
    return Object.fromEntries(this.slots);
  }

  async snapshot(): Promise<GateSnapshot> {
    const holders: SlotHolder[] = [...this.slots].map(([jobId, acquiredAt]) => {
      const owner = this.owners.get(jobId);
      return { jobId, acquiredAt, tenant: owner?.tenant ?? null, key: owner?.key ?? null };
    });
    return { limit: this.limit, holders, avgHoldMs: this.avgHoldMs };
  }
}

/** The waiting list with the DynamoDB adapter's semantics (test/support/waiting-list-contract.ts). */
export class InMemoryWaitingList implements WaitingList {
  /** Entries by lane id (`tenant#key`), each lane kept in sort-key order. */
  readonly entries = new Map<string, WaitingEntry[]>();
  readonly listings = new Map<string, Lane>();
  /** Lane listing writes (a test's check that enqueues do not write it every time). */
  laneWrites = 0;

  constructor(
    private readonly settings: (tenant: string) => AdmissionSettings | Promise<AdmissionSettings> = () =>
      DEFAULT_ADMISSION,
  ) {}

  async enqueue(
    entry: { jobId: string; tenant: string; key: string; priority: Priority; enqueuedAt: number },
    now: Date,
  ): Promise<WaitingEntry> {
    const id = `${entry.tenant}#${entry.key}`;
    const listing = this.listings.get(id);
    if (!listing || listing.touchedAt < now.getTime() - 60_000) {
      const settings = await this.settings(entry.tenant);
      this.listings.set(id, { tenant: entry.tenant, key: entry.key, ...settings, touchedAt: now.getTime() });
      this.laneWrites++;
    }
    const stored: WaitingEntry = {
      jobId: entry.jobId,
      tenant: entry.tenant,
      key: entry.key,
      sortKey: waitingSortKey(entry.priority, entry.enqueuedAt, entry.jobId),
      enqueuedAt: entry.enqueuedAt,
    };
    await this.restore(stored);
    return { ...stored };
  }

  async restore(entry: WaitingEntry): Promise<void> {
    const id = `${entry.tenant}#${entry.key}`;
    const lane = (this.entries.get(id) ?? []).filter((e) => e.sortKey !== entry.sortKey);
    lane.push({ ...entry });
    lane.sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
    this.entries.set(id, lane);
  }

  async lanes(limit: number): Promise<Lane[]> {
    return [...this.listings.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .slice(0, limit)
      .map(([, lane]) => ({ ...lane }));
  }

  async head(tenant: string, key: string, limit: number): Promise<WaitingEntry[]> {
    return (this.entries.get(`${tenant}#${key}`) ?? []).slice(0, limit).map((e) => ({ ...e }));
  }

  async remove(entry: WaitingPlace): Promise<boolean> {
    const id = `${entry.tenant}#${entry.key}`;
    const lane = this.entries.get(id) ?? [];
    const index = lane.findIndex((e) => e.sortKey === entry.sortKey);
    if (index < 0) return false;
    lane.splice(index, 1);
    return true;
  }

  async countAhead(entry: WaitingPlace, cap: number): Promise<number> {
    const lane = this.entries.get(`${entry.tenant}#${entry.key}`) ?? [];
    return Math.min(cap, lane.filter((e) => e.sortKey < entry.sortKey).length);
  }

  async dropLane(lane: Pick<Lane, "tenant" | "key" | "touchedAt">): Promise<boolean> {
    const id = `${lane.tenant}#${lane.key}`;
    if (this.listings.get(id)?.touchedAt !== lane.touchedAt) return false;
    this.listings.delete(id);
    return true;
  }

  /** Every waiting job id. */
  waitingJobIds(): string[] {
    return [...this.entries.values()].flat().map((e) => e.jobId);
  }
}

/** The circuit breaker with the DynamoDB breaker's semantics (sliding window, one probe when half-open). */
export class InMemoryCircuitBreaker implements CircuitBreaker {
  failures: number[] = [];
  openedAt: number | null = null;
  probeAt: number | null = null;

  constructor(
    public settings: BreakerSettings = { failureThreshold: 3, windowSeconds: 60, coolDownSeconds: 30 },
  ) {}

  async state(now: Date): Promise<BreakerState> {
    if (this.openedAt === null) return "closed";
    return now.getTime() < this.openedAt + this.settings.coolDownSeconds * 1000 ? "open" : "half-open";
  }

  async claimProbe(now: Date): Promise<boolean> {
    const cooled = now.getTime() - this.settings.coolDownSeconds * 1000;
    if (this.openedAt === null || this.openedAt > cooled) return false;
    if (this.probeAt !== null && this.probeAt > cooled) return false;
    this.probeAt = now.getTime();
    return true;
  }

  async record(outcome: "success" | "failure", now: Date, probe = false): Promise<void> {
    const t = now.getTime();
    if (probe) {
      if (this.probeAt === null) return;
      this.probeAt = null;
      if (outcome === "success") {
        this.openedAt = null;
        this.failures = [];
      } else this.openedAt = t;
      return;
    }
    if (outcome === "success") return;
    this.failures.push(t);
    this.failures = this.failures.filter((at) => at > t - this.settings.windowSeconds * 1000);
    if (this.failures.length >= this.settings.failureThreshold && this.openedAt === null) {
      this.openedAt = t;
      this.probeAt = null;
    }
  }

  /** Opens it now (tests). */
  open(now: Date): void {
    this.openedAt = now.getTime();
    this.probeAt = null;
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

/**
 * Notification records with the DynamoDB store's semantics (test/support/notification-store-contract.ts):
 * create-if-absent, writes guarded on the tries seen, a job's records listed by id.
 */
export class InMemoryNotificationStore implements NotificationStore {
  readonly records = new Map<string, NotificationRecord>();

  private static key = (jobId: string, id: string) => `${jobId}#${id}`;

  async createIfAbsent(
    record: NotificationRecord,
  ): Promise<{ record: NotificationRecord; created: boolean }> {
    const key = InMemoryNotificationStore.key(record.jobId, record.id);
    const existing = this.records.get(key);
    if (existing) return { record: structuredClone(existing), created: false };
    this.records.set(key, structuredClone(record));
    return { record: structuredClone(record), created: true };
  }

  async get(jobId: string, id: string): Promise<NotificationRecord | null> {
    const record = this.records.get(InMemoryNotificationStore.key(jobId, id));
    return record ? structuredClone(record) : null;
  }

  async listForJob(jobId: string): Promise<NotificationRecord[]> {
    return [...this.records.values()]
      .filter((r) => r.jobId === jobId)
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((r) => structuredClone(r));
  }

  async recordAttempt(
    record: NotificationRecord,
    attempt: DeliveryAttempt,
    state: NotificationState,
  ): Promise<NotificationRecord> {
    return this.write(record, (stored) => ({
      ...stored,
      attempts: [...stored.attempts, structuredClone(attempt)],
      state,
    }));
  }

  async reopen(record: NotificationRecord): Promise<NotificationRecord> {
    return this.write(record, (stored) => ({
      ...stored,
      state: "pending",
      roundStart: stored.attempts.length + 1,
    }));
  }

  private write(
    record: NotificationRecord,
    change: (stored: NotificationRecord) => NotificationRecord,
  ): NotificationRecord {
    const key = InMemoryNotificationStore.key(record.jobId, record.id);
    const stored = this.records.get(key);
    if (!stored || stored.attempts.length !== record.attempts.length) {
      throw new StaleWriteError(`notification ${record.id} changed meanwhile`);
    }
    const next = change(stored);
    this.records.set(key, structuredClone(next));
    return structuredClone(next);
  }
}

/**
 * Tenant webhook settings with the DynamoDB tenant store's rules (test/support/webhook-settings-contract.ts):
 * retired secrets are not returned, and a tenant it does not hold is TENANT_NOT_FOUND.
 */
export class InMemoryWebhookSettings implements WebhookSettingsStore {
  readonly tenants = new Map<string, WebhookSettings>();

  constructor(private readonly clock: Clock) {}

  /** A tenant with no URL and no secrets, as DynamoTenantStore.createTenant leaves one. */
  addTenant(tenantId: string): this {
    if (!this.tenants.has(tenantId)) this.tenants.set(tenantId, { url: null, secrets: [] });
    return this;
  }

  async getWebhookSettings(tenantId: string): Promise<WebhookSettings> {
    return this.current(tenantId);
  }

  private stored(tenantId: string): WebhookSettings {
    const settings = this.tenants.get(tenantId);
    if (!settings) throw new NotFoundError("TENANT_NOT_FOUND", `Tenant ${tenantId} does not exist.`);
    return settings;
  }

  private current(tenantId: string): WebhookSettings {
    const settings = this.stored(tenantId);
    const now = this.clock.now().toISOString();
    return {
      url: settings.url,
      secrets: settings.secrets
        .filter((s) => s.retiresAt === null || s.retiresAt > now)
        .map((s) => ({ ...s })),
    };
  }

  async setWebhookUrl(tenantId: string, url: string | null): Promise<void> {
    this.tenants.set(tenantId, { ...this.stored(tenantId), url });
  }

  /** Read and write with no await between: concurrent rotations all land, as the store's conditional write ensures. */
  async addWebhookSecret(tenantId: string, secret: string, now: Date, previousRetireAt: Date): Promise<void> {
    const current = this.current(tenantId);
    const retire = previousRetireAt.toISOString();
    this.tenants.set(tenantId, {
      url: current.url,
      secrets: [
        { secret, createdAt: now.toISOString(), retiresAt: null },
        ...current.secrets.map((s) => ({
          ...s,
          retiresAt: s.retiresAt && s.retiresAt < retire ? s.retiresAt : retire,
        })),
      ],
    });
  }
}

/** Records published lifecycle events; `failNext` makes the next publishes throw. */
export class FakeEventPublisher implements EventPublisher {
  readonly published: LifecycleEvent[] = [];
  failNext = 0;

  async publish(events: LifecycleEvent[]): Promise<void> {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error("event bus unavailable");
    }
    this.published.push(...structuredClone(events));
  }
}

/**
 * A webhook sender scripted with statuses (null: no answer): each send takes the next one, or the
 * fallback when the script is empty, and records what it was called with.
 */
export class FakeWebhookSender implements WebhookSender {
  readonly sent: { url: string; headers: Record<string, string>; body: string }[] = [];
  readonly script: (number | null)[] = [];

  constructor(private readonly fallback: number | null = 200) {}

  answer(...statuses: (number | null)[]): this {
    this.script.push(...statuses);
    return this;
  }

  async send(url: string, headers: Record<string, string>, body: string): Promise<WebhookDeliveryResult> {
    this.sent.push({ url, headers: { ...headers }, body });
    const status = this.script.length > 0 ? (this.script.shift() ?? null) : this.fallback;
    return { status, error: status === null ? "no answer" : null, durationMs: 12.4 };
  }
}

/** An object store in memory; presigned URLs are fake but deterministic. */
export class InMemoryObjectStore implements ObjectStore {
  readonly objects = new Map<
    string,
    { body: Buffer; contentType: string; metadata: Record<string, string> }
  >();

  constructor(private readonly bucket = "test-bucket") {}

  async put(key: string, body: Readable | Uint8Array, options: PutObjectOptions): Promise<void> {
    let bytes: Buffer;
    if (body instanceof Uint8Array) bytes = Buffer.from(body);
    else {
      const chunks: Buffer[] = [];
      for await (const chunk of body) chunks.push(Buffer.from(chunk as Uint8Array));
      bytes = Buffer.concat(chunks);
    }
    this.objects.set(key, {
      body: bytes,
      contentType: options.contentType,
      metadata: { ...options.metadata },
    });
  }

  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }

  async list(prefix: string, limit: number): Promise<string[]> {
    return [...this.objects.keys()]
      .filter((key) => key.startsWith(prefix))
      .sort()
      .slice(0, limit);
  }

  async head(key: string): Promise<StoredObject | null> {
    const object = this.objects.get(key);
    if (!object) return null;
    return {
      key,
      contentType: object.contentType,
      bytes: object.body.length,
      metadata: { ...object.metadata },
    };
  }

  async get(key: string): Promise<Readable | null> {
    const object = this.objects.get(key);
    return object ? Readable.from([object.body]) : null;
  }

  async presignGet(key: string, expiresSeconds: number): Promise<string> {
    return `https://${this.bucket}.s3.example/${key}?X-Amz-Expires=${expiresSeconds}`;
  }

  async presignPut(key: string, contentType: string, expiresSeconds: number): Promise<string> {
    return `https://${this.bucket}.s3.example/${key}?put&type=${encodeURIComponent(contentType)}&X-Amz-Expires=${expiresSeconds}`;
  }
}

/** A tenant's API keys in memory, held to the DynamoDB store's contract (test/support/api-key-store-contract.ts). */
export class InMemoryApiKeys implements ApiKeyStore {
  /** tenant id → its keys, oldest first (each with its hash). */
  readonly tenants = new Map<string, (ApiKeyRecord & { keyHash: string })[]>();

  constructor(private readonly clock: Clock) {}

  addTenant(tenantId: string): this {
    if (!this.tenants.has(tenantId)) this.tenants.set(tenantId, []);
    return this;
  }

  async createApiKey(
    tenantId: string,
    key: { keyHash: string; prefix: string; name: string | null },
    limit: number,
  ): Promise<ApiKeyRecord> {
    const keys = this.tenants.get(tenantId);
    if (!keys) throw new NotFoundError("TENANT_NOT_FOUND", `Tenant ${tenantId} does not exist.`);
    if ([...this.tenants.values()].some((all) => all.some((k) => k.keyHash === key.keyHash))) {
      throw new ConflictError("API_KEY_EXISTS", "This API key is already registered.");
    }
    if (keys.length >= limit) throw new ConflictError("API_KEY_LIMIT_REACHED", `At most ${limit} API keys.`);
    const now = this.clock.now();
    const record = {
      id: `key_${newJobId(now.getTime())}`,
      name: key.name,
      prefix: key.prefix,
      createdAt: now.toISOString(),
    };
    keys.push({ ...record, keyHash: key.keyHash });
    return { ...record };
  }

  async listApiKeys(tenantId: string, limit: number): Promise<ApiKeyRecord[]> {
    return (this.tenants.get(tenantId) ?? []).slice(0, limit).map(({ keyHash: _, ...record }) => record);
  }

  async revokeApiKey(tenantId: string, id: string): Promise<void> {
    const keys = this.tenants.get(tenantId) ?? [];
    const index = keys.findIndex((k) => k.id === id);
    if (index < 0) throw new NotFoundError("API_KEY_NOT_FOUND", `No API key ${id} for this tenant.`);
    if (keys.length === 1) throw new ConflictError("LAST_API_KEY", "This is the tenant's only API key.");
    keys.splice(index, 1);
  }
}
