import type * as z from "zod/mini";
import {
  type CodeOf,
  clip,
  type ErrorDetail,
  MAX_DETAIL_PATH_CHARS,
  MAX_ERROR_DETAILS,
  ValidationError,
} from "./errors.ts";

/**
 * Turns zod issues into details that name the field, so a client can fix them at once: the first
 * `limit` details, and the count of all of them (an unrecognized_keys issue is one detail per key).
 * Only the kept details are built, so a body of 200,000 unknown keys costs no more than one of 20.
 */
export function issuesToDetails(
  issues: readonly z.core.$ZodIssue[],
  limit = MAX_ERROR_DETAILS,
): { details: ErrorDetail[]; total: number } {
  const details: ErrorDetail[] = [];
  let total = 0;
  for (const issue of issues) {
    const base = issue.path.map(String).join(".");
    if (issue.code === "unrecognized_keys") {
      total += issue.keys.length;
      for (const key of issue.keys.slice(0, Math.max(0, limit - details.length))) {
        details.push({
          path: base ? `${base}.${key}` : key,
          message: key === "key" ? "key is owned by the orchestrator; do not send it" : "unknown field",
        });
      }
      continue;
    }
    total += 1;
    if (details.length >= limit) continue;
    if (issue.code === "invalid_key") {
      // "Invalid key in record" says nothing; the key schema's own messages say what is wrong.
      details.push({
        path: base,
        message: issue.issues.map((inner) => inner.message).join("; ") || issue.message,
      });
      continue;
    }
    details.push({ path: base || "(body)", message: issue.message });
  }
  return { details, total };
}

export function parseOrThrow<S extends z.ZodMiniType>(
  schema: S,
  input: unknown,
  what: string,
  code?: CodeOf<"invalid_input">,
): z.infer<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const { details, total } = issuesToDetails(result.error.issues);
  const more = total > details.length ? ` and ${total - details.length} more` : "";
  throw new ValidationError(
    `${what} is invalid: ${details.map((d) => clip(d.path, MAX_DETAIL_PATH_CHARS)).join(", ")}${more}.`,
    details,
    code,
    total,
  );
}
