/**
 * Small ports the use cases depend on. Adapters in `shared/adapters/` implement them against AWS;
 * unit tests use the in-memory fakes in `test/support/fakes.ts`.
 */
import type { AdmissionSettings, LaneView, Priority, SlotHolder, WaitingPlace } from "../domain/admission.ts";
import type { LifecycleEvent, NotificationType } from "../domain/events.ts";
import type { Job, JobStatus } from "../domain/job.ts";
import type { JobPatch } from "../domain/job-change.ts";

export type { JobPatch } from "../domain/job-change.ts";

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

export interface IdempotencyRecord {
  /** sha256 of the tenant's Idempotency-Key header. */
  keyHash: string;
  /** sha256 of the canonical request body. */
  requestHash: string;
  /** Epoch seconds after which the key may be reused. */
  expiresAt: number;
}

export type CreateJobResult =
  | { created: true; job: Job }
  | { created: false; existingJobId: string; sameRequest: boolean };

export interface ListJobsQuery {
  status?: JobStatus;
  limit: number;
  /**
   * Opaque cursor returned by a previous page to the same tenant; the store rejects a malformed one, or
   * one issued to another tenant, with a ValidationError (INVALID_CURSOR).
   */
  cursor?: string;
}

export interface JobPage {
  jobs: Job[];
  nextCursor: string | null;
}

export interface JobStore {
  /** Writes the job, and the idempotency record when given, atomically: both or neither. */
  create(job: Job, idempotency?: IdempotencyRecord): Promise<CreateJobResult>;
  get(id: string): Promise<Job | null>;
  listByTenant(tenantId: string, query: ListJobsQuery): Promise<JobPage>;
  /**
   * Moves `job` to `to` only if its stored status and version are still `job.status` and `job.version`
   * (throws StaleWriteError otherwise). What the job becomes is `planJobChange`'s (domain/job-change.ts):
   * e.g. terminal states clear `dueAt` unless the notification is pending. Returns the job as written.
   */
  transition(job: Job, to: JobStatus, patch?: JobPatch): Promise<Job>;
  /** Same-status update guarded by status and version (e.g. a new `dueAt`), planned the same way. */
  update(job: Job, patch: JobPatch): Promise<Job>;
  /**
   * Jobs due (`dueTime`) at or before `now`: non-terminal ones, and terminal ones whose notification is
   * pending; earliest first, read from an index (never a scan).
   */
  findDue(now: Date, limit: number): Promise<Job[]>;
}

export interface Tenant {
  id: string;
  name: string;
  createdAt: string;
}

export interface TenantStore {
  /** Looks a tenant up by the sha256 hex of its API key; keys themselves are never stored. */
  findByApiKeyHash(keyHash: string): Promise<Tenant | null>;
  createTenant(tenant: Tenant): Promise<void>;
  /**
   * Registers a key (by its hash) to the tenant, listed with `prefix` (its first characters); adding
   * the same key to the same tenant again changes nothing. No bound on the count: operator tools.
   */
  addApiKey(tenantId: string, keyHash: string, prefix?: string): Promise<void>;
}

/** A tenant's admission settings (weight, max concurrency): operators set them, admission reads them. */
export interface TenantAdmissionStore {
  admissionSettings(tenantId: string): Promise<AdmissionSettings>;
  /** ValidationError for settings out of bounds; NotFoundError TENANT_NOT_FOUND for an unknown tenant. */
  setAdmissionSettings(tenantId: string, settings: AdmissionSettings): Promise<void>;
}

/** An API key as its tenant sees it listed: never the key nor its hash. */
export interface ApiKeyRecord {
  id: string;
  name: string | null;
  /** The key's first characters, to tell keys apart. */
  prefix: string;
  createdAt: string;
}

/** A tenant's own API keys (`/v1/api-keys`). */
export interface ApiKeyStore {
  /**
   * Registers a new key (by its hash) to the tenant, unless it already has `limit` keys listed
   * (ConflictError API_KEY_LIMIT_REACHED); a hash registered already is API_KEY_EXISTS.
   */
  createApiKey(
    tenantId: string,
    key: { keyHash: string; prefix: string; name: string | null },
    limit: number,
  ): Promise<ApiKeyRecord>;
  /** The tenant's keys, oldest first, at most `limit`. */
  listApiKeys(tenantId: string, limit: number): Promise<ApiKeyRecord[]>;
  /**
   * Removes the key: it no longer resolves to the tenant. NotFoundError API_KEY_NOT_FOUND for a key
   * the tenant does not have; ConflictError LAST_API_KEY for its only key (it would lock itself out).
   */
  revokeApiKey(tenantId: string, id: string): Promise<void>;
}

export interface SendOptions {
  delaySeconds?: number;
}

/**
 * One queue of messages of type M, built from the queue's declaration (`shared/schemas/messages.ts`):
 * a message that fails the queue's schema is refused with InvalidMessageError and never sent.
 */
export interface Queue<M> {
  send(message: M, options?: SendOptions): Promise<void>;
}

/** Whose job a slot is taken for: its tenant and concurrency key (fair share counts by these). */
export interface SlotOwner {
  tenant: string;
  key: string;
}

/** The gate as one read sees it: its limit, who holds its slots, and the measured time a slot is held. */
export interface GateSnapshot {
  limit: number;
  holders: SlotHolder[];
  /** A moving average of how long a slot is held (acquire to release), ms; null before the first release. */
  avgHoldMs: number | null;
}

/**
 * The provider capacity gate: at most `limit` jobs hold a slot at once, across every dispatcher.
 * Slots are keyed by job id, so acquiring twice for one job is harmless and a release cannot free
 * another job's slot.
 */
export interface CapacityGate {
  /** True when `jobId` holds a slot (newly or already); `owner` is recorded with a new slot. */
  tryAcquire(jobId: string, now: Date, owner?: SlotOwner): Promise<boolean>;
  /**
   * Frees `jobId`'s slot (nothing when it holds none) and, in the same write, folds how long it was
   * held into the gate's average. Returns the gate as left by the release.
   */
  release(jobId: string, now?: Date): Promise<GateSnapshot>;
  /** Current holders and when they acquired (epoch ms), for self-healing of lost releases. */
  holders(): Promise<Record<string, number>>;
  /** The gate in one strongly consistent read. */
  snapshot(): Promise<GateSnapshot>;
}

/** One job waiting in a lane of a provider's waiting list. */
export interface WaitingEntry extends WaitingPlace {
  jobId: string;
}

/** A lane as listed: its tenant, key and the tenant's settings copied at its last touch (epoch ms). */
export interface Lane extends LaneView {
  touchedAt: number;
}

/**
 * One provider's waiting list: jobs that found its gate full wait here, at no cost, until a release
 * admits them (shared/usecases/admission.ts). Lanes are a tenant's jobs under one concurrency key, in
 * priority then age order; the list of lanes is read to share slots fairly among them.
 */
export interface WaitingList {
  /**
   * Puts the job in its lane. The lane's listing (with the tenant's admission settings) is written
   * only when absent or last touched more than a minute ago, so no one item takes a write per job.
   */
  enqueue(
    entry: { jobId: string; tenant: string; key: string; priority: Priority; enqueuedAt: number },
    now: Date,
  ): Promise<WaitingEntry>;
  /** The provider's lanes (at most `limit`), possibly empty ones among them. */
  lanes(limit: number): Promise<Lane[]>;
  /** The first `limit` entries of a lane, in admission order. */
  head(tenant: string, key: string, limit: number): Promise<WaitingEntry[]>;
  /** Puts back an entry `remove` took (same place): its admission could not take a slot after all. */
  restore(entry: WaitingEntry): Promise<void>;
  /** Deletes the entry; true only for the call that deleted it (it owns the job's admission). */
  remove(entry: WaitingPlace): Promise<boolean>;
  /** How many entries wait before `entry` in its lane, counting at most `cap`. */
  countAhead(entry: WaitingPlace, cap: number): Promise<number>;
  /** Drops a lane's listing if it was not touched since `touchedAt` (an enqueue meanwhile keeps it). */
  dropLane(lane: Pick<Lane, "tenant" | "key" | "touchedAt">): Promise<boolean>;
}

/** What the circuit breaker says about calling the provider now. */
export type BreakerState = "closed" | "open" | "half-open";

/**
 * A circuit breaker on the provider, shared by every dispatcher: failures (retryable rejections,
 * unknown outcomes) are counted in a sliding window; past a threshold it opens, after a cool-down it
 * is half-open and lets exactly one probe through (`claimProbe`), and a probe's success closes it.
 */
export interface CircuitBreaker {
  state(now: Date): Promise<BreakerState>;
  /** True for the one caller that may probe the provider while half-open (a conditional write). */
  claimProbe(now: Date): Promise<boolean>;
  /** `probe`: this outcome is the probe's (it closes or re-opens the breaker). */
  record(outcome: "success" | "failure", now: Date, probe?: boolean): Promise<void>;
}

export interface StoredObject {
  key: string;
  contentType: string | null;
  bytes: number;
  /** User metadata (x-amz-meta-*), lower-case keys. */
  metadata: Record<string, string>;
}

export interface PutObjectOptions {
  contentType: string;
  metadata?: Record<string, string>;
}

/**
 * The outputs bucket. `put` streams: a Readable body is uploaded in bounded parts and never held
 * whole in memory. Writing a key again replaces the object.
 */
export interface ObjectStore {
  put(
    key: string,
    body: import("node:stream").Readable | Uint8Array,
    options: PutObjectOptions,
  ): Promise<void>;
  /** The object's size, type and metadata, or null when there is none. */
  head(key: string): Promise<StoredObject | null>;
  /** The object's bytes as a stream, or null when there is none. */
  get(key: string): Promise<import("node:stream").Readable | null>;
  /** Removes the object; removing one that is not there is not an error. */
  delete(key: string): Promise<void>;
  /** Keys that start with `prefix`, in key order, at most `limit` (1..1000) of them. */
  list(prefix: string, limit: number): Promise<string[]>;
  presignGet(key: string, expiresSeconds: number): Promise<string>;
  presignPut(key: string, contentType: string, expiresSeconds: number): Promise<string>;
}

export interface EventPublisher {
  publish(events: LifecycleEvent[]): Promise<void>;
}

/** Webhook settings of a tenant: its default endpoint and the signing secrets in force (newest first). */
export interface WebhookSettings {
  url: string | null;
  secrets: { secret: string; createdAt: string; retiresAt: string | null }[];
}

export interface WebhookSettingsStore {
  getWebhookSettings(tenantId: string): Promise<WebhookSettings>;
  setWebhookUrl(tenantId: string, url: string | null): Promise<void>;
  /** Adds `secret` as the newest; older secrets retire at `previousRetireAt` (both sign until then). */
  addWebhookSecret(tenantId: string, secret: string, now: Date, previousRetireAt: Date): Promise<void>;
}

export interface DeliveryAttempt {
  attempt: number;
  at: string;
  status: number | null;
  error: string | null;
  duration_ms: number;
}

export type NotificationState = "pending" | "delivered" | "failed" | "gone" | "no_endpoint";

/** A client notification: one event, its payload (fixed at creation) and every delivery try. */
export interface NotificationRecord {
  id: string;
  jobId: string;
  tenantId: string;
  type: NotificationType;
  createdAt: string;
  payload: string;
  url: string | null;
  state: NotificationState;
  attempts: DeliveryAttempt[];
  /** The try number the current round of deliveries started at (1, or the first try of a replay). */
  roundStart?: number;
}

export interface NotificationStore {
  /** Creates the record unless one with its id exists; returns the stored one and whether it is new. */
  createIfAbsent(record: NotificationRecord): Promise<{ record: NotificationRecord; created: boolean }>;
  get(jobId: string, id: string): Promise<NotificationRecord | null>;
  /** A job's notifications, by id. */
  listForJob(jobId: string): Promise<NotificationRecord[]>;
  /** Appends a try and sets the state; guarded on the number of tries seen, so a duplicate message cannot double-record. */
  recordAttempt(
    record: NotificationRecord,
    attempt: DeliveryAttempt,
    state: NotificationState,
  ): Promise<NotificationRecord>;
  /** Back to pending for a replay (the same id and payload); the new round starts at the next try. */
  reopen(record: NotificationRecord): Promise<NotificationRecord>;
}

export interface WebhookDeliveryResult {
  /** HTTP status, or null when no answer came (refused address, timeout, connection error). */
  status: number | null;
  error: string | null;
  durationMs: number;
}

/** Posts one signed webhook, bounded in time and size, to an address the SSRF rules allow. */
export interface WebhookSender {
  send(url: string, headers: Record<string, string>, body: string): Promise<WebhookDeliveryResult>;
}
