/**
 * dynalite (DynamoDB on LevelDB, in-process) for the local stack and the tests.
 *
 * dynalite 4 implements neither TransactWriteItems nor UpdateTimeToLive. `startDynalite` therefore
 * installs a small TransactWriteItems shim in front of it (see `installTransactWriteItems`), so the
 * adapters' transactional code paths run unchanged against the emulator.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { crc32 } from "node:zlib";

interface DynaliteOptions {
  createTableMs?: number;
  deleteTableMs?: number;
  updateTableMs?: number;
  /** LevelDB folder; in-memory when absent. */
  path?: string;
}

// dynalite ships no TypeScript declarations; this is the part of its API we use.
const dynalite = createRequire(import.meta.url)("dynalite") as (options?: DynaliteOptions) => Server;

export interface DynaliteHandle {
  endpoint: string;
  stop(): Promise<void>;
}

/** dynalite on 127.0.0.1 (port 0 = any free port), with tables ACTIVE at once and TransactWriteItems. */
export async function startDynalite(
  options: DynaliteOptions & { port?: number } = {},
): Promise<DynaliteHandle> {
  const { port = 0, ...rest } = options;
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0, ...rest });
  installTransactWriteItems(server);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  const { port: bound } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${bound}`,
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        // Keep-alive sockets from SDK clients would otherwise hold close() open.
        server.closeAllConnections();
      }),
  };
}
// ---------------------------------------------------------------------------------------------
// TransactWriteItems for dynalite.
//
// Each transaction runs alone (transactions are serialised) and is all-or-nothing: every action is
// applied with its own condition through dynalite's single-item API, having first snapshotted the
// item; if any condition fails, every applied action is undone from the snapshots and the client
// gets a TransactionCanceledException with one reason per action, in order, like DynamoDB.
// A ConditionCheck is evaluated by rewriting the item with itself under the condition.
// Limits: plain (non-transactional) writes are not isolated from a running transaction, and
// ClientRequestToken idempotency is not implemented.
// ---------------------------------------------------------------------------------------------

type Wire = Record<string, unknown>;
type WireItem = Record<string, unknown>;
type Reply = { status: number; body: Wire };

interface Action {
  kind: "Put" | "Update" | "Delete" | "ConditionCheck";
  spec: Wire;
  tableName: string;
  key: WireItem;
  snapshot: WireItem | undefined;
}

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

/** Adds TransactWriteItems to a dynalite server; call before `listen`. */
export function installTransactWriteItems(server: Server): void {
  const [original] = server.listeners("request") as RequestListener[];
  if (!original) throw new Error("dynalite server has no request listener");
  server.removeAllListeners("request");
  let queue: Promise<unknown> = Promise.resolve();
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const target = String(req.headers["x-amz-target"] ?? "");
    if (req.method !== "POST" || !target.endsWith(".TransactWriteItems")) {
      original.call(server, req, res);
      return;
    }
    const run = queue.then(async () => {
      const { port } = server.address() as AddressInfo;
      let reply: Reply;
      try {
        reply = await transactWrite(`http://127.0.0.1:${port}`, JSON.parse(await readBody(req)) as Wire);
      } catch (error) {
        reply = fault("com.amazonaws.dynamodb.v20120810#InternalServerError", String(error), 500);
      }
      const body = JSON.stringify(reply.body);
      res.writeHead(reply.status, {
        "content-type": "application/x-amz-json-1.0",
        "content-length": Buffer.byteLength(body),
        "x-amz-crc32": String(crc32(body)),
        "x-amzn-requestid": `shim-${Date.now()}`,
      });
      res.end(body);
    });
    queue = run.catch(() => undefined);
  });
}

const readBody = async (req: IncomingMessage): Promise<string> => {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
};

const fault = (type: string, message: string, status = 400): Reply => ({
  status,
  body: { __type: type, message },
});
const validation = (message: string) => fault("com.amazon.coral.validate#ValidationException", message);

/** Calls dynalite itself. It checks only that a SigV4-shaped header is present, not the signature. */
async function call(endpoint: string, operation: string, body: Wire): Promise<Reply> {
  const res = await fetch(endpoint, {
    method: "POST",
    headers: {
      "content-type": "application/x-amz-json-1.0",
      "x-amz-target": `DynamoDB_20120810.${operation}`,
      "x-amz-date": "20240101T000000Z",
      authorization:
        "AWS4-HMAC-SHA256 Credential=local/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
    },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Wire };
}

const keySchemas = new Map<string, string[]>();

async function keyNames(endpoint: string, tableName: string): Promise<string[] | Reply> {
  const cacheKey = `${endpoint}/${tableName}`;
  const cached = keySchemas.get(cacheKey);
  if (cached) return cached;
  const reply = await call(endpoint, "DescribeTable", { TableName: tableName });
  if (reply.status !== 200) return reply;
  const schema = (reply.body.Table as { KeySchema: { AttributeName: string }[] }).KeySchema;
  const names = schema.map((k) => k.AttributeName);
  keySchemas.set(cacheKey, names);
  return names;
}

async function transactWrite(endpoint: string, request: Wire): Promise<Reply> {
  const items = request.TransactItems;
  if (!Array.isArray(items) || items.length < 1 || items.length > 100) {
    return validation("TransactItems must have between 1 and 100 items.");
  }
  const actions: Action[] = [];
  const seen = new Set<string>();
  for (const entry of items as Wire[]) {
    const kinds = (["Put", "Update", "Delete", "ConditionCheck"] as const).filter(
      (k) => entry[k] !== undefined,
    );
    const kind = kinds[0];
    if (kinds.length !== 1 || kind === undefined)
      return validation("Each TransactItem must hold exactly one action.");
    const spec = entry[kind] as Wire;
    const tableName = String(spec.TableName);
    let key: WireItem;
    if (kind === "Put") {
      const names = await keyNames(endpoint, tableName);
      if (!Array.isArray(names)) return names;
      const item = spec.Item as WireItem;
      key = Object.fromEntries(names.map((n) => [n, item[n]]));
    } else {
      key = spec.Key as WireItem;
    }
    const identity = JSON.stringify([tableName, key]);
    if (seen.has(identity)) {
      return validation("Transaction request cannot include multiple operations on one item");
    }
    seen.add(identity);
    const got = await call(endpoint, "GetItem", { TableName: tableName, Key: key, ConsistentRead: true });
    if (got.status !== 200) return got;
    actions.push({ kind, spec, tableName, key, snapshot: got.body.Item as WireItem | undefined });
  }

  const reasons: Wire[] = [];
  const applied: Action[] = [];
  let failed = false;
  for (const action of actions) {
    const reply = await call(endpoint, ...single(action));
    if (reply.status === 200) {
      applied.push(action);
      reasons.push({ Code: "None" });
      continue;
    }
    if (String(reply.body.__type).endsWith("#ConditionalCheckFailedException")) {
      failed = true;
      const reason: Wire = { Code: "ConditionalCheckFailed", Message: "The conditional request failed" };
      if (action.spec.ReturnValuesOnConditionCheckFailure === "ALL_OLD" && action.snapshot) {
        reason.Item = action.snapshot;
      }
      reasons.push(reason);
      continue;
    }
    // A malformed action: undo and report dynalite's own error, as DynamoDB would reject the request.
    await undo(endpoint, applied);
    return reply;
  }

  // ConditionChecks that wrote a placeholder key item are undone even when the transaction commits.
  await undo(endpoint, failed ? applied : applied.filter((a) => a.kind === "ConditionCheck"));
  if (!failed) return { status: 200, body: {} };
  return {
    status: 400,
    body: {
      __type: "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
      message: `Transaction cancelled, please refer cancellation reasons for specific reasons [${reasons
        .map((r) => r.Code)
        .join(", ")}]`,
      CancellationReasons: reasons,
    },
  };
}

function single(action: Action): [string, Wire] {
  const { spec } = action;
  const condition = {
    TableName: action.tableName,
    ConditionExpression: spec.ConditionExpression,
    ExpressionAttributeNames: spec.ExpressionAttributeNames,
    ExpressionAttributeValues: spec.ExpressionAttributeValues,
  };
  switch (action.kind) {
    case "Put":
      return ["PutItem", { ...condition, Item: spec.Item }];
    case "Update":
      return ["UpdateItem", { ...condition, Key: action.key, UpdateExpression: spec.UpdateExpression }];
    case "Delete":
      return ["DeleteItem", { ...condition, Key: action.key }];
    case "ConditionCheck":
      return ["PutItem", { ...condition, Item: action.snapshot ?? action.key }];
  }
}

async function undo(endpoint: string, actions: Action[]): Promise<void> {
  for (const action of [...actions].reverse()) {
    const reply = action.snapshot
      ? await call(endpoint, "PutItem", { TableName: action.tableName, Item: action.snapshot })
      : await call(endpoint, "DeleteItem", { TableName: action.tableName, Key: action.key });
    if (reply.status !== 200) throw new Error(`Transaction rollback failed: ${JSON.stringify(reply.body)}`);
  }
}
