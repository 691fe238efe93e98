import type { Job, JobStatus } from "./job.ts";

/**
 * Lifecycle events: job state changes published on the event bus (EventBridge in AWS; an in-memory
 * bus in the local stack): the terminal ones by default, every one with LIFECYCLE_EVENTS=all, none
 * with `none`. Contract, documented in the README:
 *   source       "controlnet.orchestrator"
 *   detail-type  "job.queued" | "job.processing" | "job.storing" | "job.succeeded" | "job.failed" | "job.cancelled"
 *   detail       LifecycleDetail below (snake_case like the public API; output URLs are S3 keys, not presigned)
 * Terminal events are published from the notification outbox (at least once); the others right
 * after the write (best effort). Consumers must tolerate duplicates: `detail.version` orders them.
 */
export const LIFECYCLE_SOURCE = "controlnet.orchestrator";

export type LifecycleType = `job.${JobStatus}`;

export interface LifecycleDetail {
  job_id: string;
  tenant_id: string;
  status: JobStatus;
  version: number;
  track_id: string | null;
  metadata: Record<string, string>;
  occurred_at: string;
  error: { code: string; message: string } | null;
  outputs: { key: string | null; url: string; content_type: string | null; bytes: number | null }[];
}

export interface LifecycleEvent {
  type: LifecycleType;
  detail: LifecycleDetail;
}

export const lifecycleEvent = (job: Job): LifecycleEvent => ({
  type: `job.${job.status}`,
  detail: {
    job_id: job.id,
    tenant_id: job.tenantId,
    status: job.status,
    version: job.version,
    track_id: job.trackId,
    metadata: job.metadata,
    occurred_at: job.updatedAt,
    error: job.error,
    outputs: job.outputs.map((o) => ({
      key: o.key ?? null,
      url: o.url,
      content_type: o.content_type,
      bytes: o.bytes,
    })),
  },
});

/** Client notification types (Standard Webhooks `type`): the terminal states, and processing on request. */
export const NOTIFICATION_TYPES = [
  "job.succeeded",
  "job.failed",
  "job.cancelled",
  "job.processing",
] as const satisfies readonly LifecycleType[];
export type NotificationType = (typeof NOTIFICATION_TYPES)[number];

/** One webhook-id per (job, status): every try and every replay of it carries the same id. */
export const notificationId = (jobId: string, status: JobStatus): string => `msg_${jobId}_${status}`;
