/**
 * In-process AWS emulators for integration tests: dynalite (DynamoDB, see local/dynalite.ts) and
 * fauxqs (SQS), each on a random loopback port.
 */
import { CreateTableCommand, DescribeTableCommand, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { startFauxqs } from "fauxqs";
import { afterAll, beforeAll } from "vitest";
import { startDynalite } from "../../local/dynalite.ts";
import { createDocumentClient } from "../../shared/adapters/dynamo/client.ts";
import {
  INDEXES,
  type IndexProjection,
  projectionOf,
  TABLE_KEYS,
} from "../../shared/adapters/dynamo/table-design.ts";

export const LOCAL_REGION = "us-east-1";
export const LOCAL_CREDENTIALS = { accessKeyId: "local", secretAccessKey: "local" } as const;

export interface Emulators {
  dynamoEndpoint: string;
  sqsEndpoint: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  stop(): Promise<void>;
}

export async function startEmulators(): Promise<Emulators> {
  const [dynamo, sqs] = await Promise.all([startDynalite(), startFauxqs({ port: 0, logger: false })]);
  return {
    dynamoEndpoint: dynamo.endpoint,
    sqsEndpoint: sqs.address,
    region: LOCAL_REGION,
    credentials: { ...LOCAL_CREDENTIALS },
    stop: async () => {
      await Promise.all([dynamo.stop(), sqs.stop()]);
    },
  };
}

/** Creates the single table exactly as table-design.ts describes it and waits until it is ACTIVE. */
export async function createTestTable(endpoint: string, name: string): Promise<void> {
  const client = new DynamoDBClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  const gsi = (index: {
    name: string;
    partitionKey: string;
    sortKey: string;
    projection: IndexProjection;
  }) => ({
    IndexName: index.name,
    KeySchema: [
      { AttributeName: index.partitionKey, KeyType: "HASH" as const },
      { AttributeName: index.sortKey, KeyType: "RANGE" as const },
    ],
    Projection: projectionOf(index.projection),
  });
  try {
    await client.send(
      new CreateTableCommand({
        TableName: name,
        BillingMode: "PAY_PER_REQUEST",
        AttributeDefinitions: [
          { AttributeName: TABLE_KEYS.partitionKey, AttributeType: "S" },
          { AttributeName: TABLE_KEYS.sortKey, AttributeType: "S" },
          { AttributeName: INDEXES.byTenantStatus.partitionKey, AttributeType: "S" },
          { AttributeName: INDEXES.byTenantStatus.sortKey, AttributeType: "S" },
          { AttributeName: INDEXES.due.partitionKey, AttributeType: "S" },
          { AttributeName: INDEXES.due.sortKey, AttributeType: "N" },
        ],
        KeySchema: [
          { AttributeName: TABLE_KEYS.partitionKey, KeyType: "HASH" },
          { AttributeName: TABLE_KEYS.sortKey, KeyType: "RANGE" },
        ],
        GlobalSecondaryIndexes: [gsi(INDEXES.byTenantStatus), gsi(INDEXES.due)],
      }),
    );
    // createTableMs: 0 makes the table ACTIVE on the next tick; poll without a fixed sleep.
    for (let i = 0; i < 200; i++) {
      const { Table } = await client.send(new DescribeTableCommand({ TableName: name }));
      if (Table?.TableStatus === "ACTIVE") return;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    throw new Error(`Table ${name} did not become ACTIVE.`);
  } finally {
    client.destroy();
  }
}

export interface DynamoFixture {
  readonly emulators: Emulators;
  readonly doc: DynamoDBDocumentClient;
  /** A new, empty table of the single-table design (one per test keeps tests independent). */
  newTable(prefix: string): Promise<string>;
}

/**
 * Registers vitest hooks that start the emulators and a document client on them for the enclosing
 * suite, and stop them after. `enabled: false` registers nothing (contract tests also run in memory).
 */
export function useDynamoTables({ enabled = true }: { enabled?: boolean } = {}): DynamoFixture {
  let emulators: Emulators | undefined;
  let doc: DynamoDBDocumentClient | undefined;
  let tables = 0;
  if (enabled) {
    beforeAll(async () => {
      emulators = await startEmulators();
      doc = createDocumentClient({
        endpoint: emulators.dynamoEndpoint,
        region: emulators.region,
        credentials: emulators.credentials,
      });
    });
    afterAll(async () => {
      doc?.destroy();
      await emulators?.stop();
    });
  }
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error("the emulators are not started (use inside a test)");
    return value;
  };
  return {
    get emulators() {
      return started(emulators);
    },
    get doc() {
      return started(doc);
    },
    async newTable(prefix) {
      const name = `${prefix}-${++tables}`;
      await createTestTable(started(emulators).dynamoEndpoint, name);
      return name;
    },
  };
}
