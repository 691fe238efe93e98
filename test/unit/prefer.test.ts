import { describe, expect, it } from "vitest";
import { preferredWaitSeconds } from "../../shared/http/prefer.ts";

describe("the wait preference of a Prefer header (RFC 7240)", () => {
  it.each([
    ["wait=10", 10],
    ["WAIT=10", 10],
    ["  wait = 7 ", 7],
    ['wait="12"', 12],
    ["respond-async, wait=5", 5],
    ["wait=5;foo=bar", 5],
    ['handling=lenient; note="a, wait=99", wait=3', 3],
    ["wait=4, wait=9", 4],
    ["wait=0", 0],
    ["wait=123456", 123456],
  ])("%s → %s", (header, expected) => {
    expect(preferredWaitSeconds(header)).toBe(expected);
  });

  it.each([
    [undefined],
    [""],
    ["respond-async"],
    ["wait"],
    ["wait="],
    ["wait=-1"],
    ["wait=1.5"],
    ["wait=soon"],
    ["wait=12345678901"],
    ["waiting=5"],
    ["wait=bad, wait=5"],
  ])("ignores %s", (header) => {
    expect(preferredWaitSeconds(header)).toBeNull();
  });
});
