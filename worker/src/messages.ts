/**
 * The fallback queue's message: one job for the self-hosted worker. The orchestrator sends it with the
 * request already validated by the public API.
 */
import * as z from "zod";
import { controlNetRequestSchema } from "../../shared/schemas/controlnet.ts";

export const workerJobMessageSchema = z.object({
  jobId: z.string().min(1).max(64),
  tenantId: z.string().min(1).max(128),
  /** Which attempt of the job this is (for logs and result bookkeeping). */
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
