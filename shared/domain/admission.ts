import { ValidationError } from "./errors.ts";

/**
 * Admission: which waiting job gets a provider's next free capacity slot, and where a waiting job
 * stands. Pure: the waiting list and the gate are read by the use case (shared/usecases/admission.ts).
 */

export const PRIORITIES = ["high", "normal", "low"] as const;
export type Priority = (typeof PRIORITIES)[number];

/** Sort order of priorities inside a lane: a lower rank is admitted first. */
export const PRIORITY_RANK: Readonly<Record<Priority, number>> = { high: 0, normal: 1, low: 2 };

/** Tenant admission settings: a weight for its fair share, and an optional cap on its running jobs. */
export interface AdmissionSettings {
  weight: number;
  maxConcurrency: number | null;
}

export const DEFAULT_ADMISSION: AdmissionSettings = { weight: 1, maxConcurrency: null };
/** Bounds of the tenant settings (validated where they are edited). */
export const WEIGHT_BOUNDS = { min: 1, max: 100 } as const;
export const MAX_CONCURRENCY_BOUNDS = { min: 1, max: 10_000 } as const;

/** The settings if within bounds (integers); ValidationError naming each field out of them otherwise. */
export function checkAdmissionSettings(settings: AdmissionSettings): AdmissionSettings {
  const problems: { path: string; message: string }[] = [];
  const { weight, maxConcurrency } = settings;
  if (!Number.isInteger(weight) || weight < WEIGHT_BOUNDS.min || weight > WEIGHT_BOUNDS.max) {
    problems.push({
      path: "weight",
      message: `an integer from ${WEIGHT_BOUNDS.min} to ${WEIGHT_BOUNDS.max}`,
    });
  }
  if (
    maxConcurrency !== null &&
    (!Number.isInteger(maxConcurrency) ||
      maxConcurrency < MAX_CONCURRENCY_BOUNDS.min ||
      maxConcurrency > MAX_CONCURRENCY_BOUNDS.max)
  ) {
    problems.push({
      path: "max_concurrency",
      message: `null or an integer from ${MAX_CONCURRENCY_BOUNDS.min} to ${MAX_CONCURRENCY_BOUNDS.max}`,
    });
  }
  if (problems.length > 0) {
    throw new ValidationError(
      `The admission settings are invalid: ${problems.map((p) => p.path).join(", ")}.`,
      problems,
    );
  }
  return settings;
}

/** The longest wait bound a job (`max_wait_seconds`) or the deployment's default may set: 7 days. */
export const MAX_WAIT_SECONDS_LIMIT = 7 * 86_400;

/** The concurrency key of a job that names none: the tenant's jobs share one lane. */
export const DEFAULT_CONCURRENCY_KEY = "-";
/** The job field: letters, digits and `_ . : @ -`, at most 64 (it is part of a DynamoDB key). */
export const CONCURRENCY_KEY_PATTERN = /^[A-Za-z0-9_.:@-]{1,64}$/;

/** One slot on the gate: whose job holds it. A holder written before admission knew tenants is unknown (null). */
export interface SlotHolder {
  jobId: string;
  acquiredAt: number;
  tenant: string | null;
  key: string | null;
}

/** One waiting lane of a provider: a tenant's jobs under one concurrency key, with the tenant's settings. */
export interface LaneView extends AdmissionSettings {
  tenant: string;
  key: string;
}

/** Where a job waits: its lane and its sort key in it (priority rank, then age, then id). */
export interface WaitingPlace {
  tenant: string;
  key: string;
  sortKey: string;
  enqueuedAt: number;
}

/** `<rank>#<enqueuedAt ms, 15 digits>#<jobId>`: a lane read in key order gives priority, then age. */
export function waitingSortKey(priority: Priority, enqueuedAt: number, jobId: string): string {
  return `${PRIORITY_RANK[priority]}#${String(Math.max(0, Math.floor(enqueuedAt))).padStart(15, "0")}#${jobId}`;
}

/** The job id a sort key ends with. */
export const jobIdOfSortKey = (sortKey: string): string => sortKey.slice(sortKey.lastIndexOf("#") + 1);

const laneId = (tenant: string, key: string): string => `${tenant}#${key}`;

interface Usage {
  running: number;
  /** When its latest running job was admitted (−∞ when none). */
  lastAdmitted: number;
}

function usage(holders: readonly SlotHolder[]): {
  tenants: Map<string, Usage>;
  keys: Map<string, Usage>;
} {
  const tenants = new Map<string, Usage>();
  const keys = new Map<string, Usage>();
  const add = (map: Map<string, Usage>, id: string, at: number) => {
    const current = map.get(id) ?? { running: 0, lastAdmitted: Number.NEGATIVE_INFINITY };
    map.set(id, { running: current.running + 1, lastAdmitted: Math.max(current.lastAdmitted, at) });
  };
  for (const holder of holders) {
    if (holder.tenant === null) continue;
    add(tenants, holder.tenant, holder.acquiredAt);
    add(keys, laneId(holder.tenant, holder.key ?? DEFAULT_CONCURRENCY_KEY), holder.acquiredAt);
  }
  return { tenants, keys };
}

const NONE: Usage = { running: 0, lastAdmitted: Number.NEGATIVE_INFINITY };

/**
 * The lanes in the order they should get the next slot, given who holds the gate's slots now: the
 * tenant with the lowest running/weight among tenants under their max concurrency first (ties: the
 * tenant admitted least recently, then by id); within a tenant the concurrency key with the fewest
 * running (ties: least recently admitted, then by key). A tenant alone may take every slot; a tenant
 * at its max concurrency gets none. Lanes of the same tenant and key appear once.
 *
 * The caller reads the heads of these lanes in this order and admits the first it finds non-empty
 * (an empty lane is only known by reading it).
 */
export function admissionOrder(holders: readonly SlotHolder[], lanes: readonly LaneView[]): LaneView[] {
  const { tenants, keys } = usage(holders);
  const seen = new Set<string>();
  const eligible = lanes.filter((lane) => {
    const id = laneId(lane.tenant, lane.key);
    if (seen.has(id)) return false;
    seen.add(id);
    const running = (tenants.get(lane.tenant) ?? NONE).running;
    return lane.maxConcurrency === null || running < lane.maxConcurrency;
  });
  // One weight per tenant: its lanes copied it at different times; the largest is the newest setting's bound.
  const weight = new Map<string, number>();
  for (const lane of eligible) {
    weight.set(lane.tenant, Math.max(weight.get(lane.tenant) ?? 0, Math.max(lane.weight, Number.MIN_VALUE)));
  }
  const share = (tenant: string) => (tenants.get(tenant) ?? NONE).running / (weight.get(tenant) ?? 1);
  return [...eligible].sort((a, b) => {
    if (a.tenant !== b.tenant) {
      const byShare = share(a.tenant) - share(b.tenant);
      if (byShare !== 0) return byShare;
      const byRecent =
        (tenants.get(a.tenant) ?? NONE).lastAdmitted - (tenants.get(b.tenant) ?? NONE).lastAdmitted;
      if (byRecent !== 0 && !Number.isNaN(byRecent)) return byRecent;
      return a.tenant < b.tenant ? -1 : 1;
    }
    const ka = keys.get(laneId(a.tenant, a.key)) ?? NONE;
    const kb = keys.get(laneId(b.tenant, b.key)) ?? NONE;
    if (ka.running !== kb.running) return ka.running - kb.running;
    const byRecent = ka.lastAdmitted - kb.lastAdmitted;
    if (byRecent !== 0 && !Number.isNaN(byRecent)) return byRecent;
    return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
  });
}

/**
 * Where a waiting job stands, estimated: `ahead` jobs wait before it in its own lane; its lane gets
 * `share` (0..1] of the slots while the backlog lasts (its tenant's weight over the waiting tenants'
 * weights, split evenly among the tenant's waiting lanes); `limit` slots turn over every `avgHoldMs`.
 * Position counts from 1 (the next to be admitted); the start is `ceil(position / (limit × share))`
 * turnovers away.
 */
export function queueEstimate(input: {
  ahead: number;
  share: number;
  limit: number;
  avgHoldMs: number | null;
}): { position: number; etaSeconds: number | null } {
  const share = Math.min(1, Math.max(input.share, 1e-6));
  const position = Math.max(1, Math.ceil((input.ahead + 1) / share));
  if (input.avgHoldMs === null || input.limit <= 0) return { position, etaSeconds: null };
  const turnovers = Math.ceil(position / input.limit);
  return { position, etaSeconds: Math.round((turnovers * input.avgHoldMs) / 1000) };
}

/** The share of slots `lane` gets while every lane in `lanes` waits (see `queueEstimate`). */
export function laneShare(lane: Pick<LaneView, "tenant" | "key">, lanes: readonly LaneView[]): number {
  const tenantWeights = new Map<string, number>();
  const tenantLanes = new Map<string, number>();
  for (const l of lanes) {
    tenantWeights.set(l.tenant, Math.max(tenantWeights.get(l.tenant) ?? 0, l.weight));
    tenantLanes.set(l.tenant, (tenantLanes.get(l.tenant) ?? 0) + 1);
  }
  const total = [...tenantWeights.values()].reduce((sum, w) => sum + w, 0);
  const own = tenantWeights.get(lane.tenant);
  if (own === undefined || total <= 0) return 1;
  return own / total / (tenantLanes.get(lane.tenant) ?? 1);
}
