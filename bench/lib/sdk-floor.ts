/**
 * A function's "SDK floor" for `bench:cold`: the AWS SDK packages its bundle carries, an entry that imports
 * and constructs exactly those and nothing else, and the function's figures against that floor.
 */
import type { Metafile } from "esbuild";
import { bytesByPackage } from "./bundle.ts";

/**
 * The packages a floor is made of: every AWS service client (`@aws-sdk/client-*`) and the DynamoDB
 * document client (`@aws-sdk/lib-dynamodb`, the marshalling any DynamoDB use needs). What they pull in
 * themselves (`@smithy/*`, `@aws-sdk/core`, the credential chain...) comes with them. Every other package
 * (zod, Powertools, middy, `@aws-sdk/lib-storage`, the presigner...) is one we chose, so it counts as ours.
 */
export function isFloorPackage(name: string): boolean {
  return name.startsWith("@aws-sdk/client-") || name === "@aws-sdk/lib-dynamodb";
}

/** The floor packages a bundle holds code of (an input tree-shaken to nothing does not count), sorted. */
export function sdkPackagesIn(metafile: Metafile): string[] {
  return bytesByPackage(metafile)
    .filter((p) => p.bytes > 0 && isFloorPackage(p.name))
    .map((p) => p.name)
    .sort();
}

/**
 * A short name for a set of floor packages, the same whatever their order: `@aws-sdk/client-sqs` -> `sqs`,
 * `@aws-sdk/lib-dynamodb` -> `dynamodb-doc`, sorted, joined with "+"; "none" for none.
 */
export function floorKey(packages: readonly string[]): string {
  return (
    packages
      .map((name) =>
        name === "@aws-sdk/lib-dynamodb" ? "dynamodb-doc" : name.replace(/^@aws-sdk\/client-/, ""),
      )
      .sort()
      .join("+") || "none"
  );
}

/** How a floor imports and constructs one package. */
export interface FloorClient {
  /** Import statements. */
  imports: readonly string[];
  /** An expression that constructs the client. */
  construct: string;
  /**
   * A package whose client this one is built around (the document client around the DynamoDB client):
   * `construct` holds `$inner` where that client's own `construct` goes, and the inner
   * client is not constructed on its own.
   */
  wraps?: string;
}

/**
 * The entry of an SDK floor: imports `prelude` and, per package, its `imports`; constructs each client
 * once (at module init, as the functions do); exports a do-nothing handler. Refuses a package it has no
 * recipe for, and a wrapper without the package it wraps.
 */
export function floorSource(
  packages: readonly string[],
  recipes: Readonly<Record<string, FloorClient>>,
  prelude: readonly string[] = [],
): string {
  const recipeOf = (name: string): FloorClient => {
    const recipe = recipes[name];
    if (!recipe) throw new Error(`bench:cold: no SDK floor recipe for ${name}; add one to SDK_CLIENTS`);
    return recipe;
  };
  const wrapped = new Set<string>();
  for (const name of packages) {
    const inner = recipeOf(name).wraps;
    if (inner === undefined) continue;
    if (!packages.includes(inner))
      throw new Error(`bench:cold: ${name} wraps ${inner}, which is not in the floor`);
    wrapped.add(inner);
  }
  const constructs = packages
    .filter((name) => !wrapped.has(name))
    .map((name) => {
      const { construct, wraps } = recipeOf(name);
      return wraps === undefined ? construct : construct.replace("$inner", () => recipeOf(wraps).construct);
    });
  const lines = [
    ...prelude,
    ...packages.flatMap((name) => recipeOf(name).imports),
    `export const clients = [${constructs.join(", ")}];`,
    "export const handler = async () => ({});",
  ];
  return `${lines.join("\n")}\n`;
}

export interface AgainstFloor {
  /** Function bytes / floor bytes. */
  sizeRatio: number;
  /** Function import p50 / floor import p50. */
  importRatio: number;
  /** What our code and libraries add to the floor. */
  addedBytes: number;
  addedImportMs: number;
  overSize: boolean;
  overImport: boolean;
  /** Both ratios within `maxRatio`. */
  pass: boolean;
}

/** A function's bundle size and import time against its floor's, with a budget of `maxRatio` on both. */
export function againstFloor(
  fn: { bytes: number; importMs: number },
  floor: { bytes: number; importMs: number },
  maxRatio: number,
): AgainstFloor {
  const sizeRatio = fn.bytes / floor.bytes;
  const importRatio = fn.importMs / floor.importMs;
  // Written so that a NaN (no samples) is over, never within.
  const overSize = !(sizeRatio <= maxRatio);
  const overImport = !(importRatio <= maxRatio);
  return {
    sizeRatio,
    importRatio,
    addedBytes: fn.bytes - floor.bytes,
    addedImportMs: fn.importMs - floor.importMs,
    overSize,
    overImport,
    pass: !overSize && !overImport,
  };
}
