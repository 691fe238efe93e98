/**
 * The fallback queue's message: one job for the self-hosted worker. The schema lives with the other
 * queue messages in `shared/schemas/messages.ts`, so dispatch (the sender) and the worker use one schema.
 */
export { type WorkerJobMessage, workerJobMessageSchema } from "../../shared/schemas/messages.ts";
