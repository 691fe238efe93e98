import * as z from "zod";
import { controlNetRequestSchema } from "./controlnet.ts";

/** Jobs queue: "look at this job and move it forward". The job row, not the message, is the truth. */
export const dispatchMessageSchema = z.object({
  jobId: z.string().min(1).max(64),
  /** How many times dispatch has put this job back for lack of provider capacity (drives backoff). */
  deferrals: z.number().int().min(0).optional(),
});
export type DispatchMessage = z.infer<typeof dispatchMessageSchema>;

const providerOutputSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("url"), url: z.string() }),
  z.object({ kind: z.literal("base64"), data: z.string() }),
]);

/** The finished part of ProviderResult: what can end an attempt. */
export const finishedResultSchema = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("done"),
    providerId: z.string().nullable(),
    outputs: z.array(providerOutputSchema),
    generationTimeSeconds: z.number().nullable(),
    seed: z.number().nullable(),
  }),
  z.object({
    kind: z.literal("rejected"),
    providerId: z.string().nullable(),
    retryable: z.boolean(),
    reason: z.string(),
    retryAfterSeconds: z.number().nullable(),
    httpStatus: z.number().nullable(),
  }),
]);
export type FinishedResult = z.infer<typeof finishedResultSchema>;

/**
 * Results queue: one normalised provider result, whoever observed it (callback receiver, reconciler,
 * dispatcher on an immediate answer, GPU worker). Only finalize turns it into a terminal state.
 */
export const resultMessageSchema = z.object({
  jobId: z.string().min(1).max(64),
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
    jobId: z.string().min(1).max(64),
    status: z.string().min(1).max(32),
  }),
  z.object({
    kind: z.literal("delivery"),
    jobId: z.string().min(1).max(64),
    notificationId: z.string().min(1).max(128),
    attempt: z.number().int().min(1),
    /** The try number this round of deliveries started at (1, or the first try of a replay). */
    roundStart: z.number().int().min(1),
    notBefore: z.number().int(),
  }),
]);
export type NotifyMessage = z.infer<typeof notifyMessageSchema>;

/**
 * Fallback queue: one job for the self-hosted GPU worker. Dispatch sends it (and the reconciler
 * re-sends a lost one) with the request already validated by the public API; the worker consumes it.
 */
export const workerJobMessageSchema = z.object({
  jobId: z.string().min(1).max(64),
  tenantId: z.string().min(1).max(128),
  /** Which attempt of the job this is (its index in the job's attempts; for logs and bookkeeping). */
  attempt: z.number().int().min(0),
  request: controlNetRequestSchema,
  /** Output objects go to `${outputsPrefix}/${index}.png` in the outputs bucket: "<tenant>/<jobId>". */
  outputsPrefix: z
    .string()
    .min(1)
    .max(512)
    .regex(/^[A-Za-z0-9._\-/]+$/, "must be an S3 key prefix of A-Z a-z 0-9 . _ - /")
    .refine(
      (p) => !p.startsWith("/") && !p.endsWith("/") && !p.includes(".."),
      "must not start or end with / or contain ..",
    ),
});
export type WorkerJobMessage = z.infer<typeof workerJobMessageSchema>;
