import type * as z from "zod/mini";
import { type CodeOf, type ErrorDetail, ValidationError } from "./errors.ts";

/** Turns every zod issue into a detail that names the field, so a client can fix all of them at once. */
export function issuesToDetails(issues: readonly z.core.$ZodIssue[]): ErrorDetail[] {
  return issues.flatMap((issue) => {
    const base = issue.path.map(String).join(".");
    if (issue.code === "unrecognized_keys") {
      return issue.keys.map((key) => ({
        path: base ? `${base}.${key}` : key,
        message: key === "key" ? "key is owned by the orchestrator; do not send it" : "unknown field",
      }));
    }
    if (issue.code === "invalid_key") {
      // "Invalid key in record" says nothing; the key schema's own messages say what is wrong.
      return [
        { path: base, message: issue.issues.map((inner) => inner.message).join("; ") || issue.message },
      ];
    }
    return [{ path: base || "(body)", message: issue.message }];
  });
}

export function parseOrThrow<S extends z.ZodMiniType>(
  schema: S,
  input: unknown,
  what: string,
  code?: CodeOf<"invalid_input">,
): z.infer<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const details = issuesToDetails(result.error.issues);
  throw new ValidationError(`${what} is invalid: ${details.map((d) => d.path).join(", ")}.`, details, code);
}
