import { type DynamoDBDocumentClient, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { DynamoCapacityGate } from "../../shared/adapters/dynamo/capacity-gate.ts";
import type { CapacityGate } from "../../shared/ports/index.ts";
import { useDynamoTables } from "../support/emulators.ts";
import { InMemoryCapacityGate } from "../support/fakes.ts";

const T0 = new Date("2026-01-01T00:00:00.000Z");
const at = (seconds: number) => new Date(T0.getTime() + seconds * 1000);

/**
 * One contract, two implementations: the DynamoDB gate against dynalite (this proves its `size(map)`
 * condition holds under concurrency) and the in-memory fake the unit tests rely on.
 */
describe.each(["dynamo", "in-memory"] as const)("capacity gate (%s)", (kind) => {
  let doc: DynamoDBDocumentClient;
  let gate: CapacityGate;

  const dynamo = useDynamoTables({ enabled: kind !== "in-memory" });

  beforeEach(async () => {
    if (kind === "in-memory") {
      gate = new InMemoryCapacityGate(5);
      return;
    }
    doc = dynamo.doc;
    const table = await dynamo.newTable("capacity");
    gate = new DynamoCapacityGate(doc, table, 5, "modelslab");
  });

  it("lets exactly `limit` of 50 concurrent acquirers in", async () => {
    const ids = Array.from({ length: 50 }, (_, i) => `job-${String(i).padStart(2, "0")}`);
    const results = await Promise.all(ids.map((id) => gate.tryAcquire(id, T0)));

    expect(results.filter(Boolean)).toHaveLength(5);
    const winners = ids.filter((_, i) => results[i]);
    const holders = await gate.holders();
    expect(Object.keys(holders).sort()).toEqual(winners.sort());
    expect(Object.values(holders)).toEqual(Array(5).fill(T0.getTime()));
  });

  it("lets a holder re-acquire without taking another slot, keeping its first time", async () => {
    expect(await gate.tryAcquire("a", at(0))).toBe(true);
    expect(await gate.tryAcquire("a", at(10))).toBe(true);
    expect(await gate.holders()).toEqual({ a: at(0).getTime() });

    for (const id of ["b", "c", "d", "e"]) expect(await gate.tryAcquire(id, at(1))).toBe(true);
    expect(await gate.tryAcquire("f", at(2))).toBe(false);
    // Full, but a holder still gets its own slot back.
    expect(await gate.tryAcquire("a", at(3))).toBe(true);
    expect(Object.keys(await gate.holders())).toHaveLength(5);
  });

  it("frees a slot on release; releasing a non-holder changes nothing", async () => {
    for (const id of ["a", "b", "c", "d", "e"]) await gate.tryAcquire(id, at(0));
    expect(await gate.tryAcquire("f", at(1))).toBe(false);

    await gate.release("nobody");
    expect(Object.keys(await gate.holders()).sort()).toEqual(["a", "b", "c", "d", "e"]);
    expect(await gate.tryAcquire("f", at(1))).toBe(false);

    await gate.release("c");
    expect(await gate.tryAcquire("f", at(2))).toBe(true);
    expect(await gate.holders()).toEqual({
      a: at(0).getTime(),
      b: at(0).getTime(),
      d: at(0).getTime(),
      e: at(0).getTime(),
      f: at(2).getTime(),
    });
    expect(await gate.tryAcquire("g", at(3))).toBe(false);
  });

  it("starts empty and tolerates a release before any acquire", async () => {
    expect(await gate.holders()).toEqual({});
    await gate.release("a");
    expect(await gate.holders()).toEqual({});
    expect(await gate.tryAcquire("a", at(0))).toBe(true);
    expect(await gate.holders()).toEqual({ a: at(0).getTime() });
  });

  it("records each slot's tenant and key, and averages hold times in the releases' own writes", async () => {
    expect(await gate.snapshot()).toEqual({ limit: 5, holders: [], avgHoldMs: null });
    await gate.tryAcquire("a", at(0), { tenant: "acme", key: "u1" });
    await gate.tryAcquire("b", at(0));
    const released = await gate.release("a", at(10));
    expect(released).toEqual({
      limit: 5,
      holders: [{ jobId: "b", acquiredAt: at(0).getTime(), tenant: null, key: null }],
      avgHoldMs: 10_000,
    });
    await gate.tryAcquire("c", at(10), { tenant: "acme", key: "-" });
    await gate.release("c", at(30));
    // A moving average: the newest hold (20 s) weighs a fifth.
    expect((await gate.snapshot()).avgHoldMs).toBe(12_000);
    // Releasing a non-holder writes nothing and moves no average.
    expect((await gate.release("nobody", at(40))).avgHoldMs).toBe(12_000);
  });
});

describe("capacity gate (dynamo) on first use", () => {
  const dynamo = useDynamoTables();
  afterEach(() => vi.restoreAllMocks());

  it("admits an acquirer whose holders map another acquirer created between its two writes", async () => {
    const doc = dynamo.doc;
    const gate = new DynamoCapacityGate(doc, await dynamo.newTable("capacity"), 5, "modelslab");
    // a's first acquire is refused (no holders map yet); before a creates the map, b acquires and
    // creates it. The gate then holds one of five: a gets in too.
    const send = doc.send.bind(doc) as (command: unknown) => Promise<unknown>;
    let raced = false;
    vi.spyOn(doc, "send").mockImplementation((async (command: unknown) => {
      const createsMap =
        command instanceof UpdateCommand && command.input.UpdateExpression === "SET #holders = :empty";
      if (createsMap && !raced) {
        raced = true;
        expect(await gate.tryAcquire("b", T0)).toBe(true);
      }
      return send(command);
    }) as never);
    expect(await gate.tryAcquire("a", T0)).toBe(true);
    expect(raced).toBe(true);
    expect(Object.keys(await gate.holders()).sort()).toEqual(["a", "b"]);
  });
});

describe("capacity gate (dynamo): items", () => {
  const dynamo = useDynamoTables();

  it("reads a holder written before fair share (a bare time) as unknown tenant; a reader takes the stored limit", async () => {
    const table = await dynamo.newTable("capacity");
    const gate = new DynamoCapacityGate(dynamo.doc, table, 3, "modelslab");
    await gate.tryAcquire("new", at(1), { tenant: "acme", key: "-" });
    await dynamo.doc.send(
      new UpdateCommand({
        TableName: table,
        Key: { pk: "CAPACITY#modelslab", sk: "CAPACITY" },
        UpdateExpression: "SET holders.#old = :at",
        ExpressionAttributeNames: { "#old": "old" },
        ExpressionAttributeValues: { ":at": at(0).getTime() },
      }),
    );
    const reader = new DynamoCapacityGate(dynamo.doc, table, 0, "modelslab");
    const snapshot = await reader.snapshot();
    expect(snapshot.limit).toBe(3);
    expect(snapshot.holders.sort((a, b) => a.acquiredAt - b.acquiredAt)).toEqual([
      { jobId: "old", acquiredAt: at(0).getTime(), tenant: null, key: null },
      { jobId: "new", acquiredAt: at(1).getTime(), tenant: "acme", key: "-" },
    ]);
    expect(await gate.holders()).toEqual({ old: at(0).getTime(), new: at(1).getTime() });
  });
});
