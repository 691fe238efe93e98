import type { Metafile } from "esbuild";
import { describe, expect, it } from "vitest";
import { againstFloor, floorKey, floorSource, sdkPackagesIn } from "../../bench/lib/sdk-floor.ts";

/** A metafile with one output holding these inputs (path -> bytes in the output). */
function metafileOf(inputs: Record<string, number>): Metafile {
  return {
    inputs: {},
    outputs: {
      "out.mjs": {
        bytes: 0,
        inputs: Object.fromEntries(
          Object.entries(inputs).map(([p, bytesInOutput]) => [p, { bytesInOutput }]),
        ),
        imports: [],
        exports: [],
      },
    },
  } as Metafile;
}

const recipes = {
  "@aws-sdk/client-dynamodb": { imports: ['import { D } from "d";'], construct: "new D({ a: 1 })" },
  "@aws-sdk/lib-dynamodb": {
    imports: ['import { Doc } from "doc";'],
    wraps: "@aws-sdk/client-dynamodb",
    construct: "Doc.from($inner, { m: true })",
  },
  "@aws-sdk/client-sqs": { imports: ['import { Q } from "q";'], construct: "new Q({})" },
};

describe("bench:cold SDK floor", () => {
  it("finds the AWS SDK clients a bundle carries in its metafile, not what they pull in nor what was shaken out", () => {
    const metafile = metafileOf({
      "node_modules/@aws-sdk/client-sqs/dist-es/SQSClient.js": 900,
      "node_modules/@aws-sdk/client-sqs/dist-es/commands/SendMessageCommand.js": 300,
      "../main/node_modules/@aws-sdk/lib-dynamodb/dist-es/DynamoDBDocumentClient.js": 400,
      "node_modules/@aws-sdk/client-dynamodb/dist-es/index.js": 800,
      // Only its types were imported: in the graph, nothing in the output.
      "node_modules/@aws-sdk/client-s3/dist-es/index.js": 0,
      "node_modules/@aws-sdk/core/dist-es/index.js": 700,
      "node_modules/@aws-sdk/lib-storage/dist-es/Upload.js": 500,
      "node_modules/@aws-sdk/client-sqs/node_modules/@smithy/core/dist-es/index.js": 1000,
      "node_modules/@aws-sdk/s3-request-presigner/dist-es/index.js": 200,
      "functions/api.ts": 100,
    });
    expect(sdkPackagesIn(metafile)).toEqual([
      "@aws-sdk/client-dynamodb",
      "@aws-sdk/client-sqs",
      "@aws-sdk/lib-dynamodb",
    ]);
  });

  it("names a set of packages the same way whatever their order", () => {
    const key = floorKey(["@aws-sdk/lib-dynamodb", "@aws-sdk/client-sqs", "@aws-sdk/client-dynamodb"]);
    expect(key).toBe("dynamodb+dynamodb-doc+sqs");
    expect(floorKey(["@aws-sdk/client-dynamodb", "@aws-sdk/lib-dynamodb", "@aws-sdk/client-sqs"])).toBe(key);
    expect(floorKey([])).toBe("none");
  });

  it("imports exactly the floor's packages and constructs each client once, a wrapper around its inner client", () => {
    const source = floorSource(
      ["@aws-sdk/client-dynamodb", "@aws-sdk/client-sqs", "@aws-sdk/lib-dynamodb"],
      recipes,
      ['import { H } from "h";'],
    );
    expect(source).toBe(
      [
        'import { H } from "h";',
        'import { D } from "d";',
        'import { Q } from "q";',
        'import { Doc } from "doc";',
        "export const clients = [new Q({}), Doc.from(new D({ a: 1 }), { m: true })];",
        "export const handler = async () => ({});",
        "",
      ].join("\n"),
    );
    expect(floorSource(["@aws-sdk/client-dynamodb"], recipes)).toContain(
      "export const clients = [new D({ a: 1 })];",
    );
  });

  it("refuses a package it has no recipe for, and a wrapper without the client it wraps", () => {
    expect(() => floorSource(["@aws-sdk/client-kinesis"], recipes)).toThrow(
      "no SDK floor recipe for @aws-sdk/client-kinesis",
    );
    expect(() => floorSource(["@aws-sdk/lib-dynamodb"], recipes)).toThrow(
      "@aws-sdk/lib-dynamodb wraps @aws-sdk/client-dynamodb, which is not in the floor",
    );
  });

  it("states the budget against the floor: what ours adds, and both ratios within the limit", () => {
    const within = againstFloor({ bytes: 300, importMs: 60 }, { bytes: 200, importMs: 40 }, 1.5);
    expect(within).toEqual({
      sizeRatio: 1.5,
      importRatio: 1.5,
      addedBytes: 100,
      addedImportMs: 20,
      overSize: false,
      overImport: false,
      pass: true,
    });
    const slow = againstFloor({ bytes: 250, importMs: 61 }, { bytes: 200, importMs: 40 }, 1.5);
    expect([slow.overSize, slow.overImport, slow.pass]).toEqual([false, true, false]);
    const big = againstFloor({ bytes: 301, importMs: 40 }, { bytes: 200, importMs: 40 }, 1.5);
    expect([big.overSize, big.overImport, big.pass]).toEqual([true, false, false]);
    // No timed samples (a median of nothing) is never within budget.
    expect(againstFloor({ bytes: 250, importMs: Number.NaN }, { bytes: 200, importMs: 40 }, 1.5).pass).toBe(
      false,
    );
  });
});
