/**
 * dynalite (DynamoDB on LevelDB, in-process) for the local stack and the tests.
 *
 * dynalite 4 implements neither TransactWriteItems nor UpdateTimeToLive. `startDynalite` therefore
 * installs a small TransactWriteItems shim in front of it (see `installTransactWriteItems`), so the
 * adapters' transactional code paths run unchanged against the emulator.
 */
import { createHash } from "node:crypto";
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
// TransactWriteItems for dynalite, after the DynamoDB API reference.
//
// What it does as DynamoDB does:
// - All or nothing: every action is applied with its own condition through dynalite's single-item
//   API, having first snapshotted the item; if any condition fails, every applied action is undone
//   from the snapshots and the client gets a TransactionCanceledException with one reason per
//   action, in order.
// - ValidationException, before anything is written, for: no action or more than 100; items over
//   4 MB together; an action without a required member (a ConditionCheck without its
//   ConditionExpression); two actions on one item (the same key, whatever the order of its
//   attributes or the spelling of a number).
// - ClientRequestToken: the repeat of a committed request under its token within 10 minutes
//   answers success and applies nothing (the SDK sends a token with every call and re-sends it when
//   it retries); the same token with a different request answers
//   IdempotentParameterMismatchException.
//
// What it does not:
// - Isolation. Transactions run one at a time, but plain reads and writes are not held back while
//   one runs: a read may see part of a transaction, a plain write landing between a cancelled
//   transaction's snapshot and its undo is overwritten, and a ConditionCheck on a missing item
//   creates a key-only placeholder item for as long as the transaction runs.
// - The 4 MB limit counts Put items, and the other actions' items as they stand before the
//   transaction (an Update's resulting size is only known once it is applied).
// - Only committed requests are remembered under their token: the repeat of a cancelled or refused
//   request runs again. A repeat that arrives while the first is running waits for it (rather than
//   getting TransactionInProgressException). At most MAX_REMEMBERED_TOKENS are kept; past that the
//   oldest are forgotten early.
// - ReturnConsumedCapacity and ReturnItemCollectionMetrics are accepted and answered with nothing.
// ---------------------------------------------------------------------------------------------

type Wire = Record<string, unknown>;
type WireItem = Record<string, unknown>;
type Reply = { status: number; body: Wire };

const KINDS = ["Put", "Update", "Delete", "ConditionCheck"] as const;
type Kind = (typeof KINDS)[number];

/** The members each action must have (API reference: TransactWriteItem). */
const REQUIRED: Record<Kind, readonly string[]> = {
  Put: ["TableName", "Item"],
  Update: ["TableName", "Key", "UpdateExpression"],
  Delete: ["TableName", "Key"],
  ConditionCheck: ["TableName", "Key", "ConditionExpression"],
};

const MAX_ACTIONS = 100;
const MAX_AGGREGATE_BYTES = 4 * 1024 * 1024;
const TOKEN_WINDOW_MS = 10 * 60_000;
const MAX_TOKEN_LENGTH = 36;
const MAX_REMEMBERED_TOKENS = 100_000;

interface Action {
  kind: Kind;
  spec: Wire;
  tableName: string;
  key: WireItem;
  snapshot: WireItem | undefined;
}

/** A committed request: the hash of what it asked, and when its token may be used anew. */
interface Committed {
  fingerprint: string;
  expiresAt: number;
}

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

/** Adds TransactWriteItems to a dynalite server; call before `listen`. */
export function installTransactWriteItems(server: Server): void {
  const [original] = server.listeners("request") as RequestListener[];
  if (!original) throw new Error("dynalite server has no request listener");
  server.removeAllListeners("request");
  const committed = new Map<string, Committed>();
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
        reply = await idempotent(`http://127.0.0.1:${port}`, await readBody(req), committed);
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
const isObject = (value: unknown): value is Wire =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** ClientRequestToken around the transaction: a committed request's repeat is answered, not run. */
async function idempotent(endpoint: string, text: string, committed: Map<string, Committed>): Promise<Reply> {
  let request: unknown;
  try {
    request = JSON.parse(text);
  } catch {
    request = undefined;
  }
  if (!isObject(request)) {
    return fault("com.amazon.coral.service#SerializationException", "The request body is not a JSON object");
  }
  const token = request.ClientRequestToken;
  if (token === undefined) return transactWrite(endpoint, request);
  if (typeof token !== "string" || token.length < 1 || token.length > MAX_TOKEN_LENGTH) {
    return validation(
      `1 validation error detected: Value at 'clientRequestToken' failed to satisfy constraint: Member must have length between 1 and ${MAX_TOKEN_LENGTH}`,
    );
  }
  const now = Date.now();
  // Insertion order is commit order, so the expired ones come first.
  for (const [old, entry] of committed) {
    if (entry.expiresAt > now && committed.size < MAX_REMEMBERED_TOKENS) break;
    committed.delete(old);
  }
  const { ClientRequestToken: _, ...asked } = request;
  const fingerprint = createHash("sha256").update(canonicalJson(asked)).digest("hex");
  const previous = committed.get(token);
  if (previous) {
    if (previous.fingerprint === fingerprint) return { status: 200, body: {} };
    return fault(
      "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
      "The request uses the same client token as a previous, but non-identical request.",
    );
  }
  const reply = await transactWrite(endpoint, request);
  if (reply.status === 200) committed.set(token, { fingerprint, expiresAt: Date.now() + TOKEN_WINDOW_MS });
  return reply;
}

/** JSON with object keys sorted: two spellings of one request hash alike. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (isObject(value)) {
    const keys = Object.keys(value)
      .filter((k) => value[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

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

/** The member's path as DynamoDB's validation messages spell it: `transactItems.1.member.put.item`. */
const memberPath = (index: number, kind: Kind, member: string) => {
  const lower = (name: string) => name.charAt(0).toLowerCase() + name.slice(1);
  return `transactItems.${index + 1}.member.${lower(kind)}.${lower(member)}`;
};

async function transactWrite(endpoint: string, request: Wire): Promise<Reply> {
  const items = request.TransactItems;
  if (!Array.isArray(items)) {
    return validation(
      "1 validation error detected: Value null at 'transactItems' failed to satisfy constraint: Member must not be null",
    );
  }
  if (items.length < 1 || items.length > MAX_ACTIONS) {
    return validation(
      `1 validation error detected: Value at 'transactItems' failed to satisfy constraint: Member must have length between 1 and ${MAX_ACTIONS}`,
    );
  }
  // Every action's shape first, so that a malformed last action reads nothing.
  const specs: { kind: Kind; spec: Wire }[] = [];
  for (const [index, entry] of items.entries()) {
    const kinds = isObject(entry) ? KINDS.filter((k) => entry[k] !== undefined) : [];
    const kind = kinds[0];
    const spec = kind === undefined ? undefined : (entry as Wire)[kind];
    if (kinds.length !== 1 || kind === undefined || !isObject(spec)) {
      return validation("TransactItems can only contain one of Check, Put, Update or Delete");
    }
    const missing = REQUIRED[kind].find((member) => spec[member] === undefined || spec[member] === null);
    if (missing !== undefined) {
      return validation(
        `1 validation error detected: Value null at '${memberPath(index, kind, missing)}' failed to satisfy constraint: Member must not be null`,
      );
    }
    specs.push({ kind, spec });
  }

  const actions: Action[] = [];
  const seen = new Set<string>();
  let aggregateBytes = 0;
  for (const { kind, spec } of specs) {
    const tableName = String(spec.TableName);
    const names = await keyNames(endpoint, tableName);
    if (!Array.isArray(names)) return names;
    const key =
      kind === "Put"
        ? Object.fromEntries(names.map((n) => [n, (spec.Item as WireItem)[n]]))
        : (spec.Key as WireItem);
    // The item's identity in key-schema order, numbers canonical: {sk, pk} and {pk, sk} are one item.
    const identity = JSON.stringify([tableName, names.map((n) => canonicalKeyValue(key[n]))]);
    if (seen.has(identity)) {
      return validation("Transaction request cannot include multiple operations on one item");
    }
    seen.add(identity);
    const got = await call(endpoint, "GetItem", { TableName: tableName, Key: key, ConsistentRead: true });
    if (got.status !== 200) return got;
    const snapshot = got.body.Item as WireItem | undefined;
    aggregateBytes += itemSize(kind === "Put" ? (spec.Item as WireItem) : (snapshot ?? key));
    if (aggregateBytes > MAX_AGGREGATE_BYTES) {
      return validation("Transaction request cannot be larger than 4 MB (the aggregate size of its items)");
    }
    actions.push({ kind, spec, tableName, key, snapshot });
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

  // A ConditionCheck's placeholder key item goes even when the transaction commits.
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

/** A key attribute value in one spelling: numbers as digits and exponent ("1.50" = "15e-1" = "1.5"). */
function canonicalKeyValue(value: unknown): unknown {
  if (!isObject(value) || typeof value.N !== "string") return value ?? null;
  const match = /^\s*([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?\s*$/.exec(value.N);
  if (!match) return value;
  const [, sign = "", whole = "", fraction = "", exponent = "0"] = match;
  let digits = `${whole}${fraction}`.replace(/^0+/, "");
  let scale = Number(exponent) - fraction.length;
  if (digits === "") return { N: "0" };
  while (digits.endsWith("0")) {
    digits = digits.slice(0, -1);
    scale += 1;
  }
  return { N: `${sign === "-" ? "-" : ""}${digits}e${scale}` };
}

/** DynamoDB's item size: attribute names and values in bytes (numbers approximated by their text). */
function itemSize(item: WireItem): number {
  let bytes = 0;
  for (const [name, value] of Object.entries(item)) bytes += Buffer.byteLength(name) + valueSize(value);
  return bytes;
}

function valueSize(value: unknown): number {
  if (!isObject(value)) return 0;
  const [type, inner] = Object.entries(value)[0] ?? [];
  switch (type) {
    case "S":
      return Buffer.byteLength(String(inner));
    case "N":
      return String(inner).length;
    case "B":
      return Buffer.byteLength(String(inner), "base64");
    case "BOOL":
    case "NULL":
      return 1;
    case "SS":
    case "NS":
    case "BS":
      return (inner as unknown[]).reduce<number>((sum, v) => sum + valueSize({ [type.charAt(0)]: v }), 0);
    case "L":
      return 3 + (inner as unknown[]).reduce<number>((sum, v) => sum + 1 + valueSize(v), 0);
    case "M":
      return 3 + itemSize(inner as WireItem) + Object.keys(inner as WireItem).length;
    default:
      return 0;
  }
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
      // An UpdateItem that updates nothing: it evaluates the condition and leaves an existing item
      // untouched; a missing one it creates with only its key (undone afterwards).
      return ["UpdateItem", { ...condition, Key: action.key }];
  }
}

async function undo(endpoint: string, actions: Action[]): Promise<void> {
  for (const action of [...actions].reverse()) {
    // A ConditionCheck changed nothing on an existing item: restoring the snapshot would only
    // overwrite a plain write that landed meanwhile.
    if (action.kind === "ConditionCheck" && action.snapshot) continue;
    const reply = action.snapshot
      ? await call(endpoint, "PutItem", { TableName: action.tableName, Item: action.snapshot })
      : await call(endpoint, "DeleteItem", { TableName: action.tableName, Key: action.key });
    if (reply.status !== 200) throw new Error(`Transaction rollback failed: ${JSON.stringify(reply.body)}`);
  }
}
