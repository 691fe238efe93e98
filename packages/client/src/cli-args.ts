import { type ParseArgsConfig, parseArgs } from "node:util";

/**
 * cnctl's command line, parsed without side effects (test/unit/cnctl-args.test.ts): strict, so an
 * unknown flag, a missing value or a stray argument is a usage error (exit 2), never ignored.
 */

export const EXIT = {
  ok: 0,
  /** The job failed or was cancelled. */
  jobFailed: 1,
  usage: 2,
  /** The API refused the request, or could not be reached. */
  apiError: 3,
  /** --wait-timeout passed before the job was terminal (it goes on running). */
  waitTimeout: 4,
  /** Interrupted (Ctrl-C): the wait stopped, the job goes on. */
  interrupted: 130,
} as const;

export class UsageError extends Error {
  constructor(
    message: string,
    /** The command whose help to point at, if known. */
    readonly command?: CommandName,
  ) {
    super(message);
    this.name = "UsageError";
  }
}

type Options = NonNullable<ParseArgsConfig["options"]>;

const GLOBAL_OPTIONS = {
  "api-url": { type: "string" },
  "api-key": { type: "string" },
  json: { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
  timeout: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies Options;

const WAIT_OPTIONS = { "wait-timeout": { type: "string" } } as const satisfies Options;

export const COMMANDS = {
  run: {
    positionals: [],
    summary: "Upload the control image, submit a job, wait for it and write its images",
    options: {
      "control-image": { type: "string" },
      prompt: { type: "string" },
      controlnet: { type: "string" },
      out: { type: "string" },
      model: { type: "string" },
      "controlnet-type": { type: "string" },
      "negative-prompt": { type: "string" },
      "init-image": { type: "string" },
      "mask-image": { type: "string" },
      width: { type: "string" },
      height: { type: "string" },
      samples: { type: "string" },
      seed: { type: "string" },
      steps: { type: "string" },
      provider: { type: "string" },
      webhook: { type: "string" },
      "track-id": { type: "string" },
      "idempotency-key": { type: "string" },
      "max-bytes": { type: "string" },
      ...WAIT_OPTIONS,
    },
  },
  get: { positionals: ["job id"], summary: "Show a job", options: {} },
  list: {
    positionals: [],
    summary: "List your jobs, newest first",
    options: { status: { type: "string" }, limit: { type: "string" } },
  },
  cancel: { positionals: ["job id"], summary: "Cancel a job that is not yet terminal", options: {} },
  watch: {
    positionals: ["job id"],
    summary: "Wait for a job to finish, showing its progress",
    options: { ...WAIT_OPTIONS },
  },
  notifications: {
    positionals: ["job id"],
    summary: "Show a job's notifications and every delivery try",
    options: {},
  },
  replay: {
    positionals: ["job id"],
    summary: "Send a job's notifications again (same webhook-id, output links signed afresh)",
    options: {},
  },
} as const satisfies Record<string, { positionals: readonly string[]; summary: string; options: Options }>;

export type CommandName = keyof typeof COMMANDS;

export const isCommand = (name: string): name is CommandName => Object.hasOwn(COMMANDS, name);

export interface GlobalFlags {
  apiUrl: string;
  apiKey: string;
  json: boolean;
  quiet: boolean;
  timeoutMs: number | undefined;
}

export type Parsed =
  | { kind: "help"; command: CommandName | null }
  | {
      kind: "command";
      command: CommandName;
      globals: GlobalFlags;
      positionals: string[];
      values: Record<string, string | boolean | undefined>;
    };

/** A number from a flag: an integer in [min, max], or a usage error naming the flag. */
export function intFlag(
  values: Record<string, unknown>,
  name: string,
  min: number,
  max: number,
): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const text = String(raw).trim();
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, not "${String(raw)}".`);
  }
  return Number(text);
}

/** Seconds from a flag (decimals allowed), as ms. */
export function secondsFlag(values: Record<string, unknown>, name: string): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const text = String(raw).trim();
  const seconds = Number(text);
  if (text === "" || !Number.isFinite(seconds) || seconds <= 0 || seconds > 7 * 24 * 3600) {
    throw new UsageError(`--${name} must be a number of seconds above 0, not "${String(raw)}".`);
  }
  return Math.round(seconds * 1_000);
}

/** The first argument that is not a global flag (or a global flag's value): the command's name. */
function findCommand(argv: readonly string[]): { name: string; index: number } | null {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--") return argv[i + 1] === undefined ? null : { name: argv[i + 1] as string, index: i + 1 };
    if (!arg.startsWith("-")) return { name: arg, index: i };
    const name = arg.replace(/^-+/, "").split("=")[0] as string;
    const option = (GLOBAL_OPTIONS as Options)[name];
    if (option?.type === "string" && !arg.includes("=")) i++;
  }
  return null;
}

function describeParseError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // Node's message adds a hint about `--` that is about its API, not this tool.
  return message.replace(/\. To specify a positional argument starting with a '-'.*$/s, ".");
}

/**
 * Parses argv (without node and the script). `env` gives CONTROLNET_API_URL and CONTROLNET_API_KEY;
 * the flags win over it.
 */
export function parseCli(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Parsed {
  const found = findCommand(argv);
  if (!found) {
    if (argv.includes("--help") || argv.includes("-h") || argv.length === 0)
      return { kind: "help", command: null };
    throw new UsageError("No command given.");
  }
  if (!isCommand(found.name)) {
    if (found.name === "help") return { kind: "help", command: null };
    throw new UsageError(`Unknown command "${found.name}".`);
  }
  const command = found.name;
  const spec = COMMANDS[command];
  const rest = [...argv.slice(0, found.index), ...argv.slice(found.index + 1)];
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({
      args: rest,
      options: { ...GLOBAL_OPTIONS, ...spec.options },
      strict: true,
      allowPositionals: true,
    });
  } catch (error) {
    throw new UsageError(describeParseError(error), command);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help) return { kind: "help", command };
  if (parsed.positionals.length !== spec.positionals.length) {
    const expected = spec.positionals.map((name) => `<${name}>`).join(" ") || "no arguments";
    throw new UsageError(
      `${command} takes ${expected}; got ${parsed.positionals.length ? parsed.positionals.map((p) => `"${p}"`).join(" ") : "none"}.`,
      command,
    );
  }
  const apiUrl = (values["api-url"] as string | undefined) ?? env.CONTROLNET_API_URL;
  const apiKey = (values["api-key"] as string | undefined) ?? env.CONTROLNET_API_KEY;
  if (!apiUrl)
    throw new UsageError("The API's address is missing: set CONTROLNET_API_URL or pass --api-url.", command);
  if (!/^https?:\/\/[^\s]+$/.test(apiUrl))
    throw new UsageError(`--api-url must be an http(s) URL, not "${apiUrl}".`, command);
  if (!apiKey)
    throw new UsageError("The API key is missing: set CONTROLNET_API_KEY or pass --api-key.", command);
  if (command === "run") {
    for (const required of ["control-image", "controlnet", "out"]) {
      if (values[required] === undefined) throw new UsageError(`run needs --${required}.`, command);
    }
  }
  return {
    kind: "command",
    command,
    globals: {
      apiUrl,
      apiKey,
      json: values.json === true,
      quiet: values.quiet === true,
      timeoutMs: secondsFlag(values, "timeout"),
    },
    positionals: parsed.positionals,
    values,
  };
}

const OPTION_HELP: Record<string, string> = {
  "control-image": "<file|url>  the control image: a local PNG/JPEG/WebP (uploaded) or an http(s) URL",
  prompt: "<text>        what to draw",
  controlnet: "<model>       ControlNet model(s): canny, depth… (comma-separated for several)",
  out: "<dir>         where to write the images (created if missing)",
  model: "<id>          the model_id (default sd15)",
  "controlnet-type": "<type>  controlnet_type (default: the first --controlnet model)",
  "negative-prompt": "<text>",
  "init-image": "<file|url>",
  "mask-image": "<file|url>",
  width: "<px>",
  height: "<px>",
  samples: "<n>           images to generate (1-4)",
  seed: "<n>",
  steps: "<n>           num_inference_steps",
  provider: "<auto|modelslab|self-hosted>",
  webhook: "<url>         notification URL for this job",
  "track-id": "<text>      your own reference, echoed back",
  "idempotency-key": "<key>  the same key and body answer the first job again",
  "max-bytes": "<n>         largest image downloaded (default 64 MiB)",
  "wait-timeout": "<s>     stop waiting after this many seconds (exit 4; the job goes on)",
  status: "<status>      queued, processing, storing, succeeded, failed or cancelled",
  limit: "<n>           how many jobs to show (default 20, pages read as needed)",
};

export function helpText(command: CommandName | null): string {
  const globals = [
    "Global options:",
    "  --api-url <url>   the API (default: $CONTROLNET_API_URL)",
    "  --api-key <key>   your API key (default: $CONTROLNET_API_KEY)",
    "  --json            print JSON only on stdout (progress stays on stderr)",
    "  -q, --quiet       no progress display",
    "  --timeout <s>     limit of each API call (default 30)",
    "  -h, --help        this help",
  ];
  const exits = [
    "Exit codes: 0 success; 1 job failed or cancelled; 2 usage error; 3 API or network error;",
    "            4 --wait-timeout passed (the job goes on); 130 interrupted.",
  ];
  if (command === null) {
    return [
      "Usage: cnctl <command> [options]",
      "",
      "Commands:",
      ...Object.entries(COMMANDS).map(
        ([name, spec]) =>
          `  ${`${name} ${spec.positionals.map((p) => `<${p}>`).join(" ")}`.padEnd(24)}${spec.summary}`,
      ),
      "",
      ...globals,
      "",
      ...exits,
      "",
      "Example:",
      '  cnctl run --control-image ./sketch.png --prompt "a lighthouse at dusk" --controlnet canny --out ./out',
      "",
      "cnctl <command> --help shows a command's options.",
    ].join("\n");
  }
  const spec = COMMANDS[command];
  return [
    ["Usage: cnctl", command, ...spec.positionals.map((p) => `<${p}>`), "[options]"].join(" "),
    "",
    spec.summary,
    ...(Object.keys(spec.options).length
      ? ["", "Options:", ...Object.keys(spec.options).map((name) => `  --${name} ${OPTION_HELP[name] ?? ""}`)]
      : []),
    "",
    ...globals,
    "",
    ...exits,
  ].join("\n");
}
