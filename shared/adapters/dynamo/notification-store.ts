import { deflateRawSync, inflateRawSync } from "node:zlib";
import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import {
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { StaleWriteError } from "../../domain/errors.ts";
import { DEFAULT_RETENTION_DAYS } from "../../domain/job-change.ts";
import type {
  DeliveryAttempt,
  NotificationRecord,
  NotificationState,
  NotificationStore,
} from "../../ports/index.ts";
import { type StoreClient, storeClient } from "./client.ts";
import { notificationKey, TTL_ATTRIBUTE } from "./table-design.ts";

const FIELDS = ["type", "createdAt", "payload", "url", "state", "attempts", "roundStart"] as const;

/**
 * Payloads longer than this are stored deflated (`payloadZ`, binary): a write costs one unit per KB of
 * the whole item, every try rewrites the item, and the presigned URLs in a payload compress to about half.
 */
const COMPRESS_FROM_BYTES = 256;

/**
 * `tenantId` is stored under another name: it is the key attribute of the tenant's job indexes, and a
 * notification must never appear in a tenant's job list. `id` and `jobId` are read from the item's key
 * (`notificationKey`), not stored twice: every try rewrites the item, and a write costs a unit per KB.
 */
const toItem = ({ id: _id, jobId: _jobId, tenantId, payload, ...rest }: NotificationRecord) => ({
  ...rest,
  ...(Buffer.byteLength(payload) >= COMPRESS_FROM_BYTES
    ? { payloadZ: deflateRawSync(payload) }
    : { payload }),
  ownerTenantId: tenantId,
});

const JOB_PREFIX = notificationKey("", "").pk;
const NOTIFICATION_PREFIX = notificationKey("", "").sk;

const fromItem = (item: Record<string, unknown>): NotificationRecord =>
  ({
    ...Object.fromEntries(
      FIELDS.filter((field) => field in item || field !== "roundStart").map((field) => [
        field,
        item[field] ?? null,
      ]),
    ),
    ...(item.payloadZ instanceof Uint8Array && { payload: inflateRawSync(item.payloadZ).toString("utf8") }),
    id: String(item.sk).slice(NOTIFICATION_PREFIX.length),
    jobId: String(item.pk).slice(JOB_PREFIX.length),
    tenantId: item.ownerTenantId,
  }) as unknown as NotificationRecord;

/** Notification records in the jobs table, next to their job (one Query lists a job's notifications). */
export class DynamoNotificationStore implements NotificationStore {
  private readonly doc: StoreClient;

  constructor(
    doc: DynamoDBDocumentClient,
    private readonly tableName: string,
    private readonly retentionDays = DEFAULT_RETENTION_DAYS,
  ) {
    this.doc = storeClient(doc, "notification store");
  }

  async createIfAbsent(
    record: NotificationRecord,
  ): Promise<{ record: NotificationRecord; created: boolean }> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: {
            ...notificationKey(record.jobId, record.id),
            ...toItem(record),
            [TTL_ATTRIBUTE]: Math.floor(Date.parse(record.createdAt) / 1000) + this.retentionDays * 86_400,
          },
          ConditionExpression: "attribute_not_exists(pk)",
        }),
      );
      return { record, created: true };
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      const existing = await this.get(record.jobId, record.id);
      if (!existing) throw error;
      return { record: existing, created: false };
    }
  }

  async get(jobId: string, id: string): Promise<NotificationRecord | null> {
    const out = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: notificationKey(jobId, id), ConsistentRead: true }),
    );
    return out.Item ? fromItem(out.Item) : null;
  }

  async listForJob(jobId: string): Promise<NotificationRecord[]> {
    const out = await this.doc.send(
      new QueryCommand({
        TableName: this.tableName,
        KeyConditionExpression: "pk = :pk AND begins_with(sk, :prefix)",
        ExpressionAttributeValues: { ":pk": `JOB#${jobId}`, ":prefix": "NOTIF#" },
        ConsistentRead: true,
      }),
    );
    return (out.Items ?? []).map(fromItem);
  }

  async recordAttempt(
    record: NotificationRecord,
    attempt: DeliveryAttempt,
    state: NotificationState,
  ): Promise<NotificationRecord> {
    return this.write(record, "SET attempts = list_append(attempts, :attempt), #state = :state", {
      ":attempt": [attempt],
      ":state": state,
    });
  }

  async reopen(record: NotificationRecord): Promise<NotificationRecord> {
    return this.write(record, "SET #state = :state, roundStart = :round", {
      ":state": "pending",
      ":round": record.attempts.length + 1,
    });
  }

  /** Guarded on the tries seen: a duplicate queue message cannot record the same try twice. */
  private async write(
    record: NotificationRecord,
    update: string,
    values: Record<string, unknown>,
  ): Promise<NotificationRecord> {
    try {
      const out = await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: notificationKey(record.jobId, record.id),
          UpdateExpression: update,
          ConditionExpression: "size(attempts) = :seen",
          ExpressionAttributeNames: { "#state": "state" },
          ExpressionAttributeValues: { ...values, ":seen": record.attempts.length },
          ReturnValues: "ALL_NEW",
        }),
      );
      return fromItem(out.Attributes ?? {});
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) {
        throw new StaleWriteError(`notification ${record.id} changed meanwhile`, { cause: error });
      }
      throw error;
    }
  }
}
