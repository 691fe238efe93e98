/**
 * Counts every AWS SDK v3 request made in this process, for the pipeline benchmark's cost figures.
 *
 * The functions build their clients inside their own modules (`createDocumentClient`,
 * `createSqsClient`, `createS3Client`, `createEventBridgeClient`), so instead of threading a
 * middleware through each of them, `installAwsMeter()` wraps the one method they all share —
 * `Client.prototype.send` of `@smithy/core/client` — in this (benchmark) process only. It records the
 * service, the operation and, for DynamoDB, the consumed capacity: every DynamoDB call is sent with
 * `ReturnConsumedCapacity: "TOTAL"` (which changes nothing else about the call) and the answer's
 * `ConsumedCapacity` is added up. When the emulator reports none (dynalite does for most calls, not
 * for the transactions `local/dynalite.ts` emulates in front of it), the capacity is estimated from
 * the sizes of the items in the request, by DynamoDB's rules (write: 1 WCU per KB, doubled in a
 * transaction; read: 1 RCU per 4 KB strongly consistent, half eventually consistent), and counted
 * as estimated. SDK retries of one `send` are not seen (one call = one request; the benchmark injects
 * no faults).
 *
 * Lambda durations are recorded by `meterLocalFunctions` (wraps `LocalFunction.prototype.invoke`).
 *
 * Global secondary index writes are not billed by dynalite at all; `estimateIndexWrites` estimates
 * them from a recorded call's input and the table design (see there).
 */
import { Client } from "@smithy/core/client";
import { LocalFunction } from "../../local/lambda-runtime.ts";
import {
  INDEXES,
  type IndexProjection,
  jobKey,
  TABLE_KEYS,
} from "../../shared/adapters/dynamo/table-design.ts";

export interface AwsCall {
  service: string;
  operation: string;
  at: number;
  ms: number;
  ok: boolean;
  /** DynamoDB: read and write capacity units (reported, or estimated when `estimated`). */
  rcu: number;
  wcu: number;
  estimated: boolean;
  /** EventBridge PutEvents entries, SQS messages sent, ... (1 for a plain call). */
  entries: number;
  /** SQS ReceiveMessage: how many messages came back. */
  received: number;
  /** Request body bytes where the SDK input makes them known (S3 PutObject/UploadPart). */
  bytes: number;
  /** The call's input, kept only when `keepInputs` is on (to replay a job's calls for a floor). */
  input?: unknown;
  command?: unknown;
  client?: unknown;
}

export interface LambdaCall {
  functionId: string;
  memoryMb: number;
  at: number;
  ms: number;
  ok: boolean;
}

class Registry {
  calls: AwsCall[] = [];
  lambdas: LambdaCall[] = [];
  enabled = true;
  keepInputs = false;
  /** Sees every local Lambda invocation as it starts (the bench timestamps callbacks with it). */
  onInvoke: ((functionId: string, event: unknown) => void) | undefined;
  reset(): void {
    this.calls = [];
    this.lambdas = [];
  }
}

/** The process-wide registry the wrappers record into. */
export const awsMeter = new Registry();

let installed = false;

type Sendable = { input?: Record<string, unknown>; constructor: { name: string } };

export function installAwsMeter(): void {
  if (installed) return;
  installed = true;
  const proto = Client.prototype as unknown as {
    send: (this: ClientLike, command: Sendable, ...rest: unknown[]) => Promise<unknown>;
  };
  const original = proto.send;
  proto.send = async function metered(this: ClientLike, command: Sendable, ...rest: unknown[]) {
    if (!awsMeter.enabled) return original.call(this, command, ...rest);
    const service = serviceOf(this);
    const operation = command.constructor.name.replace(/Command$/, "");
    const input = command.input ?? {};
    if (
      service === "DynamoDB" &&
      !process.env.AWS_METER_NO_CAPACITY &&
      CAPACITY_OPERATIONS.has(operation) &&
      !("ReturnConsumedCapacity" in input)
    ) {
      input.ReturnConsumedCapacity = "TOTAL";
    }
    const started = performance.now();
    const call: AwsCall = {
      service,
      operation,
      at: Date.now(),
      ms: 0,
      ok: true,
      rcu: 0,
      wcu: 0,
      estimated: false,
      entries: entriesOf(service, operation, input),
      received: 0,
      bytes: bytesOf(input),
      ...(awsMeter.keepInputs && { input: structuredCloneSafe(input), command, client: this }),
    };
    awsMeter.calls.push(call);
    try {
      const output = (await original.call(this, command, ...rest)) as Record<string, unknown> | undefined;
      if (service === "DynamoDB") capacity(call, operation, input, output);
      if (operation === "ReceiveMessage") {
        call.received = ((output?.Messages as unknown[] | undefined) ?? []).length;
      }
      return output;
    } catch (error) {
      call.ok = false;
      if (service === "DynamoDB") capacity(call, operation, input, undefined);
      throw error;
    } finally {
      call.ms = performance.now() - started;
    }
  };
}

/** Records every local Lambda invocation (function, configured memory, wall duration). */
export function meterLocalFunctions(): void {
  const proto = LocalFunction.prototype as unknown as { invoke: (event: unknown) => Promise<unknown> };
  const original = proto.invoke;
  if ((original as { metered?: boolean }).metered) return;
  const wrapped = async function invoke(this: LocalFunction, event: unknown) {
    const started = performance.now();
    const call: LambdaCall = {
      functionId: this.spec.logicalId,
      memoryMb: this.spec.memoryMb,
      at: Date.now(),
      ms: 0,
      ok: true,
    };
    awsMeter.onInvoke?.(this.spec.logicalId, event);
    try {
      return await original.call(this, event);
    } catch (error) {
      call.ok = false;
      throw error;
    } finally {
      call.ms = performance.now() - started;
      if (awsMeter.enabled) awsMeter.lambdas.push(call);
    }
  };
  (wrapped as { metered?: boolean }).metered = true;
  proto.invoke = wrapped;
}

interface ClientLike {
  config?: { serviceId?: string };
}

function serviceOf(client: ClientLike): string {
  const id = client.config?.serviceId;
  if (id) return id === "DynamoDB Streams" ? id : id.replace(/\s+/g, "");
  const name = (client as { constructor: { name: string } }).constructor.name;
  if (/DynamoDB/.test(name)) return "DynamoDB";
  return name.replace(/Client$/, "");
}

const CAPACITY_OPERATIONS = new Set([
  "Get",
  "GetItem",
  "Put",
  "PutItem",
  "Update",
  "UpdateItem",
  "Delete",
  "DeleteItem",
  "Query",
  "Scan",
  "BatchGet",
  "BatchGetItem",
  "BatchWrite",
  "BatchWriteItem",
  "TransactWrite",
  "TransactWriteItems",
  "TransactGet",
  "TransactGetItems",
]);

const WRITES =
  /^(Put|PutItem|Update|UpdateItem|Delete|DeleteItem|BatchWrite|BatchWriteItem|TransactWrite|TransactWriteItems)$/;

function entriesOf(service: string, operation: string, input: Record<string, unknown>): number {
  if (service === "EventBridge" && operation === "PutEvents") return (input.Entries as unknown[]).length;
  if (service === "SQS" && /Batch$/.test(operation)) return ((input.Entries as unknown[]) ?? []).length;
  return 1;
}

function bytesOf(input: Record<string, unknown>): number {
  const body = input.Body;
  if (body instanceof Uint8Array) return body.byteLength;
  if (typeof body === "string") return Buffer.byteLength(body);
  return typeof input.ContentLength === "number" ? input.ContentLength : 0;
}

function structuredCloneSafe(value: unknown): unknown {
  try {
    return structuredClone(value);
  } catch {
    return value;
  }
}

interface Capacity {
  CapacityUnits?: number;
  ReadCapacityUnits?: number;
  WriteCapacityUnits?: number;
}

function capacity(
  call: AwsCall,
  operation: string,
  input: Record<string, unknown>,
  output: Record<string, unknown> | undefined,
): void {
  const reported = output?.ConsumedCapacity as Capacity | Capacity[] | undefined;
  const list = reported === undefined ? [] : Array.isArray(reported) ? reported : [reported];
  const units = list.reduce((sum, c) => sum + (c.CapacityUnits ?? 0), 0);
  const write = WRITES.test(operation);
  if (list.length > 0 && units > 0) {
    if (write) call.wcu = units;
    else call.rcu = units;
    return;
  }
  // Not reported (or a failed call: a failed conditional write still consumes its write units).
  call.estimated = true;
  if (write) call.wcu = estimateWrite(operation, input);
  else call.rcu = estimateRead(operation, input);
}

const kb = (value: unknown) => Math.max(1, Math.ceil(Buffer.byteLength(JSON.stringify(value ?? {})) / 1024));

function estimateWrite(operation: string, input: Record<string, unknown>): number {
  if (/^TransactWrite/.test(operation)) {
    const items = (input.TransactItems as Record<string, Record<string, unknown>>[]) ?? [];
    return items.reduce((sum, item) => {
      const part = Object.values(item)[0] ?? {};
      return sum + 2 * kb(part.Item ?? part.Key);
    }, 0);
  }
  if (/^BatchWrite/.test(operation)) {
    const tables = (input.RequestItems as Record<string, Record<string, Record<string, unknown>>[]>) ?? {};
    return Object.values(tables)
      .flat()
      .reduce((sum, request) => sum + kb(request.PutRequest?.Item ?? request.DeleteRequest?.Key), 0);
  }
  // Update: billed on the larger of the item before and after; the request is a lower bound.
  return kb(input.Item ?? input.Key);
}

function estimateRead(operation: string, input: Record<string, unknown>): number {
  const consistent = input.ConsistentRead === true;
  const factor = consistent ? 1 : 0.5;
  if (/^Transact/.test(operation)) return 2 * ((input.TransactItems as unknown[]) ?? []).length;
  return factor; // one item up to 4 KB
}

/**
 * Write units the global secondary indexes would consume for one recorded DynamoDB call (dynalite
 * bills none). Needs the call's input (`keepInputs`); a failed call (a conditional check that did not
 * pass, a cancelled transaction) writes no index.
 *
 * The estimate follows the projections of table-design.ts: KEYS_ONLY and INCLUDE index items are the
 * keys plus a few small attributes, far under 1 KB, so each index item written costs 1 WCU, and an
 * index is written only when the write changes its key or one of its projected attributes:
 *   - Put (alone, in a transaction or a batch) of an item that has both key attributes of an index:
 *     1 per such index (an index item created; an overwrite that changes nothing is still counted).
 *   - Update: for each index, a key attribute SET = 2 (the old index item deleted, the new one put;
 *     an item entering the index costs 1, counted as 2); a key attribute REMOVEd = 1 (the item leaves
 *     the index); otherwise a projected non-key attribute SET or REMOVEd = 1 (updated in place).
 *     A SET to the value the ConditionExpression requires the attribute to already have (the job
 *     store's `#status = :to` guarded by `#status = :from` when `:to` equals `:from`) changes nothing
 *     and is not counted. Whether the item was in the index before is not known from the request, so
 *     an update of an item outside a sparse index (`due`) is still counted: an upper bound.
 *   - Delete: 1 per index (assumed present).
 * Updates and deletes count only for job items (sort key JOB): no other item carries index
 * attributes (notifications keep their tenant and id under other names).
 * Conditions and keys are read from the expression text; names are resolved through
 * ExpressionAttributeNames.
 */
export function estimateIndexWrites(call: AwsCall): number {
  if (call.service !== "DynamoDB" || !call.ok || !WRITES.test(call.operation)) return 0;
  const input = call.input as Record<string, unknown> | undefined;
  if (!input) return 0;
  const parts: Array<{ kind: string; part: Record<string, unknown> }> = [];
  if (/^TransactWrite/.test(call.operation)) {
    for (const item of (input.TransactItems as Record<string, Record<string, unknown>>[]) ?? []) {
      for (const [kind, part] of Object.entries(item)) parts.push({ kind, part });
    }
  } else if (/^BatchWrite/.test(call.operation)) {
    const tables = (input.RequestItems as Record<string, Record<string, Record<string, unknown>>[]>) ?? {};
    for (const request of Object.values(tables).flat()) {
      if (request.PutRequest) parts.push({ kind: "Put", part: request.PutRequest });
      if (request.DeleteRequest) parts.push({ kind: "Delete", part: request.DeleteRequest });
    }
  } else {
    parts.push({ kind: call.operation.replace(/Item$/, ""), part: input });
  }
  let units = 0;
  for (const { kind, part } of parts) {
    for (const index of Object.values(INDEXES)) units += indexItemWrites(index, kind, part);
  }
  return units;
}

const JOB_SORT_KEY = jobKey("").sk;

interface IndexShape {
  partitionKey: string;
  sortKey: string;
  projection: IndexProjection;
}

function indexItemWrites(index: IndexShape, kind: string, part: Record<string, unknown>): number {
  const keys = [index.partitionKey, index.sortKey];
  if (kind === "Put") {
    const item = (part.Item as Record<string, unknown> | undefined) ?? {};
    return keys.every((k) => item[k] !== undefined && item[k] !== null) ? 1 : 0;
  }
  if (kind !== "Update" && kind !== "Delete") return 0; // ConditionCheck writes nothing
  // Only job items carry index attributes (tenants, keys, idempotency records and notifications
  // store theirs under other names), and an update or delete names the item only by its key.
  const key = (part.Key as Record<string, unknown> | undefined) ?? {};
  if (key[TABLE_KEYS.sortKey] !== JOB_SORT_KEY) return 0;
  if (kind === "Delete") return 1;
  const { set, removed } = updatedAttributes(part);
  if (keys.some((k) => set.has(k))) return 2;
  if (keys.some((k) => removed.has(k))) return 1;
  // The table's own keys are in every index item but never change in an update.
  const projected = index.projection.type === "INCLUDE" ? index.projection.nonKeyAttributes : [];
  return projected.some((a) => set.has(a) || removed.has(a)) ? 1 : 0;
}

/** The attributes an UpdateExpression changes: SET (less those set to the value the condition requires) and REMOVE. */
function updatedAttributes(part: Record<string, unknown>): { set: Set<string>; removed: Set<string> } {
  const names = (part.ExpressionAttributeNames as Record<string, string> | undefined) ?? {};
  const values = (part.ExpressionAttributeValues as Record<string, unknown> | undefined) ?? {};
  const resolve = (token: string) => names[token] ?? token;
  const expression = String(part.UpdateExpression ?? "");
  const condition = String(part.ConditionExpression ?? "");
  const required = new Map<string, unknown>();
  for (const [, name, value] of condition.matchAll(/([#\w.]+)\s*=\s*(:\w+)/g)) {
    if (name && value) required.set(resolve(name), values[value]);
  }
  const set = new Set<string>();
  const removed = new Set<string>();
  // Clauses: SET a = b, c = d REMOVE e, f (ADD/DELETE treated as SET).
  for (const [, action, body] of expression.matchAll(
    /\b(SET|REMOVE|ADD|DELETE)\b\s+(.*?)(?=\s+\b(?:SET|REMOVE|ADD|DELETE)\b|$)/gis,
  )) {
    for (const clause of (body ?? "").split(",")) {
      const [target = "", source] = clause
        .split(/=|\s+/)
        .map((t) => t.trim())
        .filter(Boolean);
      const name = resolve(target);
      if (!name) continue;
      if (action?.toUpperCase() === "REMOVE") {
        removed.add(name);
        continue;
      }
      const unchanged =
        source?.startsWith(":") &&
        required.has(name) &&
        JSON.stringify(required.get(name)) === JSON.stringify(values[source]);
      if (!unchanged) set.add(name);
    }
  }
  // A table key attribute is never SET by an update; keep the sets about non-key attributes.
  set.delete(TABLE_KEYS.partitionKey);
  set.delete(TABLE_KEYS.sortKey);
  return { set, removed };
}
