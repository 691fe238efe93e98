import * as z from "zod/mini";
import { MAX_PROVIDER_ID_CHARS, MAX_SAMPLES, OUTPUT_LIMITS, PROVIDER_FAILURE_CODES } from "../domain/job.ts";
import { PROVIDER_IDS } from "../domain/providers.ts";
import type { ControlNetRequest } from "./controlnet.ts";
import "./mini-locale.ts";
import { defineQueue, type MessageOf } from "./queue.ts";

/*
 * The queues' messages and the queues themselves, each declared once (`defineQueue`, queue.ts): its
 * producers send through a `Queue<M>` built from the declaration and its consumer parses with it.
 *
 * zod/mini, as in config.ts: the same parsing and the same issues as classic zod, in smaller bundles.
 * English messages: `mini-locale.ts`.
 */

const jobId = () => z.string().check(z.minLength(1), z.maxLength(64));

/** Jobs queue: "look at this job and move it forward". The job row, not the message, is the truth. */
export const dispatchMessageSchema = z.object({
  jobId: jobId(),
  /**
   * Set by admission: the job was given a slot of this provider's gate on its behalf (it left the
   * waiting list), so dispatch starts it there without asking the gate again.
   */
  admittedBy: z.optional(z.enum(PROVIDER_IDS)),
});
export type DispatchMessage = z.infer<typeof dispatchMessageSchema>;

/**
 * Admissions queue: a job admitted on a slot taken on its behalf. A queue of its own, so that a freed
 * slot's next job never waits behind the jobs queue's backlog of first looks (the slot would sit idle).
 */
export const admissionMessageSchema = z.object({
  jobId: jobId(),
  admittedBy: z.enum(PROVIDER_IDS),
});
export type AdmissionMessage = z.infer<typeof admissionMessageSchema>;

const providerOutputSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("url"), url: z.string().check(z.maxLength(OUTPUT_LIMITS.urlChars)) }),
  z.object({ kind: z.literal("base64"), data: z.string().check(z.maxLength(OUTPUT_LIMITS.inlineChars)) }),
]);

const providerId = () => z.nullable(z.string().check(z.maxLength(MAX_PROVIDER_ID_CHARS)));

/** The finished part of ProviderResult: what can end an attempt. */
export const finishedResultSchema = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("done"),
    providerId: providerId(),
    // Bounded before it is ever stored: no job asks for more (see OUTPUT_LIMITS).
    outputs: z.array(providerOutputSchema).check(z.maxLength(MAX_SAMPLES)),
    generationTimeSeconds: z.nullable(z.number()),
    seed: z.nullable(z.number()),
    nsfwContentDetected: z.optional(z.nullable(z.boolean())),
  }),
  z.object({
    kind: z.literal("rejected"),
    providerId: providerId(),
    retryable: z.boolean(),
    reason: z.string(),
    retryAfterSeconds: z.nullable(z.number()),
    httpStatus: z.nullable(z.number()),
    /** The job's error code when the attempt fails for good, where the provider names one. */
    code: z.optional(z.enum(PROVIDER_FAILURE_CODES)),
  }),
]);
export type FinishedResult = z.infer<typeof finishedResultSchema>;

/**
 * Results queue: one normalised provider result, whoever observed it (callback receiver, reconciler,
 * dispatcher on an immediate answer, GPU worker). It names the provider and the attempt (its index in
 * the job's attempts) it belongs to: finalize ignores it unless that is the job's current attempt.
 * Only finalize turns it into a terminal state.
 */
export const resultMessageSchema = z.object({
  jobId: jobId(),
  provider: z.enum(PROVIDER_IDS),
  attempt: z.number().check(z.int(), z.gte(0)),
  /** Who observed it (for logs): the provider's own answer decides nothing by where it came from. */
  source: z.enum(["callback", "reconcile", "dispatch", "worker"]),
  observedAt: z.iso.datetime(),
  result: finishedResultSchema,
});
export type ResultMessage = z.infer<typeof resultMessageSchema>;

/**
 * Notifications queue. `job-event`: a job reached a state worth telling the client about (the
 * outbox message of terminal transitions). `delivery`: try number `attempt` of one notification,
 * not before `notBefore` (waits longer than SQS's 15-minute delay are chained).
 */
export const notifyMessageSchema = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("job-event"),
    jobId: jobId(),
    status: z.string().check(z.minLength(1), z.maxLength(32)),
  }),
  z.object({
    kind: z.literal("delivery"),
    jobId: jobId(),
    notificationId: z.string().check(z.minLength(1), z.maxLength(128)),
    attempt: z.number().check(z.int(), z.gte(1)),
    /** The try number this round of deliveries started at (1, or the first try of a replay). */
    roundStart: z.number().check(z.int(), z.gte(1)),
    notBefore: z.number().check(z.int()),
  }),
]);
export type NotifyMessage = z.infer<typeof notifyMessageSchema>;

/** Notifications dead-letter queue: a notification whose deliveries are exhausted (for operators). */
export const notificationExhaustedSchema = z.object({
  kind: z.literal("notification-exhausted"),
  jobId: jobId(),
  notificationId: z.string().check(z.minLength(1), z.maxLength(128)),
});
export type NotificationExhaustedMessage = z.infer<typeof notificationExhaustedSchema>;

const isJsonObject = (value: unknown): boolean =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * Fallback queue: one job for the self-hosted GPU worker, with `request` the schema of its ControlNet
 * request. Dispatch sends it (and the reconciler re-sends a lost one) with the request already validated by
 * the public API, so the senders check the rest of the message and that the request is an object;
 * the worker, which runs the request, checks it in full with the seed schema (worker-job.ts). That
 * schema stays out of the senders' bundles: only the API and the worker build it.
 */
export const workerJobEnvelope = <R extends z.ZodMiniType>(request: R) =>
  z.object({
    jobId: jobId(),
    tenantId: z.string().check(z.minLength(1), z.maxLength(128)),
    /** Which attempt of the job this is (its index in the job's attempts; for logs and bookkeeping). */
    attempt: z.number().check(z.int(), z.gte(0)),
    request,
    /** Output objects go to `${outputsPrefix}/${index}.png` in the outputs bucket: "<tenant>/<jobId>". */
    outputsPrefix: z.string().check(
      z.minLength(1),
      z.maxLength(512),
      z.regex(/^[A-Za-z0-9._\-/]+$/, "must be an S3 key prefix of A-Z a-z 0-9 . _ - /"),
      z.refine(
        (p: string) => !p.startsWith("/") && !p.endsWith("/") && !p.includes(".."),
        "must not start or end with / or contain ..",
      ),
    ),
  });

/**
 * The queues, each declared once; producers and consumers are built from these. Their URLs come from
 * each function's configuration (`*_QUEUE_URL`, config.ts).
 */
export const queues = {
  jobs: defineQueue("jobs", dispatchMessageSchema),
  admissions: defineQueue("admissions", admissionMessageSchema),
  results: defineQueue("results", resultMessageSchema),
  notifications: defineQueue("notifications", notifyMessageSchema),
  /** Notifications whose deliveries are exhausted; no consumer (operators read it). */
  notificationsDeadLetters: defineQueue("notifications-dlq", notificationExhaustedSchema),
  fallback: defineQueue(
    "fallback",
    workerJobEnvelope(z.custom<ControlNetRequest>(isJsonObject, "must be a JSON object")),
  ),
};

export type WorkerJobMessage = MessageOf<typeof queues.fallback>;
