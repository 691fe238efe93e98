import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import { type DynamoDBDocumentClient, GetCommand, PutCommand, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import { ConflictError, NotFoundError, UnavailableError } from "../../domain/errors.ts";
import type { Clock, Tenant, TenantStore, WebhookSettings, WebhookSettingsStore } from "../../ports/index.ts";
import { systemClock } from "../../ports/index.ts";
import { type StoreClient, storeClient } from "./client.ts";
import { apiKeyKey, tenantKey } from "./table-design.ts";

/** Counts the writes of a tenant's `webhookSecrets`; each rotation writes on the version it read. */
const SECRETS_VERSION = "webhookSecretsVersion";

/** Tries of one rotation before it gives up to concurrent ones (see addWebhookSecret). */
const SECRET_WRITE_ATTEMPTS = 10;

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class DynamoTenantStore implements TenantStore, WebhookSettingsStore {
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

  /**
   * Idempotent for the same tenant; a key hash already owned by another tenant is a conflict.
   * Not a transaction: tenants are never deleted, so "the tenant exists" cannot turn false between
   * the read and the write (and plain writes keep this usable on emulators without transactions).
   */
  async addApiKey(tenantId: string, keyHash: string): Promise<void> {
    try {
      const tenant = await this.doc.send(
        new GetCommand({ TableName: this.tableName, Key: tenantKey(tenantId), ConsistentRead: true }),
      );
      if (!tenant.Item) throw new NotFoundError("TENANT_NOT_FOUND", `Tenant ${tenantId} does not exist.`);
      await this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: {
            ...apiKeyKey(keyHash),
            type: "apiKey",
            tenantId,
            createdAt: this.clock.now().toISOString(),
          },
          ConditionExpression: "attribute_not_exists(pk) OR tenantId = :tenantId",
          ExpressionAttributeValues: { ":tenantId": tenantId },
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) {
        throw new ConflictError("API_KEY_EXISTS", "This API key is already registered to another tenant.");
      }
      throw error;
    }
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
