import { type CfnElement, Stack, type StackProps } from "aws-cdk-lib";
import type { Construct } from "constructs";

/**
 * A Stack whose logical ids are the construct path without CDK's hash suffix: `JobsQueue/Resource`
 * becomes `JobsQueue`, `Api/Function/Resource` becomes `ApiFunction`. Templates stay readable and the
 * local stack can name resources (`ApiFunction`, `JobsTable`) without knowing CDK's hashing.
 *
 * Two paths that flatten to the same id would silently merge resources, so that is a synth error:
 * rename a construct rather than let an id change (a changed logical id replaces the resource).
 */
export class ReadableStack extends Stack {
  private readonly allocated = new Map<string, string>();

  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, props);
  }

  protected override allocateLogicalId(element: CfnElement): string {
    const scopes = element.node.scopes;
    const components = scopes.slice(scopes.indexOf(this) + 1).map((scope) => scope.node.id);
    const logicalId = components
      .filter((component) => component !== "Resource" && component !== "Default")
      .map((component) => component.replace(/[^A-Za-z0-9]/g, ""))
      .join("")
      .slice(0, 255);
    if (logicalId === "") return super.allocateLogicalId(element);
    const path = components.join("/");
    const previous = this.allocated.get(logicalId);
    if (previous !== undefined && previous !== path) {
      throw new Error(`Logical id ${logicalId} of ${path} collides with ${previous}; rename a construct`);
    }
    this.allocated.set(logicalId, path);
    return logicalId;
  }
}
