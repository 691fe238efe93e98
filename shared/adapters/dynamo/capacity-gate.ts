import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import { type DynamoDBDocumentClient, GetCommand, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import type { CapacityGate } from "../../ports/index.ts";
import { type StoreClient, storeClient } from "./client.ts";

/**
 * A DynamoDB semaphore: one item per provider (`CAPACITY#<provider id>`, the registry's row and
 * limit) whose `holders` map has one entry per job holding a
 * slot. Acquire is one conditional write ("fewer than limit holders, or I already hold one"), so the
 * limit holds under any burst of concurrent dispatchers. The reconciler removes entries whose job has
 * left `processing` (a release lost to a crash heals itself).
 */
export class DynamoCapacityGate implements CapacityGate {
  private readonly key: { pk: string; sk: string };
  private readonly doc: StoreClient;

  constructor(
    doc: DynamoDBDocumentClient,
    private readonly tableName: string,
    private readonly limit: number,
    provider: string,
  ) {
    this.doc = storeClient(doc, "capacity gate");
    this.key = { pk: `CAPACITY#${provider}`, sk: "CAPACITY" };
  }

  async tryAcquire(jobId: string, now: Date): Promise<boolean> {
    // One write on the common path; the holders map is created only on the first refusal (a failed
    // conditional write costs a write unit too, so creating it up front on every acquire would cost two).
    if (await this.acquire(jobId, now)) return true;
    // Refused: the gate is full, or it has no holders map yet. Create the map, and read the gate at the
    // same time (no extra round trip): a map that exists may have been created by a concurrent first
    // acquirer after this acquire ran, so only a gate seen full refuses.
    const [created, holders] = await Promise.all([this.createHolders(), this.holders()]);
    if (!created && Object.keys(holders).length >= this.limit && !(jobId in holders)) return false;
    return this.acquire(jobId, now);
  }

  private async acquire(jobId: string, now: Date): Promise<boolean> {
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: this.key,
          UpdateExpression: "SET #holders.#job = if_not_exists(#holders.#job, :now)",
          ConditionExpression: "size(#holders) < :limit OR attribute_exists(#holders.#job)",
          ExpressionAttributeNames: { "#holders": "holders", "#job": jobId },
          ExpressionAttributeValues: { ":now": now.getTime(), ":limit": this.limit },
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      // Without the map, DynamoDB may refuse the nested path itself instead of failing the condition.
      if (
        error instanceof Error &&
        error.name === "ValidationException" &&
        /document path/i.test(error.message)
      ) {
        return false;
      }
      throw error;
    }
  }

  /** Creates the empty holders map; false when it already existed. */
  private async createHolders(): Promise<boolean> {
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: this.key,
          UpdateExpression: "SET #holders = :empty",
          ExpressionAttributeNames: { "#holders": "holders" },
          ExpressionAttributeValues: { ":empty": {} },
          ConditionExpression: "attribute_not_exists(#holders)",
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  async release(jobId: string): Promise<void> {
    await this.doc
      .send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: this.key,
          UpdateExpression: "REMOVE #holders.#job",
          ConditionExpression: "attribute_exists(#holders)",
          ExpressionAttributeNames: { "#holders": "holders", "#job": jobId },
        }),
      )
      .catch((error) => {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
      });
  }

  async holders(): Promise<Record<string, number>> {
    const result = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: this.key, ConsistentRead: true }),
    );
    return (result.Item?.holders as Record<string, number> | undefined) ?? {};
  }
}
