import * as z from "zod/mini";
import { controlNetRequestSchema } from "./controlnet.ts";
import "./mini-locale.ts";

/**
 * Fallback queue: one job for the self-hosted GPU worker. Dispatch sends it (and the reconciler
 * re-sends a lost one) with the request already validated by the public API; the worker consumes it.
 *
 * zod/mini like the other queue messages (messages.ts), but apart from them: its request is the seed
 * schema (controlnet.ts), which only the API and the worker build. Dispatch uses the type only, so
 * its bundle carries neither.
 */
export const workerJobMessageSchema = z.object({
  jobId: z.string().check(z.minLength(1), z.maxLength(64)),
  tenantId: z.string().check(z.minLength(1), z.maxLength(128)),
  /** Which attempt of the job this is (its index in the job's attempts; for logs and bookkeeping). */
  attempt: z.number().check(z.int(), z.gte(0)),
  request: controlNetRequestSchema,
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
export type WorkerJobMessage = z.infer<typeof workerJobMessageSchema>;
