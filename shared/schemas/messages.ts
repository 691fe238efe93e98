import * as z from "zod/mini";
import { MAX_PROVIDER_ID_CHARS, MAX_SAMPLES, OUTPUT_LIMITS } from "../domain/job.ts";
import { PROVIDER_IDS } from "../domain/providers.ts";
import "./mini-locale.ts";

/*
 * zod/mini, as in config.ts: the same parsing and the same issues as classic zod, in smaller bundles.
 * The worker's message, which carries the whole ControlNet request, lives in worker-job.ts.
 * English messages: `mini-locale.ts`.
 */

const jobId = () => z.string().check(z.minLength(1), z.maxLength(64));

/** Jobs queue: "look at this job and move it forward". The job row, not the message, is the truth. */
export const dispatchMessageSchema = z.object({
  jobId: jobId(),
  /** How many times dispatch has put this job back for lack of provider capacity (drives backoff). */
  deferrals: z.optional(z.number().check(z.int(), z.gte(0))),
});
export type DispatchMessage = z.infer<typeof dispatchMessageSchema>;

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
  }),
  z.object({
    kind: z.literal("rejected"),
    providerId: providerId(),
    retryable: z.boolean(),
    reason: z.string(),
    retryAfterSeconds: z.nullable(z.number()),
    httpStatus: z.nullable(z.number()),
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

/** Fallback queue (dispatch sends it, the self-hosted worker consumes it): see worker-job.ts. */
export type { WorkerJobMessage } from "./worker-job.ts";
