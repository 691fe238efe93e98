/**
 * In-process AWS emulators for integration tests: dynalite (DynamoDB, see local/dynalite.ts) and
 * fauxqs (SQS), each on a random loopback port.
 */
import { CreateTableCommand, DescribeTableCommand, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { startFauxqs } from "fauxqs";
import { startDynalite } from "../../local/dynalite.ts";
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
          { AttributeName: INDEXES.byTenant.partitionKey, AttributeType: "S" },
          { AttributeName: INDEXES.byTenant.sortKey, AttributeType: "S" },
          { AttributeName: INDEXES.byTenantStatus.partitionKey, AttributeType: "S" },
          { AttributeName: INDEXES.due.partitionKey, AttributeType: "S" },
          { AttributeName: INDEXES.due.sortKey, AttributeType: "N" },
        ],
        KeySchema: [
          { AttributeName: TABLE_KEYS.partitionKey, KeyType: "HASH" },
          { AttributeName: TABLE_KEYS.sortKey, KeyType: "RANGE" },
        ],
        GlobalSecondaryIndexes: [gsi(INDEXES.byTenant), gsi(INDEXES.byTenantStatus), gsi(INDEXES.due)],
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
