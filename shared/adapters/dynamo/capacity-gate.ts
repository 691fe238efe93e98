import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import { type DynamoDBDocumentClient, GetCommand, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import type { SlotHolder } from "../../domain/admission.ts";
import type { CapacityGate, GateSnapshot, SlotOwner } from "../../ports/index.ts";
import { type StoreClient, storeClient } from "./client.ts";

/**
 * A DynamoDB semaphore: one item per provider (`CAPACITY#<provider id>`, the registry's row and
 * limit) whose `holders` map has one entry per job holding a
 * slot: when it acquired and, for fair share, its tenant and concurrency key (`{ at, t, k }`; an entry
 * written before admission knew tenants is the bare time). `avgHoldMs` is a moving average of how long
 * a slot is held, updated by each release's own write. Acquire is one conditional write ("fewer than limit holders, or I already hold one"), so the
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

  async tryAcquire(jobId: string, now: Date, owner?: SlotOwner): Promise<boolean> {
    // One write on the common path; the holders map is created only on the first refusal (a failed
    // conditional write costs a write unit too, so creating it up front on every acquire would cost two).
    if (await this.acquire(jobId, now, owner)) return true;
    // Refused: the gate is full, or it has no holders map yet. A read tells (a write refused again would
    // cost a write unit; in a backlog most acquires are refused); the map is created only when absent.
    // A map that exists may have been created by a concurrent first acquirer after this acquire ran,
    // so only a gate seen full refuses.
    const item = await this.readItem();
    if (item?.holders !== undefined) {
      const holders = item.holders as Record<string, unknown>;
      if (jobId in holders) return true;
      if (Object.keys(holders).length >= this.limit) return false;
    } else {
      await this.createHolders();
    }
    return this.acquire(jobId, now, owner);
  }

  private async acquire(jobId: string, now: Date, owner?: SlotOwner): Promise<boolean> {
    const entry = owner ? { at: now.getTime(), t: owner.tenant, k: owner.key } : { at: now.getTime() };
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: this.key,
          // The limit is kept on the item for readers without the provider's settings (queue estimates).
          UpdateExpression: "SET #holders.#job = if_not_exists(#holders.#job, :now), #limit = :limit",
          ConditionExpression: "size(#holders) < :limit OR attribute_exists(#holders.#job)",
          ExpressionAttributeNames: { "#holders": "holders", "#job": jobId, "#limit": "limit" },
          ExpressionAttributeValues: { ":now": entry, ":limit": this.limit },
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

  async release(jobId: string, now: Date = new Date()): Promise<GateSnapshot> {
    // Read first: a job that holds no slot costs no write, and the hold time feeds the average.
    const before = await this.read();
    const held = before.holders.find((holder) => holder.jobId === jobId);
    if (!held) return before;
    const heldMs = Math.max(0, now.getTime() - held.acquiredAt);
    const avg =
      before.avgHoldMs === null ? heldMs : before.avgHoldMs + (heldMs - before.avgHoldMs) * HOLD_EWMA;
    try {
      const out = await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: this.key,
          UpdateExpression: "REMOVE #holders.#job SET #avg = :avg",
          ConditionExpression: "attribute_exists(#holders.#job)",
          ExpressionAttributeNames: { "#holders": "holders", "#job": jobId, "#avg": "avgHoldMs" },
          ExpressionAttributeValues: { ":avg": Math.round(avg) },
          ReturnValues: "ALL_NEW",
        }),
      );
      return this.snapshotOf(out.Attributes);
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      // Released by someone else meanwhile.
      return this.read();
    }
  }

  async holders(): Promise<Record<string, number>> {
    const snapshot = await this.read();
    return Object.fromEntries(snapshot.holders.map((holder) => [holder.jobId, holder.acquiredAt]));
  }

  snapshot(): Promise<GateSnapshot> {
    return this.read();
  }

  private async read(): Promise<GateSnapshot> {
    return this.snapshotOf(await this.readItem());
  }

  private async readItem(): Promise<Record<string, unknown> | undefined> {
    const result = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: this.key, ConsistentRead: true }),
    );
    return result.Item;
  }

  private snapshotOf(item: Record<string, unknown> | undefined): GateSnapshot {
    const stored = (item?.holders as Record<string, unknown> | undefined) ?? {};
    const holders = Object.entries(stored).map(([jobId, value]) => holderOf(jobId, value));
    const avg = item?.avgHoldMs;
    // A reader built without the provider's settings (limit 0) takes the limit its acquirers stored.
    const storedLimit = item?.limit;
    const limit = this.limit === 0 && typeof storedLimit === "number" ? storedLimit : this.limit;
    return { limit, holders, avgHoldMs: typeof avg === "number" ? avg : null };
  }
}

/** Weight of the newest release in the average hold time. */
const HOLD_EWMA = 0.2;

/** A holders map entry: `{ at, t, k }`, or a bare acquire time (an entry older than fair share: tenant unknown). */
function holderOf(jobId: string, value: unknown): SlotHolder {
  if (typeof value === "number") return { jobId, acquiredAt: value, tenant: null, key: null };
  const entry = (value ?? {}) as { at?: unknown; t?: unknown; k?: unknown };
  return {
    jobId,
    acquiredAt: typeof entry.at === "number" ? entry.at : 0,
    tenant: typeof entry.t === "string" ? entry.t : null,
    key: typeof entry.k === "string" ? entry.k : null,
  };
}
