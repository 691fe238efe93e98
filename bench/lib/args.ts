/** Minimal `--name value` / `--flag` command-line parsing for benchmarks. */

export interface ArgSpec {
  /** Options that take a positive integer, with their defaults. */
  integers: Record<string, number>;
  /** Options that are on when present. */
  flags: readonly string[];
  /** Options that take a string and may be repeated (`--context a=1 --context b=2`). */
  lists?: readonly string[];
  /** Integer options that also take 0 (e.g. a delay). */
  zeroAllowed?: readonly string[];
}

export interface ParsedArgs {
  integers: Record<string, number>;
  flags: Set<string>;
  lists: Record<string, string[]>;
  /** The integer options the command line named (the others kept their defaults). */
  given: Set<string>;
}

export class UsageError extends Error {}

export function parseArgs(argv: readonly string[], spec: ArgSpec): ParsedArgs {
  const integers = { ...spec.integers };
  const flags = new Set<string>();
  const given = new Set<string>();
  const lists: Record<string, string[]> = Object.fromEntries((spec.lists ?? []).map((name) => [name, []]));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    // `--name=value`: split at the first "=" only, so a value may hold "=" itself (`--context key=value`).
    const body = arg.startsWith("--") ? arg.slice(2) : "";
    const at = body.indexOf("=");
    const [name, inline] = at < 0 ? [body, undefined] : [body.slice(0, at), body.slice(at + 1)];
    if (spec.flags.includes(name) && inline === undefined) {
      flags.add(name);
      continue;
    }
    if (name in spec.integers) {
      const raw = inline ?? argv[++i];
      const value = Number(raw);
      const least = spec.zeroAllowed?.includes(name) ? 0 : 1;
      if (raw === undefined || raw === "" || !Number.isSafeInteger(value) || value < least) {
        const what = least === 0 ? "a non-negative integer" : "a positive integer";
        throw new UsageError(`--${name} needs ${what}, got ${raw || "nothing"}`);
      }
      integers[name] = value;
      given.add(name);
      continue;
    }
    const list = lists[name];
    if (list) {
      const raw = inline ?? argv[++i];
      if (raw === undefined || raw === "") throw new UsageError(`--${name} needs a value`);
      list.push(raw);
      continue;
    }
    const known = [
      ...Object.keys(spec.integers).map((n) => `--${n} N`),
      ...spec.flags.map((f) => `--${f}`),
      ...(spec.lists ?? []).map((l) => `--${l} VALUE`),
    ];
    throw new UsageError(`unknown argument ${arg}; expected ${known.join(", ")}`);
  }
  return { integers, flags, lists, given };
}
