import { describe, expect, it } from "vitest";
import {
  CALLBACK_PATH,
  callbackToken,
  callbackUrl,
  parseCallbackPath,
  verifyCallbackToken,
} from "../../shared/domain/callback-token.ts";

const SECRET = "callback-secret";
const JOB = "01JQ0000000000000000000ABC";
const ML = "modelslab";

describe("callback token", () => {
  it("verifies a token it signed for the same provider, job and attempt", () => {
    const token = callbackToken(SECRET, ML, JOB, 0);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(callbackToken(SECRET, ML, JOB, 0)).toBe(token);
    expect(verifyCallbackToken(SECRET, ML, JOB, 0, token)).toBe(true);
  });

  it("refuses a token for another job, provider or attempt, or under another secret", () => {
    const token = callbackToken(SECRET, ML, JOB, 1);
    expect(verifyCallbackToken(SECRET, ML, "01JQ0000000000000000000XYZ", 1, token)).toBe(false);
    expect(verifyCallbackToken(SECRET, "self-hosted", JOB, 1, token)).toBe(false);
    expect(verifyCallbackToken(SECRET, ML, JOB, 0, token)).toBe(false);
    expect(verifyCallbackToken(SECRET, ML, JOB, 1, callbackToken("another-secret", ML, JOB, 1))).toBe(false);
    expect(callbackToken(SECRET, ML, "a", 0)).not.toBe(callbackToken(SECRET, ML, "b", 0));
  });

  it("refuses a missing, empty, tampered or wrongly sized token", () => {
    const token = callbackToken(SECRET, ML, JOB, 0);
    const flipped = `${token.slice(0, -1)}${token.endsWith("A") ? "B" : "A"}`;
    expect(verifyCallbackToken(SECRET, ML, JOB, 0, undefined)).toBe(false);
    expect(verifyCallbackToken(SECRET, ML, JOB, 0, "")).toBe(false);
    expect(verifyCallbackToken(SECRET, ML, JOB, 0, flipped)).toBe(false);
    expect(verifyCallbackToken(SECRET, ML, JOB, 0, token.slice(0, -1))).toBe(false);
    expect(verifyCallbackToken(SECRET, ML, JOB, 0, `${token}A`)).toBe(false);
    // Same character count but more bytes: must not throw in timingSafeEqual.
    expect(verifyCallbackToken(SECRET, ML, JOB, 0, `${token.slice(0, -1)}é`)).toBe(false);
  });

  it("builds the callback URL from the public base URL, the provider, the job id, the attempt and its token", () => {
    const token = callbackToken(SECRET, ML, JOB, 2);
    const expected = `https://api.example.com/callbacks/modelslab/${JOB}?attempt=2&token=${token}`;
    expect(callbackUrl("https://api.example.com", SECRET, ML, JOB, 2)).toBe(expected);
    expect(callbackUrl("https://api.example.com//", SECRET, ML, JOB, 2)).toBe(expected);
    expect(callbackUrl("https://gw.example.com/prod", SECRET, ML, JOB, 2)).toBe(
      `https://gw.example.com/prod/callbacks/modelslab/${JOB}?attempt=2&token=${token}`,
    );
    const url = new URL(callbackUrl("https://api.example.com", SECRET, ML, "a/b?c", 0));
    expect(url.pathname).toBe("/callbacks/modelslab/a%2Fb%3Fc");
    expect(verifyCallbackToken(SECRET, ML, "a/b?c", 0, url.searchParams.get("token") ?? "")).toBe(true);
  });

  it("parses the path it builds, from the one declared route, and nothing else", () => {
    expect(CALLBACK_PATH).toBe("/callbacks/{provider}/{jobId}");
    const url = new URL(callbackUrl("https://api.example.com", SECRET, ML, JOB, 0));
    expect(parseCallbackPath(url.pathname)).toEqual({ provider: ML, jobId: JOB });
    for (const path of [
      "/callbacks/modelslab",
      `/callbacks/modelslab/${JOB}/extra`,
      `/callbacks//${JOB}`,
      `/v1/callbacks/modelslab/${JOB}`,
      `/callbacks/modelslab/${JOB}/`,
    ]) {
      expect(parseCallbackPath(path)).toBeNull();
    }
  });
});
