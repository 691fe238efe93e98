import * as z from "zod/mini";
import { HTTP_URL_PATTERN, httpUrlProblem, normaliseHttpUrl } from "../domain/http-url.ts";

/** An http(s) URL that every parser reads alike, given on as its WHATWG `href`. */
export const httpUrl = (maxChars: number) =>
  z.string().check(
    z.maxLength(maxChars),
    z.superRefine((value: string, ctx) => {
      // Past the length, maxLength has said it; the checks below would only cost time.
      if (value.length > maxChars) return;
      const problem = httpUrlProblem(value, maxChars);
      if (problem !== null) ctx.addIssue({ code: "custom", message: problem });
    }),
    z.overwrite(normaliseHttpUrl),
    z.meta({ format: "uri", pattern: HTTP_URL_PATTERN }),
  );
