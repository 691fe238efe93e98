import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
} from "@aws-sdk/lib-dynamodb";
import {
  type AdmissionSettings,
  jobIdOfSortKey,
  type WaitingPlace,
  waitingSortKey,
} from "../../domain/admission.ts";
import type { Lane, WaitingEntry, WaitingList } from "../../ports/index.ts";
import { type StoreClient, storeClient } from "./client.ts";
import { laneListingKey, waitingLanePk } from "./table-design.ts";

/** A lane's listing is written again at most this often by enqueues (it carries `touchedAt`). */
export const LANE_TOUCH_MS = 60_000;

/**
 * A provider's waiting list as small items of the main table (table-design.ts): one entry per waiting
 * job in its lane's partition (`WAIT#<provider>#<tenant>#<key>`, sorted by priority, age, id), and one
 * listing item per lane under `LANES#<provider>` with the tenant's admission settings. Lanes are
 * queried with strongly consistent reads: an entry written a moment ago must be seen by the release
 * that admits the next job.
 */
export class DynamoWaitingList implements WaitingList {
  private readonly doc: StoreClient;

  constructor(
    doc: DynamoDBDocumentClient,
    private readonly tableName: string,
    private readonly provider: string,
    /** The tenant's admission settings, read when a lane's listing is (re)written. */
    private readonly settings: (tenant: string) => Promise<AdmissionSettings>,
  ) {
    this.doc = storeClient(doc, "waiting list");
  }

  async enqueue(entry: Parameters<WaitingList["enqueue"]>[0], now: Date): Promise<WaitingEntry> {
    const listing = laneListingKey(this.provider, entry.tenant, entry.key);
    const lane = await this.doc.send(new GetCommand({ TableName: this.tableName, Key: listing }));
    const touchedAt = lane.Item?.touchedAt;
    if (typeof touchedAt !== "number" || touchedAt < now.getTime() - LANE_TOUCH_MS) {
      const settings = await this.settings(entry.tenant);
      await this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: {
            ...listing,
            type: "lane",
            tenant: entry.tenant,
            key: entry.key,
            weight: settings.weight,
            ...(settings.maxConcurrency !== null && { maxConcurrency: settings.maxConcurrency }),
            touchedAt: now.getTime(),
          },
        }),
      );
    }
    const sortKey = waitingSortKey(entry.priority, entry.enqueuedAt, entry.jobId);
    const stored = {
      jobId: entry.jobId,
      tenant: entry.tenant,
      key: entry.key,
      sortKey,
      enqueuedAt: entry.enqueuedAt,
    };
    await this.restore(stored);
    return stored;
  }

  async restore(entry: WaitingEntry): Promise<void> {
    await this.doc.send(
      new PutCommand({
        TableName: this.tableName,
        Item: {
          pk: waitingLanePk(this.provider, entry.tenant, entry.key),
          sk: entry.sortKey,
          type: "waiting",
          jobId: entry.jobId,
          enqueuedAt: entry.enqueuedAt,
        },
      }),
    );
  }

  async lanes(limit: number): Promise<Lane[]> {
    const out = await this.doc.send(
      new QueryCommand({
        TableName: this.tableName,
        KeyConditionExpression: "pk = :pk",
        ExpressionAttributeValues: { ":pk": laneListingKey(this.provider, "", "").pk },
        ConsistentRead: true,
        Limit: limit,
      }),
    );
    return (out.Items ?? []).map((item) => ({
      tenant: String(item.tenant),
      key: String(item.key),
      weight: typeof item.weight === "number" ? item.weight : 1,
      maxConcurrency: typeof item.maxConcurrency === "number" ? item.maxConcurrency : null,
      touchedAt: typeof item.touchedAt === "number" ? item.touchedAt : 0,
    }));
  }

  async head(tenant: string, key: string, limit: number): Promise<WaitingEntry[]> {
    const out = await this.doc.send(
      new QueryCommand({
        TableName: this.tableName,
        KeyConditionExpression: "pk = :pk",
        ExpressionAttributeValues: { ":pk": waitingLanePk(this.provider, tenant, key) },
        ConsistentRead: true,
        Limit: limit,
      }),
    );
    return (out.Items ?? []).map((item) => ({
      jobId: typeof item.jobId === "string" ? item.jobId : jobIdOfSortKey(String(item.sk)),
      tenant,
      key,
      sortKey: String(item.sk),
      enqueuedAt: typeof item.enqueuedAt === "number" ? item.enqueuedAt : 0,
    }));
  }

  async remove(entry: WaitingPlace): Promise<boolean> {
    try {
      await this.doc.send(
        new DeleteCommand({
          TableName: this.tableName,
          Key: { pk: waitingLanePk(this.provider, entry.tenant, entry.key), sk: entry.sortKey },
          ConditionExpression: "attribute_exists(pk)",
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  async countAhead(entry: WaitingPlace, cap: number): Promise<number> {
    // Select COUNT with a Limit: DynamoDB reads (and bills) at most `cap` small items.
    const out = await this.doc.send(
      new QueryCommand({
        TableName: this.tableName,
        KeyConditionExpression: "pk = :pk AND sk < :sk",
        ExpressionAttributeValues: {
          ":pk": waitingLanePk(this.provider, entry.tenant, entry.key),
          ":sk": entry.sortKey,
        },
        Select: "COUNT",
        ConsistentRead: true,
        Limit: cap,
      }),
    );
    return Math.min(out.Count ?? 0, cap);
  }

  async dropLane(lane: Pick<Lane, "tenant" | "key" | "touchedAt">): Promise<boolean> {
    try {
      await this.doc.send(
        new DeleteCommand({
          TableName: this.tableName,
          Key: laneListingKey(this.provider, lane.tenant, lane.key),
          ConditionExpression: "touchedAt = :seen",
          ExpressionAttributeValues: { ":seen": lane.touchedAt },
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }
}
