import * as z from "zod/mini";
import "./mini-locale.ts";

/*
 * The field types of function configuration (environment variables), shared by config.ts and the
 * provider modules' own fragments (shared/providers/), which config.ts composes.
 */

/** An integer in [min, max], `fallback` when unset. */
export const int = (min: number, max: number, fallback: number) =>
  z._default(z.coerce.number().check(z.int(), z.gte(min), z.lte(max)), fallback);

/** A non-empty string. */
export const name = () => z.string().check(z.minLength(1));

/**
 * A secret comes either as a plain value (local stack, tests) or as the ARN of a Secrets Manager
 * secret that the function reads once (AWS). An empty value is unset.
 */
export const optionalSecret = z.pipe(
  z.optional(z.string()),
  z.transform((value: string | undefined) => value || undefined),
);
