import type { Template } from "aws-cdk-lib/assertions";

export type Resource = {
  Type: string;
  Properties?: Record<string, unknown>;
  Metadata?: Record<string, unknown>;
} & Record<string, unknown>;

export const resources = (template: Template, type: string): Record<string, Resource> =>
  template.findResources(type) as Record<string, Resource>;

export function only<T>(items: Record<string, T>, what: string): [string, T] {
  const entries = Object.entries(items);
  if (entries.length !== 1 || !entries[0]) throw new Error(`expected one ${what}, found ${entries.length}`);
  return entries[0];
}

/** The logical id a `{ Ref }` or `{ "Fn::GetAtt": [id, attr] }` points at. */
export function refTarget(value: unknown): string {
  const v = value as { Ref?: string; "Fn::GetAtt"?: [string, string] };
  const id = v.Ref ?? v["Fn::GetAtt"]?.[0];
  if (!id) throw new Error(`not a Ref/GetAtt: ${JSON.stringify(value)}`);
  return id;
}

/** Follows `{ "Fn::ImportValue": name }` to the exporting template's output value. */
export function followImport(value: unknown, exporter: Template): unknown {
  const name = (value as { "Fn::ImportValue"?: string })["Fn::ImportValue"];
  if (!name) return value;
  const outputs = exporter.toJSON().Outputs as Record<string, { Value: unknown; Export?: { Name: string } }>;
  const output = Object.values(outputs).find((o) => o.Export?.Name === name);
  if (!output) throw new Error(`no export ${name}`);
  return output.Value;
}

/** A self-hosted catalog for synths: one SD 1.5 model (the catalog is required, with no default). */
export const TEST_MODELS = [
  {
    id: "sd15",
    kind: "sd15",
    controlnets: ["canny", "depth"],
    annotators: [],
    s3Uri: "s3://my-models/sd15/",
  },
];

/**
 * Context for a synth without Docker: the GPU worker's image comes from a registry, not
 * worker/Dockerfile; and the self-hosted model catalog.
 */
export const TEST_CONTEXT = {
  workerImage: "public.ecr.aws/docker/library/node:22",
  selfHostedModels: TEST_MODELS,
} as const;
