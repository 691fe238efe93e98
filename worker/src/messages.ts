/**
 * The fallback queue's message: one job for the self-hosted worker. The schema lives with the other
 * shared schemas (`shared/schemas/worker-job.ts`; its type is also exported from
 * `shared/schemas/messages.ts`), so dispatch (the sender) and the worker use one schema.
 */
export { type WorkerJobMessage, workerJobMessageSchema } from "../../shared/schemas/worker-job.ts";
