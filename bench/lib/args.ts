/** Minimal `--name value` / `--flag` command-line parsing for benchmarks. */

export interface ArgSpec {
  /** Options that take a positive integer, with their defaults. */
  integers: Record<string, number>;
  /** Options that are on when present. */
  flags: readonly string[];
}

export interface ParsedArgs {
  integers: Record<string, number>;
  flags: Set<string>;
}

export class UsageError extends Error {}

export function parseArgs(argv: readonly string[], spec: ArgSpec): ParsedArgs {
  const integers = { ...spec.integers };
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const [name = "", inline] = arg.startsWith("--") ? arg.slice(2).split("=", 2) : [""];
    if (spec.flags.includes(name) && inline === undefined) {
      flags.add(name);
      continue;
    }
    if (name in spec.integers) {
      const raw = inline ?? argv[++i];
      const value = Number(raw);
      if (raw === undefined || !Number.isSafeInteger(value) || value < 1) {
        throw new UsageError(`--${name} needs a positive integer, got ${raw ?? "nothing"}`);
      }
      integers[name] = value;
      continue;
    }
    const known = [...Object.keys(spec.integers).map((n) => `--${n} N`), ...spec.flags.map((f) => `--${f}`)];
    throw new UsageError(`unknown argument ${arg}; expected ${known.join(", ")}`);
  }
  return { integers, flags };
}
