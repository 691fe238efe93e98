import type { ScheduledEvent } from "aws-lambda";
import type { LocalFunction } from "./lambda-runtime.ts";

/** EventBridge schedule rules, locally: invokes each scheduled function every interval, never overlapping itself. */
export class Scheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly functions: LocalFunction[],
    private readonly intervalSeconds: number,
    private readonly onError: (error: unknown) => void,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      if (!this.running) void this.runOnce();
    }, this.intervalSeconds * 1000);
  }

  runOnce(): Promise<void> {
    const run = (this.running ?? Promise.resolve()).then(async () => {
      const event: ScheduledEvent = {
        version: "0",
        id: crypto.randomUUID(),
        "detail-type": "Scheduled Event",
        source: "aws.events",
        account: "000000000000",
        time: new Date().toISOString(),
        region: "us-east-1",
        resources: [],
        detail: {},
      };
      await Promise.all(this.functions.map((fn) => fn.invoke(event).catch(this.onError)));
    });
    this.running = run.finally(() => {
      if (this.running === tracked) this.running = undefined;
    });
    const tracked = this.running;
    return tracked;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
