import { describe, expect, it } from "vitest";
import { parseArgs, UsageError } from "../../bench/lib/args.ts";

const spec = { integers: { jobs: 500 }, flags: ["json"], lists: ["context"] } as const;

describe("benchmark arguments", () => {
  it("takes integers, flags and repeated list options, in either --name value or --name=value form", () => {
    const args = parseArgs(
      ["--jobs", "20", "--context", "a=1", "--json", "--context=b=2", "--context", "logLevel=WARN"],
      spec,
    );
    expect(args.integers).toEqual({ jobs: 20 });
    expect([...args.flags]).toEqual(["json"]);
    expect(args.lists.context).toEqual(["a=1", "b=2", "logLevel=WARN"]);
  });

  it("gives defaults and empty lists when nothing is passed", () => {
    const args = parseArgs([], spec);
    expect(args.integers).toEqual({ jobs: 500 });
    expect(args.flags.size).toBe(0);
    expect(args.lists).toEqual({ context: [] });
  });

  it("refuses a list option without a value and names what it knows of an unknown argument", () => {
    expect(() => parseArgs(["--context"], spec)).toThrow(new UsageError("--context needs a value"));
    expect(() => parseArgs(["--nope"], spec)).toThrow(
      "unknown argument --nope; expected --jobs N, --json, --context VALUE",
    );
    expect(() => parseArgs(["--jobs", "0"], spec)).toThrow("--jobs needs a positive integer, got 0");
  });
});
