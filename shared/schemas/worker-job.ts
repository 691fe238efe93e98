import * as z from "zod";
import { controlNetRequestSchema } from "./controlnet.ts";

/**
 * Fallback queue: one job for the self-hosted GPU worker. Dispatch sends it (and the reconciler
 * re-sends a lost one) with the request already validated by the public API; the worker consumes it.
 *
 * Classic zod, apart from the other queue messages (messages.ts, zod/mini): its request is the seed
 * schema (controlnet.ts), which only the API and the worker build. Dispatch uses the type only, so
 * its bundle carries neither.
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
