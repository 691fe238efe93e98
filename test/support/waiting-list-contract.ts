import { beforeEach, expect, it } from "vitest";
import type { AdmissionSettings } from "../../shared/domain/admission.ts";
import type { WaitingList } from "../../shared/ports/index.ts";

/**
 * The WaitingList contract: what every waiting list (DynamoDB against dynalite, the in-memory fake the
 * unit tests rely on) must do, through the port alone. `make` gets the tenants' admission settings the
 * list copies onto a lane when it writes the lane's listing.
 */
const T0 = new Date("2026-01-01T00:00:00.000Z");
const at = (ms: number) => new Date(T0.getTime() + ms);

export function waitingListContract(
  make: (settings: (tenant: string) => Promise<AdmissionSettings>) => Promise<WaitingList> | WaitingList,
): void {
  let list: WaitingList;
  let settingsReads: string[];
  let tenantSettings: Record<string, AdmissionSettings>;

  beforeEach(async () => {
    settingsReads = [];
    tenantSettings = { noisy: { weight: 1, maxConcurrency: null }, quiet: { weight: 3, maxConcurrency: 2 } };
    list = await make(async (tenant) => {
      settingsReads.push(tenant);
      return tenantSettings[tenant] ?? { weight: 1, maxConcurrency: null };
    });
  });

  const enqueue = (
    jobId: string,
    tenant: string,
    key: string,
    priority: "high" | "normal" | "low",
    ms: number,
  ) => list.enqueue({ jobId, tenant, key, priority, enqueuedAt: T0.getTime() + ms }, at(ms));

  it("keeps each lane in priority, then age order, and lists its lanes with the tenant's settings", async () => {
    await enqueue("j1", "noisy", "-", "normal", 0);
    await enqueue("j2", "noisy", "-", "low", 1);
    await enqueue("j3", "noisy", "-", "high", 2);
    await enqueue("j4", "noisy", "-", "normal", 3);
    await enqueue("q1", "quiet", "user-1", "normal", 4);

    expect((await list.head("noisy", "-", 10)).map((e) => e.jobId)).toEqual(["j3", "j1", "j4", "j2"]);
    expect((await list.head("noisy", "-", 2)).map((e) => e.jobId)).toEqual(["j3", "j1"]);
    expect(await list.head("quiet", "user-1", 10)).toEqual([
      expect.objectContaining({ jobId: "q1", tenant: "quiet", key: "user-1", enqueuedAt: T0.getTime() + 4 }),
    ]);
    expect(await list.head("quiet", "other", 10)).toEqual([]);
    const lanes = await list.lanes(10);
    expect(
      lanes.map(({ tenant, key, weight, maxConcurrency }) => ({ tenant, key, weight, maxConcurrency })),
    ).toEqual(
      expect.arrayContaining([
        { tenant: "noisy", key: "-", weight: 1, maxConcurrency: null },
        { tenant: "quiet", key: "user-1", weight: 3, maxConcurrency: 2 },
      ]),
    );
    expect(lanes).toHaveLength(2);
  });

  it("writes a lane's listing only when absent or older than a minute (not once per job)", async () => {
    for (let i = 0; i < 5; i++) await enqueue(`j${i}`, "noisy", "-", "normal", i * 1_000);
    expect(settingsReads).toEqual(["noisy"]);
    const [first] = await list.lanes(10);
    expect(first?.touchedAt).toBe(T0.getTime());
    tenantSettings.noisy = { weight: 5, maxConcurrency: 9 };
    await enqueue("later", "noisy", "-", "normal", 61_000);
    expect(settingsReads).toEqual(["noisy", "noisy"]);
    expect(await list.lanes(10)).toEqual([
      { tenant: "noisy", key: "-", weight: 5, maxConcurrency: 9, touchedAt: T0.getTime() + 61_000 },
    ]);
  });

  it("lets exactly one of two removers take an entry; a restored entry keeps its place", async () => {
    const first = await enqueue("j1", "noisy", "-", "normal", 0);
    await enqueue("j2", "noisy", "-", "normal", 1);
    const results = await Promise.all([list.remove(first), list.remove(first)]);
    expect(results.filter(Boolean)).toHaveLength(1);
    expect((await list.head("noisy", "-", 10)).map((e) => e.jobId)).toEqual(["j2"]);
    await list.restore(first);
    expect((await list.head("noisy", "-", 10)).map((e) => e.jobId)).toEqual(["j1", "j2"]);
  });

  it("counts the entries ahead of one in its lane, at most `cap`", async () => {
    const entries = [];
    for (let i = 0; i < 6; i++) entries.push(await enqueue(`j${i}`, "noisy", "-", "normal", i));
    const last = entries[5];
    if (!last) throw new Error("no entry");
    expect(await list.countAhead(last, 100)).toBe(5);
    expect(await list.countAhead(last, 3)).toBe(3);
    expect(await list.countAhead(entries[0] ?? last, 100)).toBe(0);
    const urgent = await enqueue("urgent", "noisy", "-", "high", 10);
    expect(await list.countAhead(urgent, 100)).toBe(0);
    expect(await list.countAhead(last, 100)).toBe(6);
  });

  it("drops a lane's listing only if it was not touched since it was read", async () => {
    await enqueue("j1", "noisy", "-", "normal", 0);
    const [seen] = await list.lanes(10);
    if (!seen) throw new Error("no lane");
    // An enqueue a minute later touches the lane: the drop planned on the old read must not win.
    await enqueue("j2", "noisy", "-", "normal", 61_000);
    expect(await list.dropLane(seen)).toBe(false);
    expect(await list.lanes(10)).toHaveLength(1);
    const [fresh] = await list.lanes(10);
    if (!fresh) throw new Error("no lane");
    expect(await list.dropLane(fresh)).toBe(true);
    expect(await list.lanes(10)).toEqual([]);
  });

  it("lists at most `limit` lanes", async () => {
    for (let i = 0; i < 4; i++) await enqueue(`j${i}`, `tenant-${i}`, "-", "normal", i);
    expect(await list.lanes(3)).toHaveLength(3);
  });
}
