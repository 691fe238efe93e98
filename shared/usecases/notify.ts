import { Webhook } from "standardwebhooks";
import { StaleWriteError } from "../domain/errors.ts";
import { lifecycleEvent, type NotificationType, notificationId } from "../domain/events.ts";
import { isTerminal } from "../domain/job.ts";
import { S3_REF } from "../domain/uploads.ts";
import type {
  Clock,
  EventPublisher,
  JobStore,
  NotificationRecord,
  NotificationState,
  NotificationStore,
  Queue,
  WebhookSender,
  WebhookSettingsStore,
} from "../ports/index.ts";
import type { Metrics } from "../ports/metrics.ts";
import type { NotificationExhaustedMessage, NotifyMessage } from "../schemas/messages.ts";
import { presentJob } from "./present-job.ts";

export interface NotifySettings {
  /** Waits between tries, in seconds: about 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h by default. */
  retryScheduleSeconds: number[];
  /** ± fraction of each wait drawn at random, so retries of many events do not arrive together. */
  jitter: number;
  /** How long after a try was due the reconciler re-announces a job whose notification stalled. */
  outboxGraceSeconds: number;
}

export interface NotifyDeps {
  jobs: JobStore;
  notifications: NotificationStore;
  tenants: WebhookSettingsStore;
  notifyQueue: Queue<NotifyMessage>;
  deadLetters: Queue<NotificationExhaustedMessage>;
  events: EventPublisher;
  /** Whether terminal lifecycle events go to `events` (`LIFECYCLE_EVENTS` other than `none`). */
  publishTerminalEvents: boolean;
  sender: WebhookSender;
  clock: Clock;
  /**
   * A presigned GET URL of a stored output (by object key). Called at every try: presigned URLs
   * expire long before the retries end, so each try carries URLs signed for it.
   */
  presignOutput: (key: string) => Promise<string>;
  settings: NotifySettings;
  /** Delivery outcomes: delivered, retried, gone, dead_lettered. */
  metrics?: Metrics;
  random?: () => number;
}

export type NotifyOutcome =
  | "ignored"
  | "recorded"
  | "delivered"
  | "retrying"
  | "failed"
  | "gone"
  | "no_endpoint"
  | "waiting";

export async function handleNotifyMessage(deps: NotifyDeps, message: NotifyMessage): Promise<NotifyOutcome> {
  if (message.kind === "job-event") return recordJobEvent(deps, message.jobId, message.status);
  const now = deps.clock.now().getTime();
  if (message.notBefore > now + 500) {
    // SQS delays stop at 15 minutes: longer waits hop through the queue.
    await deps.notifyQueue.send(message, {
      delaySeconds: Math.min(900, Math.ceil((message.notBefore - now) / 1000)),
    });
    return "waiting";
  }
  const record = await deps.notifications.get(message.jobId, message.notificationId);
  if (!record) return "ignored";
  return deliver(deps, record, message.attempt, message.roundStart);
}

/**
 * The outbox step: turns a job's state into a notification record (fixed id and payload), publishes
 * the terminal lifecycle event, clears the job's outbox flag, and makes the first try.
 */
async function recordJobEvent(deps: NotifyDeps, jobId: string, status: string): Promise<NotifyOutcome> {
  const job = await deps.jobs.get(jobId);
  if (!job || job.status !== status) return "ignored"; // a processing event the job has moved past
  const terminal = isTerminal(job.status);
  if (!terminal && !(job.status === "processing" && job.notifyProcessing)) return "ignored";

  if (terminal && job.notifyPending && deps.publishTerminalEvents) {
    await deps.events.publish([lifecycleEvent(job)]);
  }

  const url = job.webhook ?? (await deps.tenants.getWebhookSettings(job.tenantId)).url;
  const type = `job.${job.status}` as NotificationType;
  const now = deps.clock.now();
  const { record } = await deps.notifications.createIfAbsent({
    id: notificationId(job.id, job.status),
    jobId: job.id,
    tenantId: job.tenantId,
    type,
    createdAt: now.toISOString(),
    // Stored unsigned (outputs as the job records them); each try signs them afresh (presentPayload).
    payload: JSON.stringify({ type, timestamp: job.updatedAt, data: presentJob(job) }),
    url,
    state: url ? "pending" : "no_endpoint",
    attempts: [],
  });

  if (record.state !== "pending") {
    await settleOutbox(deps, job.id);
    return record.state === "no_endpoint" ? "no_endpoint" : "recorded";
  }
  if (record.attempts.length === 0) return deliver(deps, record, 1, 1);
  // Tried before and still pending: the next try's message may have been lost with a crashed
  // process. Schedule it again (a duplicate is harmless: each try number is recorded once).
  await scheduleNextTry(deps, record, record.roundStart ?? 1);
  return "retrying";
}

/**
 * The job's outbox flag stays set until its notification is settled (delivered, gone, failed, or
 * nowhere to send), so the reconciler re-announces a terminal job whose notification stalled.
 */
async function settleOutbox(deps: NotifyDeps, jobId: string): Promise<void> {
  for (let race = 0; race < 3; race++) {
    const job = await deps.jobs.get(jobId);
    if (!job || !isTerminal(job.status) || !job.notifyPending) return;
    try {
      await deps.jobs.update(job, { notifyPending: false, dueAt: null });
      return;
    } catch (error) {
      if (!(error instanceof StaleWriteError)) throw error;
    }
  }
}

/** Sends the message of the next try (not before its scheduled time) and moves the outbox's check after it. */
async function scheduleNextTry(
  deps: NotifyDeps,
  record: NotificationRecord,
  roundStart: number,
): Promise<void> {
  const tries = record.attempts.length;
  const last = record.attempts.at(-1);
  const base = deps.settings.retryScheduleSeconds[tries - roundStart] ?? 0;
  const spread = base * deps.settings.jitter * ((deps.random ?? Math.random)() * 2 - 1);
  const notBefore =
    (last ? Date.parse(last.at) : deps.clock.now().getTime()) +
    Math.max(0, Math.round((base + spread) * 1000));
  const next: NotifyMessage = {
    kind: "delivery",
    jobId: record.jobId,
    notificationId: record.id,
    attempt: tries + 1,
    roundStart,
    notBefore,
  };
  const waitMs = Math.max(0, notBefore - deps.clock.now().getTime());
  await deps.notifyQueue.send(next, { delaySeconds: Math.min(900, Math.ceil(waitMs / 1000)) });
  // If this message is lost too, the reconciler re-announces the job shortly after the try was due.
  const job = await deps.jobs.get(record.jobId);
  if (job && isTerminal(job.status) && job.notifyPending) {
    await deps.jobs
      .update(job, { dueAt: notBefore + deps.settings.outboxGraceSeconds * 1000 })
      .catch((error) => {
        if (!(error instanceof StaleWriteError)) throw error;
      });
  }
}

async function deliver(
  deps: NotifyDeps,
  record: NotificationRecord,
  attempt: number,
  roundStart: number,
): Promise<NotifyOutcome> {
  // A duplicate message for a try already made, or an event that is settled, changes nothing.
  if (record.state !== "pending" || record.attempts.length >= attempt || !record.url) return "ignored";
  const settings = await deps.tenants.getWebhookSettings(record.tenantId);
  const sentAt = deps.clock.now();
  const body = await presentPayload(deps, record);
  const headers = signedHeaders(
    record,
    settings.secrets.map((s) => s.secret),
    sentAt,
    body,
  );
  const result = await deps.sender.send(record.url, headers, body);

  const triesThisRound = attempt - roundStart + 1;
  const state: NotificationState =
    result.status !== null && result.status >= 200 && result.status < 300
      ? "delivered"
      : result.status === 410
        ? "gone"
        : triesThisRound > deps.settings.retryScheduleSeconds.length
          ? "failed"
          : "pending";
  let updated: NotificationRecord;
  try {
    updated = await deps.notifications.recordAttempt(
      record,
      {
        attempt,
        at: sentAt.toISOString(),
        status: result.status,
        error: result.error,
        duration_ms: Math.round(result.durationMs),
      },
      state,
    );
  } catch (error) {
    if (error instanceof StaleWriteError) return "ignored"; // a concurrent duplicate recorded this try
    throw error;
  }

  deps.metrics?.count("Notifications", { outcome: DELIVERY_OUTCOMES[state] });
  if (state === "pending") {
    await scheduleNextTry(deps, updated, roundStart);
    return "retrying";
  }
  await settleOutbox(deps, updated.jobId);
  if (state === "failed") {
    await deps.deadLetters.send({
      kind: "notification-exhausted",
      jobId: updated.jobId,
      notificationId: updated.id,
    });
  }
  return state === "delivered" ? "delivered" : state;
}

/** A try's outcome as the Notifications metric counts it. */
const DELIVERY_OUTCOMES: Record<NotificationState, string> = {
  delivered: "delivered",
  pending: "retried",
  gone: "gone",
  failed: "dead_lettered",
  no_endpoint: "no_endpoint",
};

/**
 * The body of one try: the stored payload with each stored output's URL replaced by a presigned URL
 * made now, so every try and replay carries links that work when the client receives them. The
 * event (type, timestamp, the job's state) stays as recorded; only the links are renewed.
 */
async function presentPayload(deps: NotifyDeps, record: NotificationRecord): Promise<string> {
  const payload = JSON.parse(record.payload) as { data?: { outputs?: { url: string }[] } };
  // The payload keeps each output as the job stored it (s3://<outputs bucket>/<key>): signing needs
  // only the key, not the job read again.
  const stored = (payload.data?.outputs ?? []).flatMap((output) => {
    const key = S3_REF.exec(output.url)?.[2];
    return key ? [{ output, key }] : [];
  });
  if (stored.length === 0) return record.payload;
  await Promise.all(
    stored.map(async ({ output, key }) => {
      output.url = await deps.presignOutput(key);
    }),
  );
  return JSON.stringify(payload);
}

/**
 * Standard Webhooks headers over the body actually sent; during a secret rotation every secret in
 * force signs (space-separated).
 */
export function signedHeaders(
  record: Pick<NotificationRecord, "id">,
  secrets: string[],
  at: Date,
  body: string,
): Record<string, string> {
  const signatures = secrets.map((secret) => new Webhook(secret).sign(record.id, at, body));
  return {
    "content-type": "application/json",
    "user-agent": "controlnet-orchestrator-webhooks/1",
    "webhook-id": record.id,
    "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
    "webhook-signature": signatures.join(" "),
  };
}

/** Sends a notification again from its first try (same webhook-id and event; links signed afresh). */
export async function replayNotification(
  deps: Pick<NotifyDeps, "notifications" | "notifyQueue" | "clock">,
  record: NotificationRecord,
): Promise<NotificationRecord> {
  const reopened = record.state === "pending" ? record : await deps.notifications.reopen(record);
  const attempt = reopened.roundStart ?? reopened.attempts.length + 1;
  const message: NotifyMessage = {
    kind: "delivery",
    jobId: reopened.jobId,
    notificationId: reopened.id,
    attempt,
    roundStart: attempt,
    notBefore: deps.clock.now().getTime(),
  };
  await deps.notifyQueue.send(message);
  return reopened;
}
