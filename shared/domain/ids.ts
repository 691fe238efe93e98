import { randomFillSync } from "node:crypto";
import { monotonicFactory } from "ulid";

// ulid's default source asks the OS for one byte per character; draw from a refilled pool instead.
const pool = new Uint8Array(4096);
let poolIndex = pool.length;
const pooledRandom = (): number => {
  if (poolIndex >= pool.length) {
    randomFillSync(pool);
    poolIndex = 0;
  }
  return (pool[poolIndex++] as number) / 256;
};

const nextUlid = monotonicFactory(pooledRandom);

/** Job ids are ULIDs: unguessable enough, time-ordered (newest-first listing sorts on them), and only digits and capital letters, which the provider's `track_id` accepts. */
export const newJobId = (now: number = Date.now()): string => nextUlid(now);

export const JOB_ID_PATTERN = /^[0-9A-HJKMNP-TV-Z]{26}$/;
export const isJobId = (value: string): boolean => JOB_ID_PATTERN.test(value);
