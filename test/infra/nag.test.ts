import { App, Stack, Validations } from "aws-cdk-lib";
import { Queue } from "aws-cdk-lib/aws-sqs";
import { AwsSolutionsChecks } from "cdk-nag";
import type { IConstruct } from "constructs";
import { beforeAll, describe, expect, it } from "vitest";
import { type BuiltApp, buildApp } from "../../infra/build-app.ts";
import { TEST_CONTEXT } from "./support.ts";

let built: BuiltApp;

beforeAll(() => {
  built = buildApp({ skipBundling: true, context: TEST_CONTEXT });
  // The synth runs the AwsSolutions plugin (and would throw on an unacknowledged error).
  built.app.synth();
});

const walk = (root: IConstruct): IConstruct[] => [root, ...root.node.children.flatMap(walk)];

/** Every acknowledgement in the tree: where it sits, the rule id, the reason. */
const acknowledgements = (root: IConstruct) =>
  walk(root).flatMap((construct) =>
    construct.node.metadata
      .filter((entry) => entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((entry) =>
        Object.entries(entry.data as Record<string, string>).map(([id, reason]) => ({
          construct,
          id: id.replace(/^annotation::/i, ""),
          reason,
        })),
      ),
  );

describe("cdk-nag AwsSolutions", () => {
  it("finds nothing with the other deployment options either (provisioned table, callbacks via the API)", () => {
    const other = buildApp({
      skipBundling: true,
      context: { ...TEST_CONTEXT, tableBilling: "provisioned", callbackIngress: "http-api" },
    });
    other.app.synth();
    const report = new AwsSolutionsChecks().validateScope(other.app);
    expect(report.violations.map((v) => `${v.severity} ${v.ruleName}`)).toEqual([]);
  });

  it("finds nothing unacknowledged, errors or warnings, in the synthesized app", () => {
    const report = new AwsSolutionsChecks().validateScope(built.app);
    const findings = report.violations.map(
      (v) => `${v.severity} ${v.ruleName}: ${v.violatingResources.map((r) => r.constructPath).join(", ")}`,
    );
    expect(findings).toEqual([]);
  });

  it("acknowledges findings only on resources, each with a specific reason", () => {
    // (CDK acknowledges some of its own CloudFormation-Validate rules; those are not ours.)
    const acks = acknowledgements(built.app).filter(({ id }) => id.startsWith("AwsSolutions-"));
    expect(acks.length).toBeGreaterThan(0);
    for (const { construct, id, reason } of acks) {
      const where = `${id} at ${construct.node.path}`;
      expect(id, where).toMatch(/^AwsSolutions-[A-Z]+\d+(\[.+\])?$/);
      // A wildcard acknowledgement names the one finding it accepts, never the whole rule.
      if (id.startsWith("AwsSolutions-IAM5")) expect(id, where).toMatch(/\[(Action|Resource)::.+\]$/);
      expect(construct instanceof App || construct instanceof Stack, where).toBe(false);
      expect(reason.length, where).toBeGreaterThanOrEqual(60);
    }
  });

  it("fails the synth on an unacknowledged finding", () => {
    const app = buildApp({ skipBundling: true, context: TEST_CONTEXT });
    new Queue(app.stacks.stateful, "CarelessQueue");
    expect(() => app.app.synth()).toThrow(/AwsSolutions-SQS\d/);
  });
});
