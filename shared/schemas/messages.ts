import { z } from "zod";

/** Jobs queue: "look at this job and move it forward". The job row, not the message, is the truth. */
export const dispatchMessageSchema = z.object({ jobId: z.string().min(1).max(64) });
export type DispatchMessage = z.infer<typeof dispatchMessageSchema>;
