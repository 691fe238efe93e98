/**
 * The worker service: long-polls the fallback queue, keeps the message invisible while it works,
 * runs the job, puts one normalised result on the results queue, then deletes the message.
 *
 * Failures: bad input → a non-retryable rejection (the job fails with the message); a missing model,
 * an unsupported export or out-of-memory → a retryable rejection (the orchestrator runs it elsewhere);
 * anything else → the message goes back to the queue with a backoff, and after `maxReceives` tries a
 * retryable rejection. A message is deleted only after its result is on the results queue.
 *
 * stop() (SIGTERM): no new work; the current job finishes if it can within `drainTimeoutMs`, otherwise
 * it is cancelled between steps and its message made visible again at once. No job is lost.
 */
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import { receiveTimeoutMs } from "../../shared/adapters/sqs/queue.ts";
import { type FinishedResult, queues, type ResultMessage } from "../../shared/schemas/messages.ts";
import { decodeMessage, encodeMessage } from "../../shared/schemas/queue.ts";
import { classify, StopError } from "./errors.ts";
import { type JobDeps, runJob } from "./job.ts";
import { type WorkerJobMessage, workerJobQueue } from "./messages.ts";
import type { Logger } from "./pipeline/session.ts";

export interface WorkerServiceOptions {
  sqs: SQSClient;
  fallbackQueueUrl: string;
  resultsQueueUrl: string;
  job: JobDeps;
  log: Logger;
  /** Visibility the worker holds a message for, renewed every `heartbeatSeconds`. */
  visibilityTimeoutSeconds?: number;
  heartbeatSeconds?: number;
  waitTimeSeconds?: number;
  /** How long stop() lets the current job run before cancelling it (keep under ECS's stopTimeout). */
  drainTimeoutMs?: number;
  /** Transient failures are retried here this many receives; then reported as retryable. */
  maxReceives?: number;
  /** Wait after a failed receive. */
  errorBackoffMs?: number;
  clock?: () => Date;
}

export type WorkerState = "starting" | "idle" | "busy" | "stopping" | "stopped";

export interface WorkerStats {
  state: WorkerState;
  currentJobId: string | null;
  completed: number;
  failed: number;
  released: number;
  lastPollAt: string | null;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });

export class WorkerService {
  private stopping = false;
  private readonly pollAbort = new AbortController();
  private jobAbort: AbortController | null = null;
  private loop: Promise<void> | null = null;
  private readonly stats: WorkerStats = {
    state: "starting",
    currentJobId: null,
    completed: 0,
    failed: 0,
    released: 0,
    lastPollAt: null,
  };
  private readonly o: Required<Omit<WorkerServiceOptions, "clock">> & { clock: () => Date };

  constructor(options: WorkerServiceOptions) {
    this.o = {
      visibilityTimeoutSeconds: 120,
      heartbeatSeconds: 30,
      waitTimeSeconds: 20,
      drainTimeoutMs: 90_000,
      maxReceives: 3,
      errorBackoffMs: 2_000,
      clock: () => new Date(),
      ...options,
    };
  }

  health(): WorkerStats {
    return { ...this.stats };
  }

  start(): void {
    if (this.loop) return;
    this.stats.state = "idle";
    this.loop = this.run();
  }

  /** Stops taking work; resolves when the current job has finished or been released. */
  async stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      this.stats.state = "stopping";
      this.pollAbort.abort();
      const current = this.jobAbort;
      if (current) {
        this.o.log("info", "stopping: draining the current job", { jobId: this.stats.currentJobId });
        const timer = setTimeout(() => current.abort(), this.o.drainTimeoutMs);
        timer.unref();
        this.loop?.finally(() => clearTimeout(timer));
      }
    }
    await this.loop;
    this.stats.state = "stopped";
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      let messages: Message[] = [];
      try {
        this.stats.lastPollAt = this.o.clock().toISOString();
        const out = await this.o.sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: this.o.fallbackQueueUrl,
            MaxNumberOfMessages: 1,
            WaitTimeSeconds: this.o.waitTimeSeconds,
            VisibilityTimeout: this.o.visibilityTimeoutSeconds,
            MessageSystemAttributeNames: ["ApproximateReceiveCount"],
          }),
          { abortSignal: this.pollAbort.signal, requestTimeout: receiveTimeoutMs(this.o.waitTimeSeconds) },
        );
        messages = out.Messages ?? [];
      } catch (error) {
        if (this.stopping) break;
        this.o.log("error", "receive failed", { error: String(error) });
        await sleep(this.o.errorBackoffMs, this.pollAbort.signal);
        continue;
      }
      for (const message of messages) {
        if (this.stopping) {
          // Received while stopping (or a batch): hand it straight back.
          await this.release(message, 0);
          continue;
        }
        await this.handle(message);
      }
    }
  }

  private async handle(message: Message): Promise<void> {
    const receipt = message.ReceiptHandle as string;
    let parsed: WorkerJobMessage;
    try {
      parsed = decodeMessage(workerJobQueue, message.Body ?? "");
    } catch (error) {
      await this.poison(message, error);
      return;
    }
    const { jobId } = parsed;
    const receives = Number(message.Attributes?.ApproximateReceiveCount ?? 1);
    this.stats.state = "busy";
    this.stats.currentJobId = jobId;
    const abort = new AbortController();
    this.jobAbort = abort;
    const heartbeat = setInterval(() => {
      void this.changeVisibility(receipt, this.o.visibilityTimeoutSeconds).catch((error: unknown) =>
        this.o.log("warn", "visibility heartbeat failed", { jobId, error: String(error) }),
      );
    }, this.o.heartbeatSeconds * 1000);
    this.o.log("info", "job started", { jobId, attempt: parsed.attempt, receives });
    try {
      const outcome = await runJob(parsed, this.o.job, abort.signal);
      await this.publish(parsed, {
        kind: "done",
        providerId: null,
        outputs: outcome.outputs,
        generationTimeSeconds: outcome.generationTimeSeconds,
        seed: outcome.seed,
        // As the provider reports it: only when the job asked for the safety checker.
        ...(outcome.nsfwContentDetected !== null && { nsfwContentDetected: outcome.nsfwContentDetected }),
      });
      await this.delete(receipt);
      this.stats.completed += 1;
      this.o.log("info", "job done", {
        jobId,
        outputs: outcome.outputs.length,
        seconds: outcome.generationTimeSeconds,
      });
    } catch (error) {
      await this.fail(parsed, receipt, receives, error, abort.signal.aborted);
    } finally {
      clearInterval(heartbeat);
      this.jobAbort = null;
      this.stats.currentJobId = null;
      if (!this.stopping) this.stats.state = "idle";
    }
  }

  private async fail(
    job: WorkerJobMessage,
    receipt: string,
    receives: number,
    error: unknown,
    aborted: boolean,
  ) {
    const { jobId } = job;
    try {
      if (error instanceof StopError || aborted) {
        await this.release({ ReceiptHandle: receipt }, 0);
        this.o.log("warn", "job released: the worker is stopping", { jobId });
        return;
      }
      const { kind, message, code } = classify(error);
      if (kind === "transient" && receives < this.o.maxReceives) {
        const backoff = Math.min(300, 10 * 2 ** (receives - 1));
        await this.release({ ReceiptHandle: receipt }, backoff);
        this.o.log("warn", "job failed, will retry", {
          jobId,
          error: message,
          receives,
          backoffSeconds: backoff,
        });
        return;
      }
      await this.publish(job, {
        kind: "rejected",
        providerId: null,
        retryable: kind !== "bad_input",
        reason: message,
        retryAfterSeconds: null,
        httpStatus: null,
        ...(code ? { code } : {}),
      });
      await this.delete(receipt);
      this.stats.failed += 1;
      this.o.log(kind === "bad_input" ? "warn" : "error", "job failed", { jobId, kind, error: message });
    } catch (inner) {
      // Could not report or release: the message reappears after its visibility timeout.
      this.o.log("error", "could not settle a failed job; it will be redelivered", {
        jobId,
        error: String(inner),
      });
    }
  }

  /**
   * A message that is not a valid job: reported as failed when its job id and attempt are readable
   * (a result names the attempt it ends), else left for the DLQ.
   */
  private async poison(message: Message, error: unknown): Promise<void> {
    let named: { jobId?: unknown; attempt?: unknown } = {};
    try {
      named = (JSON.parse(message.Body ?? "") as typeof named | null) ?? {};
    } catch {
      named = {};
    }
    const { jobId, attempt } = named;
    const reason = `invalid worker message: ${error instanceof Error ? error.message.slice(0, 500) : String(error)}`;
    if (
      typeof jobId === "string" &&
      jobId.length > 0 &&
      jobId.length <= 64 &&
      typeof attempt === "number" &&
      Number.isInteger(attempt) &&
      attempt >= 0
    ) {
      try {
        await this.publish(
          { jobId, attempt },
          {
            kind: "rejected",
            providerId: null,
            retryable: false,
            reason,
            retryAfterSeconds: null,
            httpStatus: null,
          },
        );
        await this.delete(message.ReceiptHandle as string);
        this.stats.failed += 1;
      } catch (inner) {
        this.o.log("error", "could not report an invalid message", { jobId, error: String(inner) });
      }
      return;
    }
    this.o.log("error", "unreadable message left for the dead-letter queue", {
      messageId: message.MessageId,
      reason,
    });
  }

  /** Puts the result of the job's attempt on the results queue, as the self-hosted provider's. */
  private async publish(
    { jobId, attempt }: Pick<WorkerJobMessage, "jobId" | "attempt">,
    result: FinishedResult,
  ): Promise<void> {
    const body: ResultMessage = {
      jobId,
      provider: "self-hosted",
      attempt,
      source: "worker",
      observedAt: this.o.clock().toISOString(),
      result,
    };
    // Checked against the results queue's schema, as every producer's message is (shared/schemas/queue.ts).
    await this.o.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.o.resultsQueueUrl,
        MessageBody: encodeMessage(queues.results, body),
      }),
    );
  }

  private async delete(receipt: string): Promise<void> {
    await this.o.sqs.send(
      new DeleteMessageCommand({ QueueUrl: this.o.fallbackQueueUrl, ReceiptHandle: receipt }),
    );
  }

  private async changeVisibility(receipt: string, seconds: number): Promise<void> {
    await this.o.sqs.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: this.o.fallbackQueueUrl,
        ReceiptHandle: receipt,
        VisibilityTimeout: seconds,
      }),
    );
  }

  private async release(message: Pick<Message, "ReceiptHandle">, seconds: number): Promise<void> {
    await this.changeVisibility(message.ReceiptHandle as string, seconds);
    this.stats.released += 1;
  }
}
