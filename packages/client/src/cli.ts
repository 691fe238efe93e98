import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { NotAnImageError, sniffImage } from "../../../shared/domain/image-sniff.ts";
import {
  type CommandName,
  EXIT,
  helpText,
  intFlag,
  type Parsed,
  parseCli,
  secondsFlag,
  UsageError,
} from "./cli-args.ts";
import { type ControlNetClient, createClient, DEFAULT_MAX_DOWNLOAD_BYTES } from "./client.ts";
import {
  ApiError,
  ControlNetClientError,
  InvalidInputError,
  JobFailedError,
  WaitTimeoutError,
} from "./errors.ts";
import { formatElapsed, formatProgress, type Progress } from "./progress.ts";
import type { FileInput, Job, JobStatus, NotificationList, RunRequest } from "./types.ts";

/**
 * `cnctl`: the API from a shell. stdout carries the result (JSON only with --json), stderr the progress
 * and the errors. Exit codes: `EXIT` (cli-args.ts), listed by `cnctl --help`.
 */

export interface Io {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown; isTTY?: boolean };
  env: Readonly<Record<string, string | undefined>>;
  /** Aborts a running wait (Ctrl-C). */
  signal?: AbortSignal;
}

/**
 * The progress of a wait on stderr: on a terminal one line rewritten in place (its elapsed time kept
 * current between reads by `tick`); elsewhere (a log, a pipe) a plain line each time the status, the
 * queue place or the attempt changes.
 */
export class ProgressDisplay {
  private last: { progress: Progress; at: number } | null = null;
  private lastPlain: string | null = null;
  private drawn = false;

  constructor(
    private readonly out: { write(text: string): unknown },
    private readonly tty: boolean,
    private readonly now: () => number = Date.now,
  ) {}

  update(progress: Progress): void {
    this.last = { progress, at: this.now() };
    if (this.tty) {
      this.draw();
      return;
    }
    const key = formatProgress({ ...progress, elapsedMs: 0 });
    if (key === this.lastPlain) return;
    this.lastPlain = key;
    this.out.write(`${formatProgress(progress)}\n`);
  }

  /** Redraws the line with the time elapsed since the last read (a terminal only). */
  tick(): void {
    if (this.tty && this.last) this.draw();
  }

  /** Ends the rewritten line so that what follows starts on its own. */
  finish(): void {
    if (this.drawn) this.out.write("\n");
    this.drawn = false;
  }

  private draw(): void {
    if (!this.last) return;
    const { progress, at } = this.last;
    const line = formatProgress({ ...progress, elapsedMs: progress.elapsedMs + (this.now() - at) });
    this.out.write(`\r\x1b[2K${line}`);
    this.drawn = true;
  }
}

/** An image argument: a URL or reference as is, anything else a local file to upload. */
const imageArgument = (value: string): string | FileInput =>
  /^(https?:\/\/|upload:|data:)/i.test(value) ? value : { path: value };

function runRequest(values: Record<string, unknown>): RunRequest {
  const controlnet = String(values.controlnet);
  const request: Record<string, unknown> = {
    model_id: (values.model as string | undefined) ?? "sd15",
    controlnet_model: controlnet,
    controlnet_type: (values["controlnet-type"] as string | undefined) ?? controlnet.split(",")[0]?.trim(),
    control_image: imageArgument(String(values["control-image"])),
  };
  const strings: Record<string, string> = {
    prompt: "prompt",
    "negative-prompt": "negative_prompt",
    provider: "provider",
    webhook: "webhook",
    "track-id": "track_id",
  };
  for (const [flag, field] of Object.entries(strings)) {
    if (values[flag] !== undefined) request[field] = values[flag];
  }
  for (const [flag, field] of [
    ["init-image", "init_image"],
    ["mask-image", "mask_image"],
  ] as const) {
    if (values[flag] !== undefined) request[field] = imageArgument(String(values[flag]));
  }
  const ints: [string, string, number, number][] = [
    ["width", "width", 1, 100_000],
    ["height", "height", 1, 100_000],
    ["samples", "samples", 1, 1_000],
    ["seed", "seed", 0, Number.MAX_SAFE_INTEGER],
    ["steps", "num_inference_steps", 1, 10_000],
  ];
  // Loose bounds: the API checks the real ones and names the field (400 VALIDATION_FAILED).
  for (const [flag, field, min, max] of ints) {
    const value = intFlag(values, flag, min, max);
    if (value !== undefined) request[field] = value;
  }
  return request as RunRequest;
}

function describeJob(job: Job): string {
  const lines = [
    `id:         ${job.id}`,
    `status:     ${job.status}`,
    `created:    ${job.created_at}`,
    `updated:    ${job.updated_at}`,
    `provider:   ${job.provider}`,
  ];
  if (job.track_id) lines.push(`track_id:   ${job.track_id}`);
  for (const [i, attempt] of job.attempts.entries()) {
    lines.push(
      `attempt ${i + 1}:  ${attempt.route} ${attempt.outcome}${attempt.reason ? ` (${attempt.reason})` : ""} since ${attempt.started_at}`,
    );
  }
  if (job.seed !== null) lines.push(`seed:       ${job.seed}`);
  for (const [i, output] of job.outputs.entries()) {
    lines.push(
      `output ${i + 1}:   ${output.width ?? "?"}x${output.height ?? "?"} ${output.content_type ?? ""} ${output.url}`,
    );
  }
  if (job.error) lines.push(`error:      ${job.error.code}: ${job.error.message}`);
  return `${lines.join("\n")}\n`;
}

function describeNotifications(list: NotificationList): string {
  if (list.notifications.length === 0) return "No notifications.\n";
  return list.notifications
    .map((n) => {
      const tries = n.attempts.map(
        (a) =>
          `    try ${a.attempt} at ${a.at}: ${a.status ?? "no answer"}${a.error ? ` (${a.error})` : ""} in ${a.duration_ms} ms`,
      );
      return [`${n.id}  ${n.type}  ${n.state}  ${n.url ?? "(no endpoint)"}`, ...tries].join("\n");
    })
    .join("\n")
    .concat("\n");
}

const JOB_STATUSES: readonly JobStatus[] = [
  "queued",
  "processing",
  "storing",
  "succeeded",
  "failed",
  "cancelled",
];

interface Context {
  client: ControlNetClient;
  parsed: Extract<Parsed, { kind: "command" }>;
  io: Io;
  print(human: string, json: unknown): void;
  /** The job being waited for, once known: an interrupted wait names it. */
  waitingFor: string | null;
}

/** Waits for the job with a progress display on stderr (unless --quiet). */
function waitOptions(context: Context) {
  const { io, parsed } = context;
  const display = parsed.globals.quiet ? null : new ProgressDisplay(io.stderr, io.stderr.isTTY === true);
  const timer = display && io.stderr.isTTY ? setInterval(() => display.tick(), 1_000) : null;
  timer?.unref();
  const timeoutMs = secondsFlag(parsed.values, "wait-timeout");
  return {
    options: {
      ...(io.signal && { signal: io.signal }),
      ...(timeoutMs !== undefined && { timeoutMs }),
      onProgress: (progress: Progress) => {
        context.waitingFor = progress.job.id;
        display?.update(progress);
      },
    },
    done: () => {
      if (timer) clearInterval(timer);
      display?.finish();
    },
  };
}

async function writeOutputs(context: Context, job: Job, outDir: string, maxBytes: number): Promise<string[]> {
  await mkdir(outDir, { recursive: true });
  const files: string[] = [];
  for (const [i, output] of job.outputs.entries()) {
    const { bytes } = await context.client.outputs.download(output, {
      maxBytes,
      ...(context.io.signal && { signal: context.io.signal }),
    });
    let extension: string;
    try {
      extension = sniffImage(bytes).extension;
    } catch (error) {
      if (!(error instanceof NotAnImageError)) throw error;
      throw new ApiError({
        code: "UNEXPECTED_RESPONSE",
        status: 200,
        message: `Output ${i + 1} of job ${job.id} is not an image: ${error.message}`,
      });
    }
    const file = path.join(outDir, `${job.id}-${i + 1}.${extension}`);
    await writeFile(file, bytes);
    files.push(file);
  }
  return files;
}

const COMMAND_HANDLERS: Record<CommandName, (context: Context) => Promise<number>> = {
  async run(context) {
    const { values } = context.parsed;
    const request = runRequest(values);
    const maxBytes = intFlag(values, "max-bytes", 1, 2 ** 31) ?? DEFAULT_MAX_DOWNLOAD_BYTES;
    const started = Date.now();
    const wait = waitOptions(context);
    let job: Job;
    try {
      ({ job } = await context.client.jobs.run(request, {
        ...wait.options,
        ...(values["idempotency-key"] !== undefined && { idempotencyKey: String(values["idempotency-key"]) }),
      }));
    } finally {
      wait.done();
    }
    const files = await writeOutputs(context, job, String(values.out), maxBytes);
    context.print(`${files.join("\n")}\n`, { job, files, elapsed_ms: Date.now() - started });
    if (!context.parsed.globals.quiet && !context.parsed.globals.json) {
      context.io.stderr.write(
        `job ${job.id} succeeded in ${formatElapsed(Date.now() - started)}: ${files.length} image(s)\n`,
      );
    }
    return EXIT.ok;
  },

  async get(context) {
    const job = await context.client.jobs.get(context.parsed.positionals[0] as string, context.io);
    context.print(describeJob(job), job);
    return EXIT.ok;
  },

  async list(context) {
    const { values } = context.parsed;
    const status = values.status as string | undefined;
    if (status !== undefined && !JOB_STATUSES.includes(status as JobStatus)) {
      throw new UsageError(`--status must be one of ${JOB_STATUSES.join(", ")}, not "${status}".`, "list");
    }
    const limit = intFlag(values, "limit", 1, 10_000) ?? 20;
    const jobs: Job[] = [];
    const query = {
      limit: Math.min(limit, 100),
      ...(status !== undefined && { status: status as JobStatus }),
    };
    for await (const job of context.client.jobs.list(query, context.io)) {
      jobs.push(job);
      if (jobs.length >= limit) break;
    }
    const lines = jobs.map(
      (job) =>
        `${job.id}  ${job.status.padEnd(10)}  ${job.created_at}${job.track_id ? `  ${job.track_id}` : ""}`,
    );
    context.print(lines.length ? `${lines.join("\n")}\n` : "No jobs.\n", { jobs });
    return EXIT.ok;
  },

  async cancel(context) {
    const job = await context.client.jobs.cancel(context.parsed.positionals[0] as string, context.io);
    context.print(describeJob(job), job);
    return EXIT.ok;
  },

  async watch(context) {
    const wait = waitOptions(context);
    let job: Job;
    try {
      job = await context.client.jobs.wait(context.parsed.positionals[0] as string, wait.options);
    } finally {
      wait.done();
    }
    context.print(describeJob(job), job);
    return job.status === "succeeded" ? EXIT.ok : EXIT.jobFailed;
  },

  async notifications(context) {
    const list = await context.client.notifications.list(context.parsed.positionals[0] as string, context.io);
    context.print(describeNotifications(list), list);
    return EXIT.ok;
  },

  async replay(context) {
    const list = await context.client.notifications.replay(
      context.parsed.positionals[0] as string,
      context.io,
    );
    context.print(describeNotifications(list), list);
    return EXIT.ok;
  },
};

const defaultIo = (): Io => ({ stdout: process.stdout, stderr: process.stderr, env: process.env });

/** Runs cnctl with `argv` (without node and the script) and answers its exit code. */
export async function main(argv: readonly string[], io: Io = defaultIo()): Promise<number> {
  let parsed: Parsed;
  try {
    parsed = parseCli(argv, io.env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.stderr.write(
      `cnctl: ${error.message}\nRun 'cnctl ${error.command ? `${error.command} ` : ""}--help' for usage.\n`,
    );
    return EXIT.usage;
  }
  if (parsed.kind === "help") {
    io.stdout.write(`${helpText(parsed.command)}\n`);
    return EXIT.ok;
  }

  // Ctrl-C stops the wait (the job goes on); a second one ends the process as usual.
  const interrupt = new AbortController();
  const onSigint = () => {
    process.off("SIGINT", onSigint);
    interrupt.abort(new Error("interrupted"));
  };
  const ownSignal = io.signal === undefined;
  if (ownSignal) process.on("SIGINT", onSigint);
  const signal = io.signal ?? interrupt.signal;
  const json = parsed.globals.json;
  const context: Context = {
    client: createClient({
      baseUrl: parsed.globals.apiUrl,
      apiKey: parsed.globals.apiKey,
      ...(parsed.globals.timeoutMs !== undefined && { timeoutMs: parsed.globals.timeoutMs }),
    }),
    parsed,
    io: { ...io, signal },
    print: (human, value) => io.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : human),
    waitingFor: null,
  };
  try {
    return await COMMAND_HANDLERS[parsed.command](context);
  } catch (error) {
    return report(error, context, signal);
  } finally {
    if (ownSignal) process.off("SIGINT", onSigint);
  }
}

function report(error: unknown, context: Context, signal: AbortSignal): number {
  const { io } = context;
  const json = context.parsed.globals.json;
  const fail = (code: number, message: string, value: unknown) => {
    io.stderr.write(`cnctl: ${message}\n`);
    if (json) io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    return code;
  };
  if (error instanceof UsageError) {
    io.stderr.write(
      `cnctl: ${error.message}\nRun 'cnctl ${error.command ? `${error.command} ` : ""}--help' for usage.\n`,
    );
    return EXIT.usage;
  }
  if (signal.aborted && error === signal.reason) {
    const id = context.waitingFor;
    const message = id ? `interrupted; job ${id} goes on (cnctl watch ${id} to follow it)` : "interrupted";
    return fail(EXIT.interrupted, message, {
      error: { code: "INTERRUPTED", message, ...(id && { job_id: id }) },
    });
  }
  if (error instanceof JobFailedError) {
    return fail(EXIT.jobFailed, error.message, {
      job: error.job,
      error: { code: error.code, message: error.message },
    });
  }
  if (error instanceof WaitTimeoutError) {
    return fail(EXIT.waitTimeout, `${error.message} It goes on: cnctl watch ${error.job.id}`, {
      job: error.job,
      error: { code: error.code, message: error.message },
    });
  }
  if (error instanceof InvalidInputError) {
    return fail(EXIT.usage, error.message, { error: { code: error.code, message: error.message } });
  }
  if (error instanceof ApiError) {
    const details = error.details.map((d) => `\n  ${d.path || "(body)"}: ${d.message}`).join("");
    return fail(EXIT.apiError, `${error.code} (HTTP ${error.status}): ${error.message}${details}`, {
      error: {
        code: error.code,
        status: error.status,
        message: error.message,
        details: error.details,
        request_id: error.requestId,
      },
    });
  }
  if (error instanceof ControlNetClientError) {
    return fail(EXIT.apiError, `${error.code}: ${error.message}`, {
      error: { code: error.code, message: error.message },
    });
  }
  const message = error instanceof Error ? error.message : String(error);
  return fail(EXIT.apiError, `unexpected error: ${message}`, { error: { code: "UNEXPECTED", message } });
}
