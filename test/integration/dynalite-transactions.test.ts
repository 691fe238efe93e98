/**
 * The TransactWriteItems shim of local/dynalite.ts (test support: dynalite has no transactions)
 * against DynamoDB's documented behaviour (API reference, TransactWriteItems).
 */
import { randomUUID } from "node:crypto";
import {
  CreateTableCommand,
  DynamoDBClient,
  IdempotentParameterMismatchException,
  TransactionCanceledException,
  TransactWriteItemsCommand,
} from "@aws-sdk/client-dynamodb";
import { GetCommand, PutCommand, ScanCommand, TransactWriteCommand } from "@aws-sdk/lib-dynamodb";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { boundedHttpHandler } from "../../shared/adapters/aws-client.ts";
import { LOCAL_CREDENTIALS, LOCAL_REGION, useDynamoTables } from "../support/emulators.ts";

const dynamo = useDynamoTables();
let table: string;

beforeEach(async () => {
  table = await dynamo.newTable("tx");
});

afterEach(() => {
  vi.useRealTimers();
});

/** Every item of the table, across Scan's 1 MB pages. */
async function allItems(): Promise<Record<string, unknown>[]> {
  const items: Record<string, unknown>[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const page = await dynamo.doc.send(
      new ScanCommand({ TableName: table, ConsistentRead: true, ExclusiveStartKey: start }),
    );
    items.push(...(page.Items ?? []));
    start = page.LastEvaluatedKey;
  } while (start);
  return items;
}

const put = (pk: string, extra: Record<string, unknown> = {}) => ({
  Put: { TableName: table, Item: { pk, sk: "X", n: 1, ...extra } },
});

const increment = (pk: string) => ({
  Update: {
    TableName: table,
    Key: { pk, sk: "X" },
    UpdateExpression: "SET n = n + :one",
    ExpressionAttributeValues: { ":one": 1 },
  },
});

const counter = async (pk: string) =>
  (await dynamo.doc.send(new GetCommand({ TableName: table, Key: { pk, sk: "X" }, ConsistentRead: true })))
    .Item?.n;

describe("all or nothing", () => {
  it("commits all actions, or undoes every applied one and reports a reason per action", async () => {
    await dynamo.doc.send(new TransactWriteCommand({ TransactItems: [put("A"), put("B"), put("D")] }));

    const error = await dynamo.doc
      .send(
        new TransactWriteCommand({
          TransactItems: [
            put("C"),
            increment("A"),
            { Delete: { TableName: table, Key: { pk: "B", sk: "X" } } },
            {
              ConditionCheck: {
                TableName: table,
                Key: { pk: "D", sk: "X" },
                ConditionExpression: "n = :two",
                ExpressionAttributeValues: { ":two": 2 },
                ReturnValuesOnConditionCheckFailure: "ALL_OLD",
              },
            },
          ],
        }),
      )
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransactionCanceledException);
    expect((error as TransactionCanceledException).CancellationReasons?.map((r) => r.Code)).toEqual([
      "None",
      "None",
      "None",
      "ConditionalCheckFailed",
    ]);
    expect((error as TransactionCanceledException).CancellationReasons?.[3]?.Item).toMatchObject({
      n: { N: "1" },
    }); // not unmarshalled by lib-dynamodb
    // Nothing changed: C absent, A not incremented, B not deleted.
    expect((await allItems()).map((i) => [i.pk, i.n]).sort()).toEqual([
      ["A", 1],
      ["B", 1],
      ["D", 1],
    ]);
  });

  it("leaves no trace of a ConditionCheck on a missing item, committed or not", async () => {
    const absent = {
      ConditionCheck: {
        TableName: table,
        Key: { pk: "GONE", sk: "X" },
        ConditionExpression: "attribute_not_exists(pk)",
      },
    };
    await dynamo.doc.send(new TransactWriteCommand({ TransactItems: [put("A"), absent] }));
    expect((await allItems()).map((i) => i.pk)).toEqual(["A"]);
  });
});

describe("two actions on one item", () => {
  const refused = {
    name: "ValidationException",
    message: expect.stringMatching(/multiple operations on one item/),
  };

  it("are refused when the keys are spelt alike", async () => {
    const item = { pk: "A", sk: "X" };
    await expect(
      dynamo.doc.send(
        new TransactWriteCommand({
          TransactItems: [
            { Put: { TableName: table, Item: item } },
            { Delete: { TableName: table, Key: item } },
          ],
        }),
      ),
    ).rejects.toMatchObject(refused);
  });

  it("are refused when the key attributes come in another order, and nothing is written", async () => {
    await expect(
      dynamo.doc.send(
        new TransactWriteCommand({
          TransactItems: [put("A"), { Delete: { TableName: table, Key: { sk: "X", pk: "A" } } }],
        }),
      ),
    ).rejects.toMatchObject(refused);
    await expect(
      dynamo.doc.send(
        new TransactWriteCommand({
          TransactItems: [
            { Update: { ...increment("B").Update, Key: { sk: "X", pk: "B" } } },
            {
              ConditionCheck: {
                TableName: table,
                Key: { pk: "B", sk: "X" },
                ConditionExpression: "attribute_not_exists(pk)",
              },
            },
          ],
        }),
      ),
    ).rejects.toMatchObject(refused);
    expect(await allItems()).toEqual([]);
  });

  it("are refused when one number key is spelt two ways", async () => {
    const numbered = `${table}-n`;
    const client = new DynamoDBClient({
      endpoint: dynamo.emulators.dynamoEndpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    });
    try {
      await client.send(
        new CreateTableCommand({
          TableName: numbered,
          BillingMode: "PAY_PER_REQUEST",
          AttributeDefinitions: [{ AttributeName: "id", AttributeType: "N" }],
          KeySchema: [{ AttributeName: "id", KeyType: "HASH" }],
        }),
      );
      await expect(
        client.send(
          new TransactWriteItemsCommand({
            TransactItems: [
              { Put: { TableName: numbered, Item: { id: { N: "1.50" } } } },
              { Delete: { TableName: numbered, Key: { id: { N: "15e-1" } } } },
            ],
          }),
        ),
      ).rejects.toMatchObject(refused);
      // Different numbers stay different items.
      await client.send(
        new TransactWriteItemsCommand({
          TransactItems: [
            { Put: { TableName: numbered, Item: { id: { N: "15" } } } },
            { Put: { TableName: numbered, Item: { id: { N: "1.5" } } } },
          ],
        }),
      );
    } finally {
      client.destroy();
    }
  });
});

describe("ClientRequestToken", () => {
  // One dynalite serves the whole file and remembers tokens: each test has its own.
  let token: string;
  beforeEach(() => {
    token = randomUUID();
  });

  it("answers the repeat of a committed request with success and applies it once", async () => {
    await dynamo.doc.send(new PutCommand({ TableName: table, Item: { pk: "A", sk: "X", n: 1 } }));
    const request = { TransactItems: [increment("A"), put("B")], ClientRequestToken: token };
    await dynamo.doc.send(new TransactWriteCommand(request));
    await dynamo.doc.send(new TransactWriteCommand(request));
    expect(await counter("A")).toBe(2);
    expect(await counter("B")).toBe(1);
  });

  it("lets the SDK's retry after a lost response succeed without applying twice", async () => {
    // The first answer is dropped after the shim committed, as a connection reset would; the SDK
    // retries with the same serialised request, token included.
    const inner = boundedHttpHandler();
    let attempts = 0;
    const client = new DynamoDBClient({
      endpoint: dynamo.emulators.dynamoEndpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
      maxAttempts: 3,
      requestHandler: {
        handle: async (...args: Parameters<typeof inner.handle>) => {
          const answer = await inner.handle(...args);
          if (++attempts === 1) {
            (answer.response.body as NodeJS.ReadableStream).resume();
            throw Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
          }
          return answer;
        },
      } as never,
    });
    try {
      await dynamo.doc.send(new PutCommand({ TableName: table, Item: { pk: "A", sk: "X", n: 1 } }));
      await client.send(
        new TransactWriteItemsCommand({
          TransactItems: [
            {
              Put: {
                TableName: table,
                Item: { pk: { S: "NEW" }, sk: { S: "X" }, n: { N: "1" } },
                ConditionExpression: "attribute_not_exists(pk)",
              },
            },
            {
              Update: {
                TableName: table,
                Key: { pk: { S: "A" }, sk: { S: "X" } },
                UpdateExpression: "SET n = n + :one",
                ExpressionAttributeValues: { ":one": { N: "1" } },
              },
            },
          ],
        }),
      );
      expect(attempts).toBe(2);
      expect(await counter("A")).toBe(2);
    } finally {
      client.destroy();
      inner.destroy();
    }
  });

  it("refuses the same token with a different request, and applies nothing", async () => {
    await dynamo.doc.send(new TransactWriteCommand({ TransactItems: [put("A")], ClientRequestToken: token }));
    const error = await dynamo.doc
      .send(new TransactWriteCommand({ TransactItems: [put("B")], ClientRequestToken: token }))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotentParameterMismatchException);
    expect((await allItems()).map((i) => i.pk)).toEqual(["A"]);
  });

  it("treats the token as new ten minutes after the request committed", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    await dynamo.doc.send(new PutCommand({ TableName: table, Item: { pk: "A", sk: "X", n: 1 } }));
    const request = { TransactItems: [increment("A")], ClientRequestToken: token };
    await dynamo.doc.send(new TransactWriteCommand(request));
    vi.setSystemTime(Date.now() + 10 * 60_000 - 1_000);
    await dynamo.doc.send(new TransactWriteCommand(request));
    expect(await counter("A")).toBe(2);
    vi.setSystemTime(Date.now() + 2_000);
    await dynamo.doc.send(new TransactWriteCommand(request));
    expect(await counter("A")).toBe(3);
  });

  it("runs the repeat of a cancelled request again", async () => {
    const request = {
      TransactItems: [
        {
          ConditionCheck: {
            TableName: table,
            Key: { pk: "GATE", sk: "X" },
            ConditionExpression: "attribute_exists(pk)",
          },
        },
        put("B"),
      ],
      ClientRequestToken: token,
    };
    await expect(dynamo.doc.send(new TransactWriteCommand(request))).rejects.toBeInstanceOf(
      TransactionCanceledException,
    );
    await dynamo.doc.send(new PutCommand({ TableName: table, Item: { pk: "GATE", sk: "X" } }));
    await dynamo.doc.send(new TransactWriteCommand(request));
    expect(await counter("B")).toBe(1);
  });
});

describe("refused requests", () => {
  it("refuses a ConditionCheck without ConditionExpression, and writes nothing", async () => {
    const error = await dynamo.doc
      .send(
        new TransactWriteCommand({
          TransactItems: [
            put("A"),
            { ConditionCheck: { TableName: table, Key: { pk: "B", sk: "X" } } },
          ] as never,
        }),
      )
      .catch((e: unknown) => e);
    expect(error).toMatchObject({
      name: "ValidationException",
      message: expect.stringMatching(/transactItems\.2\.member\.conditionCheck\.conditionExpression/),
    });
    expect(await allItems()).toEqual([]);
  });

  it("takes 100 actions and refuses 101", async () => {
    const puts = (n: number) => Array.from({ length: n }, (_, i) => put(`P${i}`));
    await expect(
      dynamo.doc.send(new TransactWriteCommand({ TransactItems: puts(101) })),
    ).rejects.toMatchObject({ name: "ValidationException" });
    expect(await allItems()).toEqual([]);
    await dynamo.doc.send(new TransactWriteCommand({ TransactItems: puts(100) }));
    expect(await allItems()).toHaveLength(100);
  });

  it("refuses items over 4 MB together, each under the 400 KB item limit", async () => {
    const blob = "x".repeat(390_000);
    const puts = (n: number) => Array.from({ length: n }, (_, i) => put(`P${i}`, { blob }));
    await expect(
      dynamo.doc.send(new TransactWriteCommand({ TransactItems: puts(11) })),
    ).rejects.toMatchObject({ name: "ValidationException", message: expect.stringMatching(/4 MB/) });
    expect(await allItems()).toEqual([]);
    await dynamo.doc.send(new TransactWriteCommand({ TransactItems: puts(10) }));
    expect(await allItems()).toHaveLength(10);
  });

  it("answers a body that is not JSON with a 400, not a server error", async () => {
    const response = await fetch(dynamo.emulators.dynamoEndpoint, {
      method: "POST",
      headers: {
        "content-type": "application/x-amz-json-1.0",
        "x-amz-target": "DynamoDB_20120810.TransactWriteItems",
      },
      body: "{not json",
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { __type: string }).__type).toMatch(/SerializationException$/);
  });
});
