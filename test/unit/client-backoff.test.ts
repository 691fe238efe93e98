import { describe, expect, it } from "vitest";
import {
  DEFAULT_POLL_BACKOFF,
  DEFAULT_RETRY,
  parseRetryAfter,
  pollDelayMs,
  retryDelayMs,
} from "../../packages/client/src/backoff.ts";

describe("client poll backoff", () => {
  const fixed = { ...DEFAULT_POLL_BACKOFF, jitter: 0 };

  it("grows by the factor from the first wait and stops at the cap", () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((poll) => pollDelayMs(poll, fixed))).toEqual([
      500, 750, 1125, 1688, 2531, 3797, 5000, 5000,
    ]);
  });

  it("stays at the cap for any number of polls (no overflow to Infinity or NaN)", () => {
    expect(pollDelayMs(10_000, fixed)).toBe(5_000);
    expect(pollDelayMs(-3, fixed)).toBe(500);
  });

  it("shortens each wait by at most the jitter share", () => {
    const backoff = { initialMs: 1_000, maxMs: 1_000, factor: 2, jitter: 0.2 };
    expect(pollDelayMs(3, backoff, 0)).toBe(1_000);
    expect(pollDelayMs(3, backoff, 0.5)).toBe(900);
    expect(pollDelayMs(3, backoff, 0.999_999)).toBe(800);
  });
});

describe("Retry-After and retries", () => {
  const now = Date.parse("2026-12-06T12:00:00Z");

  it("reads delta-seconds and HTTP dates, and nothing else", () => {
    expect(parseRetryAfter("3", now)).toBe(3_000);
    expect(parseRetryAfter(" 0 ", now)).toBe(0);
    expect(parseRetryAfter("Sun, 06 Dec 2026 12:00:05 GMT", now)).toBe(5_000);
    expect(parseRetryAfter("Sun, 06 Dec 2026 11:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter(null, now)).toBeNull();
    expect(parseRetryAfter("-1", now)).toBeNull();
    expect(parseRetryAfter("1.5", now)).toBeNull();
    expect(parseRetryAfter("soon", now)).toBeNull();
    expect(parseRetryAfter("12345678901", now)).toBeNull();
  });

  it("retries a bounded number of times, and never waits longer than the policy allows", () => {
    expect(retryDelayMs(1, null, DEFAULT_RETRY)).toBe(1_000);
    expect(retryDelayMs(2, null, DEFAULT_RETRY)).toBe(2_000);
    expect(retryDelayMs(3, null, DEFAULT_RETRY)).toBeNull();
    expect(retryDelayMs(1, 4_000, DEFAULT_RETRY)).toBe(4_000);
    expect(retryDelayMs(1, 3_600_000, DEFAULT_RETRY)).toBeNull();
    expect(retryDelayMs(1, 0, { ...DEFAULT_RETRY, retries: 0 })).toBeNull();
  });
});
