import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import { type DynamoDBDocumentClient, GetCommand, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import type { BreakerState, CircuitBreaker } from "../../ports/index.ts";
import { type StoreClient, storeClient } from "./client.ts";

export interface BreakerSettings {
  /** Failures within `windowSeconds` that open the breaker. */
  failureThreshold: number;
  windowSeconds: number;
  /** How long it stays open before one probe may go through (and how long a claimed probe may take). */
  coolDownSeconds: number;
}

/**
 * The provider's circuit breaker as one DynamoDB item (the capacity gate's table, key
 * `BREAKER#<provider>`), shared by every dispatcher:
 *
 * - `failures`: epoch ms of recent failures, appended atomically (`list_append`), trimmed to the window;
 * - `openedAt`: set (conditionally, once) when the window holds `failureThreshold` failures;
 * - `probeAt`: the half-open probe's claim, a conditional write only one caller wins. A claim older
 *   than the cool-down (its dispatcher died) may be taken again.
 *
 * A probe's success closes it (clears everything); a probe's failure opens it again from now.
 */
export class DynamoCircuitBreaker implements CircuitBreaker {
  private readonly key: { pk: string; sk: string };
  private readonly doc: StoreClient;

  constructor(
    doc: DynamoDBDocumentClient,
    private readonly tableName: string,
    private readonly settings: BreakerSettings,
    /** The provider module's `breakerKey`. */
    provider: string,
  ) {
    this.doc = storeClient(doc, "circuit breaker");
    this.key = { pk: `BREAKER#${provider}`, sk: "BREAKER" };
  }

  async state(now: Date): Promise<BreakerState> {
    const item = await this.read();
    const openedAt = item?.openedAt as number | undefined;
    if (openedAt === undefined) return "closed";
    return now.getTime() < openedAt + this.settings.coolDownSeconds * 1000 ? "open" : "half-open";
  }

  async claimProbe(now: Date): Promise<boolean> {
    const t = now.getTime();
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: this.key,
          UpdateExpression: "SET #probeAt = :now",
          ConditionExpression:
            "#openedAt <= :cooled AND (attribute_not_exists(#probeAt) OR #probeAt <= :stale)",
          ExpressionAttributeNames: { "#openedAt": "openedAt", "#probeAt": "probeAt" },
          ExpressionAttributeValues: {
            ":now": t,
            ":cooled": t - this.settings.coolDownSeconds * 1000,
            ":stale": t - this.settings.coolDownSeconds * 1000,
          },
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  async record(outcome: "success" | "failure", now: Date, probe = false): Promise<void> {
    const t = now.getTime();
    if (outcome === "success") {
      // Only the probe's success closes it; successes while closed change nothing (the window counts failures).
      if (probe) {
        await this.conditional({
          UpdateExpression: "REMOVE #openedAt, #probeAt SET #failures = :empty",
          ConditionExpression: "attribute_exists(#probeAt)",
          ExpressionAttributeNames: {
            "#openedAt": "openedAt",
            "#probeAt": "probeAt",
            "#failures": "failures",
          },
          ExpressionAttributeValues: { ":empty": [] },
        });
      }
      return;
    }
    if (probe) {
      await this.conditional({
        UpdateExpression: "SET #openedAt = :now REMOVE #probeAt",
        ConditionExpression: "attribute_exists(#probeAt)",
        ExpressionAttributeNames: { "#openedAt": "openedAt", "#probeAt": "probeAt" },
        ExpressionAttributeValues: { ":now": t },
      });
      return;
    }
    const appended = await this.doc.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: this.key,
        UpdateExpression: "SET #failures = list_append(if_not_exists(#failures, :empty), :now)",
        ExpressionAttributeNames: { "#failures": "failures" },
        ExpressionAttributeValues: { ":empty": [], ":now": [t] },
        ReturnValues: "ALL_NEW",
      }),
    );
    const failures = (appended.Attributes?.failures as number[] | undefined) ?? [];
    const recent = failures.filter((at) => at > t - this.settings.windowSeconds * 1000);
    if (recent.length >= this.settings.failureThreshold && appended.Attributes?.openedAt === undefined) {
      // Only one opener wins; the others see it open already.
      await this.conditional({
        UpdateExpression: "SET #openedAt = :now, #failures = :recent REMOVE #probeAt",
        ConditionExpression: "attribute_not_exists(#openedAt)",
        ExpressionAttributeNames: { "#openedAt": "openedAt", "#probeAt": "probeAt", "#failures": "failures" },
        ExpressionAttributeValues: { ":now": t, ":recent": recent },
      });
    } else if (failures.length > 2 * this.settings.failureThreshold) {
      // Keep the item small: drop what fell out of the window, unless someone appended meanwhile.
      await this.conditional({
        UpdateExpression: "SET #failures = :recent",
        ConditionExpression: "size(#failures) = :length",
        ExpressionAttributeNames: { "#failures": "failures" },
        ExpressionAttributeValues: { ":recent": recent, ":length": failures.length },
      });
    }
  }

  private async read(): Promise<Record<string, unknown> | undefined> {
    const result = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: this.key, ConsistentRead: true }),
    );
    return result.Item;
  }

  private async conditional(
    update: Pick<
      ConstructorParameters<typeof UpdateCommand>[0],
      "UpdateExpression" | "ConditionExpression" | "ExpressionAttributeNames" | "ExpressionAttributeValues"
    >,
  ): Promise<boolean> {
    try {
      await this.doc.send(new UpdateCommand({ TableName: this.tableName, Key: this.key, ...update }));
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }
}
