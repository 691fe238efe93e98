/**
 * A ModelsLab-compatible HTTP server on loopback, for tests and `npm start` without an API key.
 * It reproduces what docs/provider-modelslab.md says the provider does: the key in
 * the body, validation errors as `{ field: [messages] }`, `processing` answers with `id`, `eta`,
 * `fetch_result` and `future_links`, one webhook POST when a job completes, fetch by id, an account
 * concurrency limit answered with 429 + `retry_after`, and images it must download itself.
 * Outputs are real PNGs (an edge map of the control image) marked as simulated.
 *
 * Faults can be injected, and changed at runtime with `setOptions`; every random choice comes from a
 * seeded PRNG and is made when the submit arrives, so a test's run is reproducible.
 */
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import sharp from "sharp";
import { request } from "undici";
import { renderOutputs } from "./image.ts";
import { createPrng } from "./prng.ts";
import { type ValidRequest, validateRequest } from "./validate.ts";

export interface SimulatorOptions {
  /** The only API key accepted. Default "sim-key". */
  apiKey: string;
  /** Loopback address to bind. Default "127.0.0.1". */
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** How long a job stays `processing`. Default 50 ms. */
  completionDelayMs: number;
  /** Answer `success` (with outputs) straight away instead of `processing`. */
  immediate: boolean;
  /** Jobs the account may have processing at once; more get 429. Default 5. */
  concurrencyLimit: number;
  /** `retry_after` seconds on a 429. Default 30. */
  retryAfterSeconds: number;
  /**
   * Answer errors (key, validation, rate limit, not found) with HTTP 200 like the older routes; rate
   * limits then carry `tips` instead of `retry_after`. Default false: 400/401/404/429.
   */
  legacyErrors: boolean;
  callbackTimeoutMs: number;
  imageFetchTimeoutMs: number;
  maxImageBytes: number;
  /** Finished jobs kept for fetch and output downloads (oldest dropped first). */
  maxStoredJobs: number;
  /** Probability that a job's webhook is never called. */
  dropCallbackRate: number;
  /** Probability that a job's webhook is called twice. */
  duplicateCallbackRate: number;
  /** After the final callback, also deliver a stale `processing` one. */
  reorderCallbacks: boolean;
  /** Probability that the job completes and its callback is delivered BEFORE the submit answer is written. */
  earlyCallbackRate: number;
  /** Delay before writing any API answer (the job is already registered). */
  slowResponseMs: number;
  /** Probability that a submit or fetch answers 500/503 (submits: before anything is accepted). */
  errorRate5xx: number;
  /** Probability that an accepted job ends `failed`. */
  failJobRate: number;
  /** Write `messege` instead of `message`, like the older routes. */
  misspellMessage: boolean;
  /** `id` as a JSON number (default) or a string. */
  idStyle: "number" | "string";
  /** Answer 429 to the next N submits (counts down). */
  rateLimitBurst: number;
  /** PRNG seed for every random choice. Setting it reseeds. Default 1. */
  random: number;
  /** Probability that a job's output downloads are slow (each waits `outputDelayMs` before answering). */
  outputSlowRate: number;
  /** Delay of a slow output download. Default 1000 ms. */
  outputDelayMs: number;
  /** Probability that a job's output downloads fail their first `outputFailFirst` tries (404 or 503). */
  outputFaultRate: number;
  /** Failed tries per output of a faulty job before it is served. Default 2. */
  outputFailFirst: number;
}

export interface SimulatorStats {
  submits: number;
  accepted: number;
  rejected429: number;
  rejected5xx: number;
  rejectedInvalid: number;
  maxInFlight: number;
  inFlight: number;
  completed: number;
  failedJobs: number;
  callbacksSent: number;
  callbacksFailed: number;
  callbacksDropped: number;
  fetches: number;
  /** Every submit naming a track_id, accepted or not. */
  submitsByTrackId: Record<string, number>;
  /** Accepted (billable) submits per track_id: more than 1 means the orchestrator double-posted. */
  acceptedByTrackId: Record<string, number>;
  /**
   * The most jobs the orchestrator had (or tried to have) running at once: jobs in flight when a
   * submit arrived, plus that submit, whether or not it was then refused. Above `concurrencyLimit`
   * means a submit was sent while the account was full (maxInFlight itself never exceeds the limit).
   */
  maxRequestedInFlight: number;
  /** Output download requests, and those answered with an injected 404/503. */
  outputRequests: number;
  outputFaults: number;
  /**
   * Every finished generation's hold on an account slot (epoch ms, from the slot's reservation at the
   * submit to its release at completion), in completion order: the provider's busy time and its
   * concurrency over time are read from these (`bench/lib/admission.ts`).
   */
  generations: { startMs: number; endMs: number }[];
}

export interface Simulator {
  /** Base URL to configure the client with, e.g. http://127.0.0.1:PORT/api */
  url: string;
  port: number;
  stats(): SimulatorStats;
  setOptions(partial: Partial<SimulatorOptions>): void;
  stop(): Promise<void>;
}

export const DEFAULT_SIMULATOR_OPTIONS: SimulatorOptions = {
  apiKey: "sim-key",
  host: "127.0.0.1",
  port: 0,
  completionDelayMs: 50,
  immediate: false,
  concurrencyLimit: 5,
  retryAfterSeconds: 30,
  legacyErrors: false,
  callbackTimeoutMs: 5_000,
  imageFetchTimeoutMs: 5_000,
  maxImageBytes: 10 * 1024 * 1024,
  maxStoredJobs: 1_000,
  dropCallbackRate: 0,
  duplicateCallbackRate: 0,
  reorderCallbacks: false,
  earlyCallbackRate: 0,
  slowResponseMs: 0,
  errorRate5xx: 0,
  failJobRate: 0,
  misspellMessage: false,
  idStyle: "number",
  rateLimitBurst: 0,
  random: 1,
  outputSlowRate: 0,
  outputDelayMs: 1_000,
  outputFaultRate: 0,
  outputFailFirst: 2,
};

const MAX_BODY_BYTES = 25 * 1024 * 1024;
const REQUEST_COUNT_LIMIT_PER_MINUTE = 30;

type Json = Record<string, unknown>;

interface SimJob {
  id: string | number;
  request: ValidRequest;
  meta: Json;
  seed: number;
  createdAt: number;
  /** When its account slot was reserved (epoch ms). */
  slotAt: number;
  completesAt: number;
  state: "processing" | "success" | "failed";
  outputs: Buffer[];
  failure: string | null;
  generationTime: number | null;
  fetchUrl: string;
  links: string[];
  /** Fault choices, made at submit time. */
  willFail: boolean;
  dropCallback: boolean;
  duplicateCallback: boolean;
  reorder: boolean;
  webhookStatus: "pending" | "sent" | "failed" | "none";
  completion: Promise<void> | null;
  /** Output download faults, chosen at submit time; tries so far per output index. */
  outputSlow: boolean;
  outputFailing: boolean;
  outputTries: number[];
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: Json,
  ) {
    super(`HTTP ${status}`);
  }
}

const emptyStats = (): SimulatorStats => ({
  submits: 0,
  accepted: 0,
  rejected429: 0,
  rejected5xx: 0,
  rejectedInvalid: 0,
  maxInFlight: 0,
  inFlight: 0,
  completed: 0,
  failedJobs: 0,
  callbacksSent: 0,
  callbacksFailed: 0,
  callbacksDropped: 0,
  fetches: 0,
  submitsByTrackId: {},
  acceptedByTrackId: {},
  maxRequestedInFlight: 0,
  outputRequests: 0,
  outputFaults: 0,
  generations: [],
});

let sample: Promise<Buffer> | undefined;
/** A 512×512 control image (a house outline) rendered once from SVG. */
const samplePng = (): Promise<Buffer> =>
  (sample ??= sharp(
    Buffer.from(
      `<svg xmlns="http://www.w3.org/2000/svg" width="512" height="512"><rect width="512" height="512" fill="black"/>` +
        `<path d="M96 256 L256 96 L416 256 V432 H96 Z M208 432 V320 H304 V432" fill="none" stroke="white" stroke-width="12"/></svg>`,
    ),
  )
    .png()
    .toBuffer());

export async function startSimulator(options: Partial<SimulatorOptions> = {}): Promise<Simulator> {
  let opts: SimulatorOptions = { ...DEFAULT_SIMULATOR_OPTIONS, ...options };
  let prng = createPrng(opts.random);
  const stats = emptyStats();
  const jobs = new Map<string, SimJob>();
  const timers = new Set<NodeJS.Timeout>();
  const lifetime = new AbortController();
  const requestCountCalls: number[] = [];
  let nextId = 90_000_001;
  let stopped = false;
  let origin = "";
  let apiUrl = "";

  const chance = (rate: number): boolean => rate > 0 && prng() < rate;

  const sleep = (ms: number): Promise<void> =>
    ms <= 0
      ? Promise.resolve()
      : new Promise((resolve) => {
          const timer = setTimeout(() => {
            timers.delete(timer);
            resolve();
          }, ms);
          timers.add(timer);
        });

  /** `message`, or the older routes' `messege`. */
  const msg = (text: unknown): Json => (opts.misspellMessage ? { messege: text } : { message: text });

  /** Error status as the configured route style writes it. */
  const errStatus = (status: number): number => (opts.legacyErrors && status < 500 ? 200 : status);

  const errorBody = (text: unknown, extra: Json = {}): Json => ({ status: "error", ...msg(text), ...extra });

  const keyProblem = (body: Json): HttpError | null =>
    body.key === opts.apiKey
      ? null
      : new HttpError(
          errStatus(401),
          errorBody(
            body.key === undefined || body.key === "" ? "The key field is required." : "Invalid Api Key",
            {
              tip: "Get your API key from the developer dashboard.",
            },
          ),
        );

  function rateLimited(): HttpError {
    stats.rejected429++;
    const text = `Rate limit exceeded: your plan allows ${opts.concurrencyLimit} requests processing at once.`;
    return opts.legacyErrors
      ? new HttpError(
          200,
          errorBody(text, { tips: "Wait for your queued requests to finish, or upgrade your plan." }),
        )
      : new HttpError(429, errorBody(text, { retry_after: opts.retryAfterSeconds }));
  }

  function serverError(): HttpError {
    return prng() < 0.5
      ? new HttpError(500, { status: "error", message: "Internal Server Error" })
      : new HttpError(503, {
          html: "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
        });
  }

  function outputsFor(job: SimJob): string[] {
    return job.request.base64 ? job.outputs.map((png) => png.toString("base64")) : job.links;
  }

  function trackIdEcho(job: SimJob): Json {
    return job.request.trackId === null ? {} : { track_id: job.request.trackId };
  }

  function processingBody(job: SimJob): Json {
    return {
      status: "processing",
      tip: "Your image is processing in background, you can get this image using fetch API.",
      eta: Math.max(0, Math.round((job.completesAt - Date.now()) / 10) / 100),
      ...msg("Try to fetch request after given estimated time"),
      fetch_result: job.fetchUrl,
      id: job.id,
      output: "",
      meta: job.meta,
      future_links: job.links,
    };
  }

  function finalBody(job: SimJob, forCallback: boolean): Json {
    if (job.state === "failed") {
      return {
        status: "failed",
        id: job.id,
        ...msg(job.failure ?? "Failed"),
        output: [],
        ...trackIdEcho(job),
      };
    }
    const body: Json = {
      status: "success",
      generationTime: job.generationTime,
      id: job.id,
      output: outputsFor(job),
      proxy_links: job.links,
      meta: job.meta,
      ...trackIdEcho(job),
    };
    if (!forCallback) {
      body.nsfw_content_detected = false;
      body.webhook_status = job.webhookStatus;
    }
    return body;
  }

  async function readBody(req: IncomingMessage): Promise<Json> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) throw new HttpError(413, errorBody("Request body too large."));
      chunks.push(chunk);
    }
    try {
      const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) return parsed as Json;
    } catch {
      // fall through
    }
    throw new HttpError(errStatus(400), errorBody("The request body must be a JSON object."));
  }

  async function loadImage(ref: string, base64: boolean): Promise<Buffer> {
    const value = ref.trim();
    if (/^https?:\/\//i.test(value)) {
      const signal = AbortSignal.any([AbortSignal.timeout(opts.imageFetchTimeoutMs), lifetime.signal]);
      const response = await request(value, {
        method: "GET",
        headersTimeout: opts.imageFetchTimeoutMs,
        bodyTimeout: opts.imageFetchTimeoutMs,
        signal,
      });
      if (response.statusCode < 200 || response.statusCode >= 300) {
        await response.body.dump();
        throw new Error(`HTTP ${response.statusCode}`);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > opts.maxImageBytes) {
          response.body.on("error", () => {});
          response.body.destroy();
          throw new Error(`image larger than ${opts.maxImageBytes} bytes`);
        }
        chunks.push(chunk);
      }
      return Buffer.concat(chunks);
    }
    const dataUri = /^data:[^,]*;base64,/i;
    if (dataUri.test(value) || base64) {
      const data = Buffer.from(value.replace(dataUri, ""), "base64");
      if (data.length === 0) throw new Error("empty base64 image");
      return data;
    }
    throw new Error('not a URL (send base64: "yes" to pass base64 image data)');
  }

  function meta(body: Json, request: ValidRequest, seed: number): Json {
    const echo: Json = {};
    for (const [field, value] of Object.entries(body)) {
      if (field === "key") continue;
      if (/_image$/.test(field) && typeof value === "string" && !/^https?:\/\//i.test(value)) {
        echo[field] = "[base64 omitted]";
      } else {
        echo[field] = value;
      }
    }
    return {
      ...echo,
      W: request.width,
      H: request.height,
      width: request.width,
      height: request.height,
      n_samples: request.samples,
      seed,
      // The real API echoes some numbers as strings.
      controlnet_conditioning_scale: String(body.controlnet_conditioning_scale ?? 1),
      controlnet_model: request.controlnetModels.join(","),
      controlnet_type: request.controlnetType,
    };
  }

  function releaseSlot(): void {
    stats.inFlight = Math.max(0, stats.inFlight - 1);
  }

  function remember(key: string, job: SimJob): void {
    jobs.set(key, job);
    if (jobs.size <= opts.maxStoredJobs) return;
    for (const [oldKey, old] of jobs) {
      if (jobs.size <= opts.maxStoredJobs) break;
      if (old.state !== "processing") jobs.delete(oldKey);
    }
  }

  /** Renders the outputs (or fails the job) once; safe to call more than once. */
  function complete(job: SimJob, control: Buffer): Promise<void> {
    job.completion ??= (async () => {
      if (job.willFail) {
        job.failure = "Failed to generate image: simulated provider failure.";
      } else {
        const width = job.request.upscale ? Math.min(job.request.width * 2, 2048) : job.request.width;
        const height = job.request.upscale ? Math.min(job.request.height * 2, 2048) : job.request.height;
        try {
          job.outputs = await renderOutputs({
            control,
            width,
            height,
            samples: job.request.samples,
            seed: job.seed,
            controlnetModel: job.request.controlnetModels.join(","),
          });
        } catch (error) {
          job.failure = `Failed to process the control image: ${error instanceof Error ? error.message : String(error)}`;
        }
      }
      job.state = job.failure === null ? "success" : "failed";
      job.generationTime = Math.round((Date.now() - job.createdAt) / 10) / 100;
      if (job.state === "failed") stats.failedJobs++;
      else stats.completed++;
      releaseSlot();
      stats.generations.push({ startMs: job.slotAt, endMs: Date.now() });
    })();
    return job.completion;
  }

  async function postCallback(url: string, body: Json): Promise<boolean> {
    if (stopped) return false;
    try {
      const response = await request(url, {
        method: "POST",
        headers: { "content-type": "application/json", "user-agent": "modelslab-simulator" },
        body: JSON.stringify(body),
        headersTimeout: opts.callbackTimeoutMs,
        bodyTimeout: opts.callbackTimeoutMs,
        signal: AbortSignal.any([AbortSignal.timeout(opts.callbackTimeoutMs), lifetime.signal]),
      });
      await response.body.dump();
      const ok = response.statusCode >= 200 && response.statusCode < 300;
      if (ok) stats.callbacksSent++;
      else stats.callbacksFailed++;
      return ok;
    } catch {
      if (!stopped) stats.callbacksFailed++;
      return false;
    }
  }

  async function deliverCallbacks(job: SimJob): Promise<void> {
    const webhook = job.request.webhook;
    if (webhook === null || stopped) {
      job.webhookStatus = "none";
      return;
    }
    if (job.dropCallback) {
      stats.callbacksDropped++;
      job.webhookStatus = "failed";
      return;
    }
    const final = finalBody(job, true);
    const ok = await postCallback(webhook, final);
    job.webhookStatus = ok ? "sent" : "failed";
    if (job.duplicateCallback) await postCallback(webhook, final);
    if (job.reorder) {
      const stale = { ...processingBody(job), eta: 0, ...trackIdEcho(job) };
      await postCallback(webhook, stale);
    }
  }

  async function handleSubmit(req: IncomingMessage): Promise<[number, Json]> {
    stats.submits++;
    const body = await readBody(req);
    const trackKey =
      typeof body.track_id === "string" || typeof body.track_id === "number" ? String(body.track_id) : null;
    if (trackKey !== null) stats.submitsByTrackId[trackKey] = (stats.submitsByTrackId[trackKey] ?? 0) + 1;

    const badKey = keyProblem(body);
    if (badKey) throw badKey;
    stats.maxRequestedInFlight = Math.max(stats.maxRequestedInFlight, stats.inFlight + 1);
    if (opts.rateLimitBurst > 0) {
      opts.rateLimitBurst--;
      throw rateLimited();
    }
    if (stats.inFlight >= opts.concurrencyLimit) throw rateLimited();
    if (chance(opts.errorRate5xx)) {
      stats.rejected5xx++;
      throw serverError();
    }
    const validation = validateRequest(body);
    if (!validation.ok) {
      stats.rejectedInvalid++;
      throw new HttpError(errStatus(400), { status: "error", ...msg(validation.errors), id: "" });
    }
    const valid = validation.value;

    // Reserve the account slot before any await, so concurrent submits cannot overshoot the limit.
    const slotAt = Date.now();
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    let control: Buffer;
    try {
      control = await loadImage(valid.image, valid.base64);
    } catch (error) {
      releaseSlot();
      stats.rejectedInvalid++;
      const reason = error instanceof Error ? error.message : String(error);
      throw new HttpError(errStatus(400), errorBody(`Failed to load the image: ${reason}`, { id: "" }));
    }

    const serial = nextId++;
    const id = opts.idStyle === "string" ? `sim-${serial}` : serial;
    const seed = valid.seed ?? Math.floor(prng() * 4_294_967_295);
    const links = Array.from(
      { length: valid.samples },
      (_, i) => `${origin}/outputs/${encodeURIComponent(String(id))}/${i}.png`,
    );
    const now = Date.now();
    const job: SimJob = {
      id,
      request: valid,
      meta: meta(body, valid, seed),
      seed,
      createdAt: now,
      slotAt,
      completesAt: opts.immediate ? now : now + opts.completionDelayMs,
      state: "processing",
      outputs: [],
      failure: null,
      generationTime: null,
      fetchUrl: `${apiUrl}/v6/images/fetch/${encodeURIComponent(String(id))}`,
      links,
      willFail: chance(opts.failJobRate),
      dropCallback: chance(opts.dropCallbackRate),
      duplicateCallback: chance(opts.duplicateCallbackRate),
      reorder: opts.reorderCallbacks,
      webhookStatus: valid.webhook === null ? "none" : "pending",
      completion: null,
      outputSlow: chance(opts.outputSlowRate),
      outputFailing: chance(opts.outputFaultRate),
      outputTries: [],
    };
    const early = chance(opts.earlyCallbackRate);
    remember(String(id), job);
    stats.accepted++;
    if (trackKey !== null) stats.acceptedByTrackId[trackKey] = (stats.acceptedByTrackId[trackKey] ?? 0) + 1;

    if (opts.immediate) {
      await complete(job, control);
      if (early) await deliverCallbacks(job);
      else void deliverCallbacks(job);
      return [200, finalBody(job, false)];
    }
    if (early) {
      await complete(job, control);
      await deliverCallbacks(job);
      // Answer as if the job were still processing: the callback simply beat the answer.
      return [200, { ...processingBody(job), eta: Math.max(0.01, opts.completionDelayMs / 1000) }];
    }
    const answer = processingBody(job);
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (stopped) return;
      void complete(job, control).then(() => deliverCallbacks(job));
    }, opts.completionDelayMs);
    timers.add(timer);
    return [200, answer];
  }

  async function handleFetch(req: IncomingMessage, rawId: string): Promise<[number, Json]> {
    stats.fetches++;
    const body = await readBody(req);
    const badKey = keyProblem(body);
    if (badKey) throw badKey;
    if (chance(opts.errorRate5xx)) {
      stats.rejected5xx++;
      throw serverError();
    }
    let id: string;
    try {
      id = decodeURIComponent(rawId);
    } catch {
      id = rawId;
    }
    const job = jobs.get(id);
    if (!job) throw new HttpError(errStatus(404), errorBody("Request not found.", { id: "" }));
    if (job.state === "processing") {
      return [200, { ...processingBody(job), output: [], ...msg("Request is still being processed.") }];
    }
    return [200, finalBody(job, false)];
  }

  async function handleRequestCount(req: IncomingMessage): Promise<[number, Json]> {
    const body = await readBody(req);
    const badKey = keyProblem(body);
    if (badKey) throw badKey;
    const now = Date.now();
    while (requestCountCalls.length > 0 && (requestCountCalls[0] ?? now) < now - 60_000)
      requestCountCalls.shift();
    if (requestCountCalls.length >= REQUEST_COUNT_LIMIT_PER_MINUTE) {
      stats.rejected429++;
      throw new HttpError(
        errStatus(429),
        errorBody("Rate limit exceeded: 30 requests a minute.", opts.legacyErrors ? {} : { retry_after: 60 }),
      );
    }
    requestCountCalls.push(now);
    return [200, { status: "success", request_count: stats.inFlight, limit: opts.concurrencyLimit }];
  }

  async function serveOutput(res: ServerResponse, rawId: string, index: number): Promise<void> {
    let id: string;
    try {
      id = decodeURIComponent(rawId);
    } catch {
      id = rawId;
    }
    stats.outputRequests++;
    const job = jobs.get(id);
    if (job?.outputSlow) await sleep(opts.outputDelayMs);
    if (job?.outputFailing && job.outputs[index]) {
      const tries = (job.outputTries[index] ?? 0) + 1;
      job.outputTries[index] = tries;
      if (tries <= opts.outputFailFirst) {
        stats.outputFaults++;
        const status = tries % 2 === 1 ? 503 : 404;
        res.writeHead(status, { "content-type": "text/plain" }).end(status === 404 ? "Not Found" : "Busy");
        return;
      }
    }
    const png = job?.outputs[index];
    if (!png) {
      res.writeHead(404, { "content-type": "text/plain" }).end("Not Found");
      return;
    }
    res
      .writeHead(200, {
        "content-type": "image/png",
        "content-length": png.length,
        "cache-control": "no-store",
      })
      .end(png);
  }

  function writeJson(res: ServerResponse, status: number, body: Json): void {
    if (res.headersSent || res.destroyed) return;
    if (typeof body.html === "string") {
      res.writeHead(status, { "content-type": "text/html" }).end(body.html);
      return;
    }
    const text = JSON.stringify(body);
    res
      .writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
      .end(text);
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const method = req.method ?? "GET";
    if (path === "/samples/control.png" && (method === "GET" || method === "HEAD")) {
      // A control image for trying the local stack without internet access (see README).
      const png = await samplePng();
      res.writeHead(200, { "content-type": "image/png", "content-length": png.length }).end(png);
      return;
    }
    const output = /^\/outputs\/([^/]+)\/(\d+)\.png$/.exec(path);
    if (output) {
      if (method !== "GET" && method !== "HEAD") {
        res.writeHead(405, { allow: "GET" }).end();
        return;
      }
      await serveOutput(res, output[1] ?? "", Number(output[2]));
      return;
    }

    let handler: (() => Promise<[number, Json]>) | null = null;
    const fetchMatch = /^\/api\/v6\/images\/fetch\/([^/]+)$/.exec(path);
    if (path === "/api/v5/controlnet" || path === "/api/v6/images/controlnet")
      handler = () => handleSubmit(req);
    else if (fetchMatch) handler = () => handleFetch(req, fetchMatch[1] ?? "");
    else if (path === "/api/v6/processing/request_count") handler = () => handleRequestCount(req);
    if (handler === null) {
      writeJson(res, 404, errorBody("Not Found"));
      return;
    }
    if (method !== "POST") {
      res.setHeader("allow", "POST");
      writeJson(res, 405, errorBody("The method is not supported for this route. Supported methods: POST."));
      return;
    }
    let answer: [number, Json];
    try {
      answer = await handler();
    } catch (error) {
      answer =
        error instanceof HttpError
          ? [error.status, error.body]
          : [
              500,
              {
                status: "error",
                message: `Simulator error: ${error instanceof Error ? error.message : String(error)}`,
              },
            ];
    }
    await sleep(opts.slowResponseMs);
    writeJson(res, answer[0], answer[1]);
  }

  const server: Server = createServer((req, res) => {
    route(req, res).catch((error: unknown) => {
      writeJson(res, 500, { status: "error", message: String(error) });
    });
  });
  server.keepAliveTimeout = 5_000;
  server.listen(opts.port, opts.host);
  await once(server, "listening");
  const port = (server.address() as AddressInfo).port;
  const hostForUrl = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  origin = `http://${hostForUrl}:${port}`;
  apiUrl = `${origin}/api`;

  return {
    url: apiUrl,
    port,
    stats: () => structuredClone(stats),
    setOptions(partial) {
      opts = { ...opts, ...partial };
      if (partial.random !== undefined) prng = createPrng(partial.random);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      lifetime.abort();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
