/**
 * The worker's health, answered over HTTP from the first moment of the process, before the models are
 * synced: a GPU task spends minutes syncing and loading, and ECS (and whoever looks) must be able to
 * tell "still starting" from "stuck" from "cannot work".
 *
 * Phases: starting (checking the execution provider) → syncing (models from S3) → warming (sessions
 * loading onto the device) → ready; or unhealthy, with the reason, from any of them; stopping on SIGTERM.
 *
 * Two questions, two paths:
 * - GET /health — liveness, what the ECS container health check calls: 200 while the worker is
 *   starting, syncing, warming, ready or stopping; 503 only when unhealthy. Each start phase is bounded
 *   on its own (every S3 request has a timeout), so a start that cannot finish ends unhealthy instead of
 *   hanging, and a long sync does not have to fit in ECS's start period (at most 300 s).
 * - GET /ready — readiness: 200 only when ready (polling the queue).
 * Both answer the same JSON body.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export type Phase = "starting" | "syncing" | "warming" | "ready" | "unhealthy" | "stopping";

export interface HealthReport {
  status: Phase;
  /** Why the worker is unhealthy; null otherwise. */
  reason: string | null;
  /** When the current phase began (ISO 8601). */
  since: string;
  /** The execution provider sessions run on, once known. */
  provider: "cuda" | "cpu" | null;
  /** What the current phase is doing (sync progress, ...), and the service's counters once ready. */
  detail: Record<string, unknown>;
}

export class WorkerHealth {
  private phase: Phase = "starting";
  private reasonText: string | null = null;
  private sinceAt = new Date();
  private detailFields: Record<string, unknown> = {};
  private readonly history: Phase[] = ["starting"];
  provider: "cuda" | "cpu" | null = null;
  /** Extra fields merged into every report (the service's counters once it runs). */
  extra: () => Record<string, unknown> = () => ({});

  constructor(private readonly clock: () => Date = () => new Date()) {}

  enter(phase: Exclude<Phase, "unhealthy">, detail: Record<string, unknown> = {}): void {
    // Unhealthy is final: a task that cannot work is replaced, not revived.
    if (this.phase === "unhealthy") return;
    this.phase = phase;
    this.sinceAt = this.clock();
    this.detailFields = detail;
    this.history.push(phase);
  }

  progress(detail: Record<string, unknown>): void {
    this.detailFields = { ...this.detailFields, ...detail };
  }

  fail(reason: string): void {
    if (this.phase === "unhealthy") return;
    this.phase = "unhealthy";
    this.reasonText = reason;
    this.sinceAt = this.clock();
    this.history.push("unhealthy");
  }

  get status(): Phase {
    return this.phase;
  }

  /** Every phase entered so far, in order. */
  get phases(): readonly Phase[] {
    return this.history;
  }

  report(): HealthReport {
    return {
      status: this.status,
      reason: this.reasonText,
      since: this.sinceAt.toISOString(),
      provider: this.provider,
      detail: { ...this.detailFields, ...this.extra() },
    };
  }
}

export interface HealthServer {
  url: string;
  close(): Promise<void>;
}

/** Serves GET /health (liveness) and GET /ready (readiness) for `health` on `port` (0: any). */
export async function startHealthServer(health: WorkerHealth, port: number): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    let ok: boolean;
    if (path === "/health" || path === "/") ok = health.status !== "unhealthy";
    else if (path === "/ready") ok = health.status === "ready";
    else {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(ok ? 200 : 503, { "content-type": "application/json", "cache-control": "no-store" });
    res.end(req.method === "HEAD" ? undefined : JSON.stringify(health.report()));
  });
  // Health checks are local and tiny: nothing should hold a connection open.
  server.requestTimeout = 5_000;
  server.headersTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "0.0.0.0", () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/health`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
