import { monotonicFactory } from "ulid";

const nextUlid = monotonicFactory();

/** Job ids are ULIDs: unguessable enough, time-ordered (newest-first listing sorts on them), and only digits and capital letters, which the provider's `track_id` accepts. */
export const newJobId = (now: number = Date.now()): string => nextUlid(now);

export const JOB_ID_PATTERN = /^[0-9A-HJKMNP-TV-Z]{26}$/;
export const isJobId = (value: string): boolean => JOB_ID_PATTERN.test(value);
