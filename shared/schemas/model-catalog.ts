import * as z from "zod/mini";
import {
  MODEL_KINDS,
  type ModelCatalog,
  SD_CONTROLNETS,
  WEIGHTED_ANNOTATORS,
} from "../domain/model-catalog.ts";
import "./mini-locale.ts";

/**
 * The self-hosted model catalog (shared/domain/model-catalog.ts) as the deployment declares it: CDK
 * context `selfHostedModels` (infra/config.ts) and the `SELF_HOSTED_MODELS` variable of the API, the
 * provider functions and the worker. zod/mini: the Lambdas bundle it.
 */

/** The most models one deployment declares (each is a folder the worker syncs and checks at start). */
export const MAX_CATALOG_MODELS = 16;

/** Same characters as a request's `model_id` (shared/schemas/controlnet.ts). */
const MODEL_ID = /^[A-Za-z0-9._-]{1,128}$/;
const S3_URI = /^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/\S*$/;

/** A list of distinct names, each one of `allowed`. */
const distinct = <const T extends readonly string[]>(allowed: T, what: string) =>
  z.array(z.enum(allowed)).check(
    z.maxLength(allowed.length),
    z.refine(
      (items: readonly string[]) => new Set(items).size === items.length,
      `${what} are listed once each`,
    ),
  );

export const selfHostedModelSchema = z.strictObject({
  id: z.string().check(z.regex(MODEL_ID, "1 to 128 characters of A-Z a-z 0-9 . _ -")),
  kind: z.enum(MODEL_KINDS),
  controlnets: distinct(SD_CONTROLNETS, "controlnets"),
  annotators: z._default(distinct(WEIGHTED_ANNOTATORS, "annotators"), []),
  upscaler: z.optional(z.strictObject({ scale: z.union([z.literal(2), z.literal(4)]) })),
  safetyChecker: z.optional(z.boolean()),
  s3Uri: z.optional(
    z.string().check(
      z.regex(S3_URI, "an s3://bucket/prefix/ URI"),
      z.refine((uri) => uri.endsWith("/"), "ends with /"),
    ),
  ),
});

export const modelCatalogSchema = z.array(selfHostedModelSchema).check(
  z.minLength(1, "declares at least one model"),
  z.maxLength(MAX_CATALOG_MODELS),
  z.superRefine((models, ctx) => {
    const seen = new Set<string>();
    for (const [index, model] of models.entries()) {
      if (seen.has(model.id)) {
        ctx.addIssue({
          code: "custom",
          path: [index, "id"],
          message: `model id "${model.id}" is declared twice`,
        });
      }
      seen.add(model.id);
    }
  }),
);

/** `SELF_HOSTED_MODELS`: the catalog as JSON text. */
export const modelCatalogJson = z.pipe(
  z.pipe(
    z.string(),
    z.transform((text: string, ctx): unknown => {
      try {
        return JSON.parse(text);
      } catch {
        ctx.issues.push({
          code: "custom",
          message: "must be JSON (the self-hosted model catalog)",
          input: text,
        });
        return z.NEVER;
      }
    }),
  ),
  modelCatalogSchema,
);

/** Parses a catalog (already JSON-decoded): the catalog, or every problem as `path: message`. */
export function parseModelCatalog(value: unknown): { catalog: ModelCatalog } | { problems: string[] } {
  const result = modelCatalogSchema.safeParse(value);
  if (result.success) return { catalog: result.data as ModelCatalog };
  return {
    problems: result.error.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`),
  };
}
