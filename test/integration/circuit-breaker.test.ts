import type { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { beforeEach, describe, expect, it } from "vitest";
import { DynamoCircuitBreaker } from "../../shared/adapters/dynamo/circuit-breaker.ts";
import type { CircuitBreaker } from "../../shared/ports/index.ts";
import { useDynamoTables } from "../support/emulators.ts";
import { InMemoryCircuitBreaker } from "../support/fakes.ts";

const T0 = new Date("2026-01-01T00:00:00.000Z");
const at = (seconds: number) => new Date(T0.getTime() + seconds * 1000);
const SETTINGS = { failureThreshold: 3, windowSeconds: 60, coolDownSeconds: 30 };

/** One contract, two implementations: the DynamoDB breaker against dynalite and the unit tests' fake. */
describe.each(["dynamo", "in-memory"] as const)("circuit breaker (%s)", (kind) => {
  let doc: DynamoDBDocumentClient;
  let breaker: CircuitBreaker;
  let make: () => CircuitBreaker;

  const dynamo = useDynamoTables({ enabled: kind !== "in-memory" });
  beforeEach(async () => {
    if (kind === "in-memory") {
      const shared = new InMemoryCircuitBreaker({ ...SETTINGS });
      make = () => shared;
    } else {
      doc = dynamo.doc;
      const table = await dynamo.newTable("breaker");
      // Every dispatcher has its own adapter; they share the item.
      make = () => new DynamoCircuitBreaker(doc, table, SETTINGS, "modelslab");
    }
    breaker = make();
  });

  it("stays closed below the threshold and when failures fall out of the window", async () => {
    expect(await breaker.state(at(0))).toBe("closed");
    await breaker.record("failure", at(0));
    await breaker.record("failure", at(1));
    await breaker.record("success", at(2));
    expect(await breaker.state(at(2))).toBe("closed");
    // The first two are older than the 60 s window by now.
    await breaker.record("failure", at(70));
    await breaker.record("failure", at(71));
    expect(await breaker.state(at(71))).toBe("closed");
    await breaker.record("failure", at(72));
    expect(await breaker.state(at(72))).toBe("open");
  });

  it("opens under concurrent failures from many dispatchers, half-opens after the cool-down, and lets exactly one of 20 probe", async () => {
    await Promise.all(Array.from({ length: 10 }, () => make().record("failure", at(0))));
    expect(await breaker.state(at(10))).toBe("open");
    expect(await breaker.claimProbe(at(10))).toBe(false);
    expect(await breaker.state(at(30))).toBe("half-open");

    const claims = await Promise.all(Array.from({ length: 20 }, () => make().claimProbe(at(30))));
    expect(claims.filter(Boolean)).toHaveLength(1);
    // A probe whose dispatcher died is reclaimable after another cool-down.
    expect(await breaker.claimProbe(at(45))).toBe(false);
    expect(await breaker.claimProbe(at(61))).toBe(true);
  });

  it("closes on the probe's success; a straggler's success does not close it", async () => {
    for (let i = 0; i < 3; i++) await breaker.record("failure", at(i)); // opens at 2 s
    await breaker.record("success", at(33));
    expect(await breaker.state(at(33))).toBe("half-open");
    expect(await breaker.claimProbe(at(33))).toBe(true);
    await breaker.record("success", at(34), true);
    expect(await breaker.state(at(34))).toBe("closed");
    // The window starts over.
    await breaker.record("failure", at(35));
    await breaker.record("failure", at(36));
    expect(await breaker.state(at(36))).toBe("closed");
  });

  it("re-opens from now on the probe's failure", async () => {
    for (let i = 0; i < 3; i++) await breaker.record("failure", at(i));
    expect(await breaker.claimProbe(at(40))).toBe(true);
    await breaker.record("failure", at(41), true);
    expect(await breaker.state(at(60))).toBe("open");
    expect(await breaker.state(at(71))).toBe("half-open");
  });
});
