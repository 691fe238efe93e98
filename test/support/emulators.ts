/**
 * AWS emulators for integration tests. By default in-process, each on a random loopback port:
 * dynalite (DynamoDB, see local/dynalite.ts) and fauxqs (SQS and S3). With AWS_EMULATOR=moto, the one
 * moto_server that `npm run test:moto` started (AWS_EMULATOR_ENDPOINT; see test/support/moto.ts), which
 * every test file of the run shares: tables, queues and buckets then get names unique to the file.
 */
import { randomBytes } from "node:crypto";
import { CreateTableCommand, DescribeTableCommand, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
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
import { createS3Client } from "../../shared/adapters/s3/object-store.ts";

export const LOCAL_REGION = "us-east-1";
export const LOCAL_CREDENTIALS = { accessKeyId: "local", secretAccessKey: "local" } as const;

/** Which emulators this run uses: "local" (dynalite and fauxqs) or "moto" (`npm run test:moto`). */
export const EMULATOR: "local" | "moto" = process.env.AWS_EMULATOR === "moto" ? "moto" : "local";

/** This test process's mark on the names it creates on a shared emulator. */
const RUN_ID = randomBytes(4).toString("hex");

/**
 * `base` as a name of this test file's own: unchanged locally (each file has its own emulators),
 * suffixed on moto (one emulator for every file of the run).
 */
export function ownName(base: string): string {
  return EMULATOR === "moto" ? `${base}-${RUN_ID}` : base;
}

/** The shared emulator's endpoint (DynamoDB, SQS and S3 alike) when the run uses moto; else undefined. */
export function sharedEmulatorEndpoint(): string | undefined {
  if (EMULATOR !== "moto") return undefined;
  const endpoint = process.env.AWS_EMULATOR_ENDPOINT;
  if (!endpoint) {
    throw new Error("AWS_EMULATOR=moto needs AWS_EMULATOR_ENDPOINT (npm run test:moto sets both)");
  }
  return endpoint;
}

export interface S3Emulator {
  s3Endpoint: string;
  /** Creates an S3 bucket; name it with `ownName`. */
  createBucket(name: string): Promise<void>;
  stop(): Promise<void>;
}

export interface Emulators extends S3Emulator {
  dynamoEndpoint: string;
  sqsEndpoint: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
}

/** S3 alone: fauxqs in-process, or the run's moto. */
export async function startS3Emulator(): Promise<S3Emulator> {
  const shared = sharedEmulatorEndpoint();
  if (shared)
    return { s3Endpoint: shared, createBucket: createBucketOn(shared), stop: async () => undefined };
  const fauxqs = await startFauxqs({ port: 0, logger: false });
  return {
    s3Endpoint: fauxqs.address,
    createBucket: async (name) => {
      fauxqs.createBucket(name);
    },
    stop: () => fauxqs.stop(),
  };
}

export async function startEmulators(): Promise<Emulators> {
  const shared = sharedEmulatorEndpoint();
  if (shared) {
    return {
      dynamoEndpoint: shared,
      sqsEndpoint: shared,
      s3Endpoint: shared,
      region: LOCAL_REGION,
      credentials: { ...LOCAL_CREDENTIALS },
      createBucket: createBucketOn(shared),
      // The run's globalSetup stops moto.
      stop: async () => undefined,
    };
  }
  const [dynamo, fauxqs] = await Promise.all([startDynalite(), startFauxqs({ port: 0, logger: false })]);
  return {
    dynamoEndpoint: dynamo.endpoint,
    sqsEndpoint: fauxqs.address,
    s3Endpoint: fauxqs.address, // fauxqs serves S3 too (path-style)
    region: LOCAL_REGION,
    credentials: { ...LOCAL_CREDENTIALS },
    createBucket: async (name) => {
      fauxqs.createBucket(name);
    },
    stop: async () => {
      await Promise.all([dynamo.stop(), fauxqs.stop()]);
    },
  };
}

const createBucketOn =
  (endpoint: string) =>
  async (name: string): Promise<void> => {
    const s3 = createS3Client({ endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
    try {
      await s3.send(new CreateBucketCommand({ Bucket: name }));
    } finally {
      s3.destroy();
    }
  };

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

/** Counts across fixtures: two in one file must not name two tables alike on a shared emulator. */
let tableCount = 0;

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
      const name = ownName(`${prefix}-${++tableCount}`);
      await createTestTable(started(emulators).dynamoEndpoint, name);
      return name;
    },
  };
}
