import { describe, expect, it } from "vitest";
import { callbackToken, callbackUrl, verifyCallbackToken } from "../../shared/domain/callback-token.ts";

const SECRET = "callback-secret";
const JOB = "01JQ0000000000000000000ABC";

describe("callback token", () => {
  it("verifies a token it signed for the same job", () => {
    const token = callbackToken(SECRET, JOB);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(callbackToken(SECRET, JOB)).toBe(token);
    expect(verifyCallbackToken(SECRET, JOB, token)).toBe(true);
  });

  it("refuses a token for another job or under another secret", () => {
    expect(verifyCallbackToken(SECRET, JOB, callbackToken(SECRET, "01JQ0000000000000000000XYZ"))).toBe(false);
    expect(verifyCallbackToken(SECRET, JOB, callbackToken("another-secret", JOB))).toBe(false);
    expect(callbackToken(SECRET, "a")).not.toBe(callbackToken(SECRET, "b"));
  });

  it("refuses a missing, empty, tampered or wrongly sized token", () => {
    const token = callbackToken(SECRET, JOB);
    const flipped = `${token.slice(0, -1)}${token.endsWith("A") ? "B" : "A"}`;
    expect(verifyCallbackToken(SECRET, JOB, undefined)).toBe(false);
    expect(verifyCallbackToken(SECRET, JOB, "")).toBe(false);
    expect(verifyCallbackToken(SECRET, JOB, flipped)).toBe(false);
    expect(verifyCallbackToken(SECRET, JOB, token.slice(0, -1))).toBe(false);
    expect(verifyCallbackToken(SECRET, JOB, `${token}A`)).toBe(false);
    // Same character count but more bytes: must not throw in timingSafeEqual.
    expect(verifyCallbackToken(SECRET, JOB, `${token.slice(0, -1)}é`)).toBe(false);
  });

  it("builds the callback URL from the public base URL, the job id and its token", () => {
    const token = callbackToken(SECRET, JOB);
    const expected = `https://api.example.com/callbacks/modelslab/${JOB}?token=${token}`;
    expect(callbackUrl("https://api.example.com", SECRET, JOB)).toBe(expected);
    expect(callbackUrl("https://api.example.com//", SECRET, JOB)).toBe(expected);
    expect(callbackUrl("https://gw.example.com/prod", SECRET, JOB)).toBe(
      `https://gw.example.com/prod/callbacks/modelslab/${JOB}?token=${token}`,
    );
    const url = new URL(callbackUrl("https://api.example.com", SECRET, "a/b?c"));
    expect(url.pathname).toBe("/callbacks/modelslab/a%2Fb%3Fc");
    expect(verifyCallbackToken(SECRET, "a/b?c", url.searchParams.get("token") ?? "")).toBe(true);
  });
});
