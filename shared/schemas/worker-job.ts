import type * as z from "zod/mini";
import { controlNetRequestSchema } from "./controlnet.ts";
import { queues, workerJobEnvelope } from "./messages.ts";
import "./mini-locale.ts";
import { defineQueue } from "./queue.ts";

/**
 * The fallback queue as its consumer, the self-hosted GPU worker, reads it: the message declared in
 * messages.ts (`queues.fallback`) with its request checked in full by the seed schema (controlnet.ts),
 * which only the API and the worker build. The senders (dispatch, finalize, reconcile) use
 * messages.ts only, so their bundles carry neither this module nor the seed schema.
 */
export const workerJobMessageSchema = workerJobEnvelope(controlNetRequestSchema);
export type WorkerJobMessage = z.infer<typeof workerJobMessageSchema>;

export const workerJobQueue = defineQueue(queues.fallback.name, workerJobMessageSchema);
