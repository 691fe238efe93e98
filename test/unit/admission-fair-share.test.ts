import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  admissionOrder,
  checkAdmissionSettings,
  jobIdOfSortKey,
  type LaneView,
  laneShare,
  queueEstimate,
  type SlotHolder,
  waitingSortKey,
} from "../../shared/domain/admission.ts";
import { ValidationError } from "../../shared/domain/errors.ts";

const lane = (tenant: string, key = "-", settings: Partial<LaneView> = {}): LaneView => ({
  tenant,
  key,
  weight: 1,
  maxConcurrency: null,
  ...settings,
});
let n = 0;
const holder = (tenant: string | null, key: string | null = "-", acquiredAt = 0): SlotHolder => ({
  jobId: `job-${n++}`,
  acquiredAt,
  tenant,
  key,
});
const ids = (lanes: LaneView[]) => lanes.map((l) => `${l.tenant}/${l.key}`);

describe("admissionOrder (fair share)", () => {
  it("gives the next slot to the tenant with the fewest running jobs per weight", () => {
    const holders = [holder("noisy"), holder("noisy"), holder("noisy"), holder("quiet")];
    expect(ids(admissionOrder(holders, [lane("noisy"), lane("quiet")]))).toEqual(["quiet/-", "noisy/-"]);
    // A weight of 3 makes three running jobs count as one.
    const weighted = [lane("noisy", "-", { weight: 3 }), lane("quiet")];
    expect(ids(admissionOrder([...holders, holder("quiet")], weighted))).toEqual(["noisy/-", "quiet/-"]);
  });

  it("lets a tenant alone take every slot, and none past its max concurrency", () => {
    const holders = [holder("solo"), holder("solo"), holder("solo")];
    expect(ids(admissionOrder(holders, [lane("solo")]))).toEqual(["solo/-"]);
    expect(admissionOrder(holders, [lane("solo", "-", { maxConcurrency: 3 })])).toEqual([]);
    expect(ids(admissionOrder(holders, [lane("solo", "-", { maxConcurrency: 4 })]))).toEqual(["solo/-"]);
  });

  it("shares a tenant's turn among its concurrency keys by fewest running, then least recently admitted", () => {
    const holders = [holder("t", "alice", 10), holder("t", "alice", 20), holder("t", "bob", 30)];
    expect(ids(admissionOrder(holders, [lane("t", "alice"), lane("t", "bob"), lane("t", "carol")]))).toEqual([
      "t/carol",
      "t/bob",
      "t/alice",
    ]);
    const tied = [holder("t", "alice", 50), holder("t", "bob", 40)];
    expect(ids(admissionOrder(tied, [lane("t", "alice"), lane("t", "bob")]))).toEqual(["t/bob", "t/alice"]);
  });

  it("breaks a tie between tenants by who was admitted least recently", () => {
    const holders = [holder("a", "-", 200), holder("b", "-", 100)];
    expect(ids(admissionOrder(holders, [lane("a"), lane("b")]))).toEqual(["b/-", "a/-"]);
  });

  it("reads a holder of unknown tenant (written before fair share) as nobody's", () => {
    const holders = [holder(null, null), holder(null, null), holder("a")];
    expect(ids(admissionOrder(holders, [lane("a"), lane("b")]))).toEqual(["b/-", "a/-"]);
  });

  it("property: over many admissions with every lane backlogged, each tenant gets its weighted share", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 16 }),
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 6, maxLength: 6 }),
        (tenants, limit, weights) => {
          const lanes = Array.from({ length: tenants }, (_, i) =>
            lane(`t${i}`, "-", { weight: weights[i] ?? 1 }),
          );
          // Fill the gate from empty, one admission at a time, as releases do.
          const holders: SlotHolder[] = [];
          for (let slot = 0; slot < limit; slot++) {
            const next = admissionOrder(holders, lanes)[0];
            if (!next) throw new Error("a backlogged lane under no cap must be admitted");
            holders.push(holder(next.tenant, next.key, slot));
          }
          const running = (l: LaneView) => holders.filter((h) => h.tenant === l.tenant).length;
          for (const i of lanes) {
            for (const j of lanes) {
              // No tenant's last slot went to it while another had less per weight.
              if (running(i) > 0)
                expect((running(i) - 1) / i.weight).toBeLessThanOrEqual(running(j) / j.weight);
              // Equal weights: equal shares, to one slot.
              if (i.weight === j.weight) expect(Math.abs(running(i) - running(j))).toBeLessThanOrEqual(1);
            }
          }
        },
      ),
    );
  });

  it("property: never picks a tenant at its max concurrency; always picks someone when one is under it", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ tenant: fc.constantFrom("a", "b", "c"), key: fc.constantFrom("x", "y") }), {
          maxLength: 20,
        }),
        fc.record({
          a: fc.option(fc.integer({ min: 1, max: 5 })),
          b: fc.option(fc.integer({ min: 1, max: 5 })),
        }),
        (running, caps) => {
          const holders = running.map((r, i) => holder(r.tenant, r.key, i));
          const lanes = [
            lane("a", "x", { maxConcurrency: caps.a }),
            lane("b", "y", { maxConcurrency: caps.b }),
            lane("c", "x"),
          ];
          const order = admissionOrder(holders, lanes);
          const count = (t: string) => holders.filter((h) => h.tenant === t).length;
          for (const l of order) {
            if (l.maxConcurrency !== null) expect(count(l.tenant)).toBeLessThan(l.maxConcurrency);
          }
          expect(order.map((l) => l.tenant)).toContain("c");
        },
      ),
    );
  });
});

describe("waiting sort keys", () => {
  it("order by priority, then age, then id; the id is read back", () => {
    const keys = [
      waitingSortKey("low", 1, "j1"),
      waitingSortKey("normal", 5, "j2"),
      waitingSortKey("high", 9, "j3"),
      waitingSortKey("normal", 3, "j4"),
    ].sort();
    expect(keys.map(jobIdOfSortKey)).toEqual(["j3", "j4", "j2", "j1"]);
    expect(waitingSortKey("normal", 1_765_000_000_000, "01J")).toBe("1#001765000000000#01J");
  });
});

describe("queue estimate", () => {
  it("counts the jobs ahead in the lane over the lane's share, and turnovers of the limit", () => {
    // 9 ahead in a lane that gets half the slots: about 20th; 4 slots turning over every 1.5 s.
    expect(queueEstimate({ ahead: 9, share: 0.5, limit: 4, avgHoldMs: 1_500 })).toEqual({
      position: 20,
      etaSeconds: 8,
    });
    expect(queueEstimate({ ahead: 0, share: 1, limit: 4, avgHoldMs: null })).toEqual({
      position: 1,
      etaSeconds: null,
    });
  });

  it("shares slots among waiting tenants by weight, and a tenant's among its lanes", () => {
    const lanes = [lane("a", "x", { weight: 3 }), lane("a", "y", { weight: 3 }), lane("b")];
    expect(laneShare({ tenant: "a", key: "x" }, lanes)).toBeCloseTo(0.375);
    expect(laneShare({ tenant: "b", key: "-" }, lanes)).toBeCloseTo(0.25);
    expect(laneShare({ tenant: "c", key: "-" }, lanes)).toBe(1);
  });
});

describe("tenant admission settings", () => {
  it("accepts integer weights 1..100 and max concurrency 1..10000 or none, refusing the rest by field", () => {
    expect(checkAdmissionSettings({ weight: 2, maxConcurrency: null })).toEqual({
      weight: 2,
      maxConcurrency: null,
    });
    const error = (() => {
      try {
        checkAdmissionSettings({ weight: 0.5, maxConcurrency: 0 });
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).details.map((d) => d.path)).toEqual(["weight", "max_concurrency"]);
  });
});
