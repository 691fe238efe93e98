/**
 * The fallback queue's message: one job for the self-hosted worker. Declared with the other queues
 * (`queues.fallback` in `shared/schemas/messages.ts`); the worker reads it through `workerJobQueue`
 * (`shared/schemas/worker-job.ts`), the same declaration with the request checked in full.
 */
export {
  type WorkerJobMessage,
  workerJobQueue,
} from "../../shared/schemas/worker-job.ts";
