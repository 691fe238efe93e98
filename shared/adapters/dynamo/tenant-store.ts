import { ConditionalCheckFailedException, TransactionCanceledException } from "@aws-sdk/client-dynamodb";
import {
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  TransactWriteCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { type AdmissionSettings, checkAdmissionSettings, DEFAULT_ADMISSION } from "../../domain/admission.ts";
import { ConflictError, NotFoundError, UnavailableError } from "../../domain/errors.ts";
import { newJobId } from "../../domain/ids.ts";
import type {
  ApiKeyRecord,
  ApiKeyStore,
  Clock,
  Tenant,
  TenantAdmissionStore,
  TenantStore,
  WebhookSettings,
  WebhookSettingsStore,
} from "../../ports/index.ts";
import { systemClock } from "../../ports/index.ts";
import { type StoreClient, storeClient } from "./client.ts";
import { apiKeyKey, tenantApiKeyKey, tenantKey } from "./table-design.ts";

/** Counts a tenant's listed API keys, on the tenant item: bounds creation, refuses revoking the last. */
const KEY_COUNT = "apiKeyCount";

/** Counts the writes of a tenant's `webhookSecrets`; each rotation writes on the version it read. */
const SECRETS_VERSION = "webhookSecretsVersion";

/** Tries of one rotation before it gives up to concurrent ones (see addWebhookSecret). */
const SECRET_WRITE_ATTEMPTS = 10;

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class DynamoTenantStore
  implements TenantStore, WebhookSettingsStore, ApiKeyStore, TenantAdmissionStore
{
  private readonly clock: Clock;
  private readonly doc: StoreClient;

  constructor(
    doc: DynamoDBDocumentClient,
    private readonly tableName: string,
    options: { clock?: Clock } = {},
  ) {
    this.doc = storeClient(doc, "tenant store");
    this.clock = options.clock ?? systemClock;
  }

  async findByApiKeyHash(keyHash: string): Promise<Tenant | null> {
    // Consistent reads: a key or tenant created a moment ago must authenticate at once.
    const key = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: apiKeyKey(keyHash), ConsistentRead: true }),
    );
    const tenantId = key.Item?.tenantId;
    if (typeof tenantId !== "string") return null;
    const tenant = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: tenantKey(tenantId), ConsistentRead: true }),
    );
    const item = tenant.Item;
    if (!item) return null;
    return { id: String(item.id), name: String(item.name), createdAt: String(item.createdAt) };
  }

  async createTenant(tenant: Tenant): Promise<void> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: {
            ...tenantKey(tenant.id),
            type: "tenant",
            id: tenant.id,
            name: tenant.name,
            createdAt: tenant.createdAt,
          },
          ConditionExpression: "attribute_not_exists(pk)",
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) {
        throw new ConflictError("TENANT_EXISTS", `Tenant ${tenant.id} already exists.`);
      }
      throw error;
    }
  }

  /** Idempotent for the same tenant; a key hash already owned by another tenant is a conflict. */
  async addApiKey(tenantId: string, keyHash: string, prefix = ""): Promise<void> {
    await this.insertApiKey(tenantId, { keyHash, prefix, name: null }, undefined);
  }

  async createApiKey(
    tenantId: string,
    key: { keyHash: string; prefix: string; name: string | null },
    limit: number,
  ): Promise<ApiKeyRecord> {
    const record = await this.insertApiKey(tenantId, key, limit);
    // A fresh key's hash is never registered already; one that is was someone's key.
    if (!record) throw new ConflictError("API_KEY_EXISTS", "This API key is already registered.");
    return record;
  }

  /**
   * One transaction: the lookup item (by hash, what the authorizer reads), the tenant's listing item
   * and the tenant's key count (bounded by `limit` when given). Null when the hash already belongs
   * to this tenant.
   */
  private async insertApiKey(
    tenantId: string,
    key: { keyHash: string; prefix: string; name: string | null },
    limit: number | undefined,
  ): Promise<ApiKeyRecord | null> {
    const existing = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: apiKeyKey(key.keyHash), ConsistentRead: true }),
    );
    if (existing.Item) return this.alreadyRegistered(tenantId, existing.Item);
    const now = this.clock.now();
    const record: ApiKeyRecord = {
      id: `key_${newJobId(now.getTime())}`,
      name: key.name,
      prefix: key.prefix,
      createdAt: now.toISOString(),
    };
    try {
      await this.doc.send(
        new TransactWriteCommand({
          TransactItems: [
            {
              Update: {
                TableName: this.tableName,
                Key: tenantKey(tenantId),
                UpdateExpression: "SET #count = if_not_exists(#count, :zero) + :one",
                ConditionExpression:
                  limit === undefined
                    ? "attribute_exists(pk)"
                    : "attribute_exists(pk) AND (attribute_not_exists(#count) OR #count < :limit)",
                ExpressionAttributeNames: { "#count": KEY_COUNT },
                ExpressionAttributeValues: {
                  ":zero": 0,
                  ":one": 1,
                  ...(limit !== undefined && { ":limit": limit }),
                },
              },
            },
            {
              Put: {
                TableName: this.tableName,
                Item: {
                  ...apiKeyKey(key.keyHash),
                  type: "apiKey",
                  tenantId,
                  keyId: record.id,
                  createdAt: record.createdAt,
                },
                ConditionExpression: "attribute_not_exists(pk)",
              },
            },
            {
              Put: {
                TableName: this.tableName,
                Item: {
                  ...tenantApiKeyKey(tenantId, record.id),
                  type: "tenantApiKey",
                  id: record.id,
                  name: record.name,
                  prefix: record.prefix,
                  keyHash: key.keyHash,
                  createdAt: record.createdAt,
                },
                ConditionExpression: "attribute_not_exists(pk)",
              },
            },
          ],
        }),
      );
      return record;
    } catch (error) {
      if (!(error instanceof TransactionCanceledException)) throw error;
      const [tenantReason, lookupReason] = (error.CancellationReasons ?? []).map((r) => r.Code);
      if (lookupReason === "ConditionalCheckFailed") {
        // Registered concurrently: by this tenant (the same key added twice at once) or another.
        const raced = await this.doc.send(
          new GetCommand({ TableName: this.tableName, Key: apiKeyKey(key.keyHash), ConsistentRead: true }),
        );
        if (raced.Item) return this.alreadyRegistered(tenantId, raced.Item);
      }
      if (tenantReason === "ConditionalCheckFailed") {
        const tenant = await this.doc.send(
          new GetCommand({ TableName: this.tableName, Key: tenantKey(tenantId), ConsistentRead: true }),
        );
        if (!tenant.Item) throw new NotFoundError("TENANT_NOT_FOUND", `Tenant ${tenantId} does not exist.`);
        throw new ConflictError(
          "API_KEY_LIMIT_REACHED",
          `A tenant has at most ${limit} API keys; revoke one before creating another.`,
        );
      }
      throw new UnavailableError("STORE_UNAVAILABLE", "The API key could not be stored; try again.", {
        cause: error,
      });
    }
  }

  private alreadyRegistered(tenantId: string, item: Record<string, unknown>): null {
    if (item.tenantId === tenantId) return null;
    throw new ConflictError("API_KEY_EXISTS", "This API key is already registered to another tenant.");
  }

  async listApiKeys(tenantId: string, limit: number): Promise<ApiKeyRecord[]> {
    const out = await this.doc.send(
      new QueryCommand({
        TableName: this.tableName,
        KeyConditionExpression: "pk = :pk AND begins_with(sk, :prefix)",
        ExpressionAttributeValues: { ":pk": tenantKey(tenantId).pk, ":prefix": "APIKEY#" },
        ConsistentRead: true,
        Limit: limit,
      }),
    );
    return (out.Items ?? []).map((item) => ({
      id: String(item.id),
      name: typeof item.name === "string" ? item.name : null,
      prefix: String(item.prefix ?? ""),
      createdAt: String(item.createdAt),
    }));
  }

  async revokeApiKey(tenantId: string, id: string): Promise<void> {
    const notFound = () => new NotFoundError("API_KEY_NOT_FOUND", `No API key ${id} for this tenant.`);
    const listed = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: tenantApiKeyKey(tenantId, id), ConsistentRead: true }),
    );
    const keyHash = listed.Item?.keyHash;
    if (typeof keyHash !== "string") throw notFound();
    try {
      await this.doc.send(
        new TransactWriteCommand({
          TransactItems: [
            {
              Delete: {
                TableName: this.tableName,
                Key: tenantApiKeyKey(tenantId, id),
                ConditionExpression: "attribute_exists(pk)",
              },
            },
            {
              Update: {
                TableName: this.tableName,
                Key: tenantKey(tenantId),
                UpdateExpression: "SET #count = #count - :one",
                ConditionExpression: "#count > :one",
                ExpressionAttributeNames: { "#count": KEY_COUNT },
                ExpressionAttributeValues: { ":one": 1 },
              },
            },
            { Delete: { TableName: this.tableName, Key: apiKeyKey(keyHash) } },
          ],
        }),
      );
    } catch (error) {
      if (!(error instanceof TransactionCanceledException)) throw error;
      const [listedReason, countReason] = (error.CancellationReasons ?? []).map((r) => r.Code);
      if (listedReason === "ConditionalCheckFailed") throw notFound();
      if (countReason === "ConditionalCheckFailed") {
        throw new ConflictError(
          "LAST_API_KEY",
          "This is the tenant's only API key: create another before revoking it.",
        );
      }
      throw new UnavailableError("STORE_UNAVAILABLE", "The API key could not be revoked; try again.", {
        cause: error,
      });
    }
  }

  /** The tenant's admission settings; defaults for a tenant that set none (or is unknown: it only waits). */
  async admissionSettings(tenantId: string): Promise<AdmissionSettings> {
    const out = await this.doc.send(new GetCommand({ TableName: this.tableName, Key: tenantKey(tenantId) }));
    const weight = out.Item?.admissionWeight;
    const max = out.Item?.admissionMaxConcurrency;
    return {
      weight: typeof weight === "number" ? weight : DEFAULT_ADMISSION.weight,
      maxConcurrency: typeof max === "number" ? max : DEFAULT_ADMISSION.maxConcurrency,
    };
  }

  /** Sets the tenant's weight and max concurrency (null: none), checked against their bounds. */
  async setAdmissionSettings(tenantId: string, settings: AdmissionSettings): Promise<void> {
    const checked = checkAdmissionSettings(settings);
    await this.updateTenant(
      tenantId,
      checked.maxConcurrency === null
        ? "SET admissionWeight = :weight REMOVE admissionMaxConcurrency"
        : "SET admissionWeight = :weight, admissionMaxConcurrency = :max",
      {
        ":weight": checked.weight,
        ...(checked.maxConcurrency !== null && { ":max": checked.maxConcurrency }),
      },
    );
  }

  async getWebhookSettings(tenantId: string): Promise<WebhookSettings> {
    return (await this.readWebhookSettings(tenantId)).settings;
  }

  /** The settings with the secrets still in force, and the version of the secret list they were read at. */
  private async readWebhookSettings(
    tenantId: string,
  ): Promise<{ settings: WebhookSettings; version: number | undefined }> {
    const out = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: tenantKey(tenantId), ConsistentRead: true }),
    );
    if (!out.Item) throw new NotFoundError("TENANT_NOT_FOUND", `Tenant ${tenantId} does not exist.`);
    const now = this.clock.now().toISOString();
    const secrets = ((out.Item.webhookSecrets as WebhookSettings["secrets"] | undefined) ?? []).filter(
      (s) => s.retiresAt === null || s.retiresAt > now,
    );
    const version = out.Item[SECRETS_VERSION];
    return {
      settings: { url: typeof out.Item.webhookUrl === "string" ? out.Item.webhookUrl : null, secrets },
      version: typeof version === "number" ? version : undefined,
    };
  }

  async setWebhookUrl(tenantId: string, url: string | null): Promise<void> {
    await this.updateTenant(
      tenantId,
      url === null ? "REMOVE webhookUrl" : "SET webhookUrl = :url",
      url === null ? {} : { ":url": url },
    );
  }

  /**
   * Read, then a write conditional on the version of the secret list read: a rotation that raced
   * another reads again and re-applies itself on top, so every secret a caller was shown stays in the
   * list. A write fails only when another rotation landed after its read, so `n` concurrent rotations
   * all land within `n` attempts; past SECRET_WRITE_ATTEMPTS the caller is asked to try again (its
   * secret was not stored, and is never shown).
   */
  async addWebhookSecret(tenantId: string, secret: string, now: Date, previousRetireAt: Date): Promise<void> {
    const retire = previousRetireAt.toISOString();
    for (let attempt = 1; ; attempt++) {
      const { settings, version } = await this.readWebhookSettings(tenantId);
      const secrets = [
        { secret, createdAt: now.toISOString(), retiresAt: null },
        ...settings.secrets.map((s) => ({
          ...s,
          retiresAt: s.retiresAt && s.retiresAt < retire ? s.retiresAt : retire,
        })),
      ];
      try {
        await this.doc.send(
          new UpdateCommand({
            TableName: this.tableName,
            Key: tenantKey(tenantId),
            UpdateExpression: "SET webhookSecrets = :secrets, #version = :next",
            ConditionExpression:
              version === undefined
                ? "attribute_exists(pk) AND attribute_not_exists(#version)"
                : "#version = :seen",
            ExpressionAttributeNames: { "#version": SECRETS_VERSION },
            ExpressionAttributeValues: {
              ":secrets": secrets,
              ":next": (version ?? 0) + 1,
              ...(version !== undefined && { ":seen": version }),
            },
          }),
        );
        return;
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
        if (attempt >= SECRET_WRITE_ATTEMPTS) {
          throw new UnavailableError(
            "STORE_UNAVAILABLE",
            "The webhook secrets kept changing concurrently; try the rotation again.",
            { cause: error },
          );
        }
        // Spread the retries of rotations that raced each other, so fewer of them collide again.
        await pause(Math.random() * 10 * attempt);
      }
    }
  }

  private async updateTenant(
    tenantId: string,
    expression: string,
    values: Record<string, unknown>,
  ): Promise<void> {
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: tenantKey(tenantId),
          UpdateExpression: expression,
          ConditionExpression: "attribute_exists(pk)",
          ...(Object.keys(values).length > 0 && { ExpressionAttributeValues: values }),
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) {
        throw new NotFoundError("TENANT_NOT_FOUND", `Tenant ${tenantId} does not exist.`);
      }
      throw error;
    }
  }
}
