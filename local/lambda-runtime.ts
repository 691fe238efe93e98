import { randomUUID } from "node:crypto";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Context } from "aws-lambda";

export interface LocalFunctionSpec {
  logicalId: string;
  entry: string;
  handlerExport: string;
  timeoutSeconds: number;
  memoryMb: number;
}

type Handler = (event: unknown, context: Context) => Promise<unknown>;

export class FunctionTimeoutError extends Error {}

/**
 * Runs the same handler module Lambda runs, in this process: loads it on first use (its cold start
 * parses configuration from process.env, which the local stack has set from the template), builds a
 * Lambda context and enforces the function's timeout.
 */
export class LocalFunction {
  private handler: Promise<Handler> | undefined;
  inFlight = 0;

  constructor(
    readonly spec: LocalFunctionSpec,
    private readonly root: string,
  ) {}

  private load(): Promise<Handler> {
    this.handler ??= import(pathToFileURL(resolve(this.root, this.spec.entry)).href).then((module) => {
      const handler = module[this.spec.handlerExport];
      if (typeof handler !== "function") {
        throw new Error(`${this.spec.entry} does not export a function named ${this.spec.handlerExport}`);
      }
      return handler as Handler;
    });
    return this.handler;
  }

  async invoke(event: unknown): Promise<unknown> {
    const handler = await this.load();
    const deadline = Date.now() + this.spec.timeoutSeconds * 1000;
    const context: Context = {
      callbackWaitsForEmptyEventLoop: false,
      functionName: this.spec.logicalId,
      functionVersion: "$LATEST",
      invokedFunctionArn: `arn:aws:lambda:us-east-1:000000000000:function:${this.spec.logicalId}`,
      memoryLimitInMB: String(this.spec.memoryMb),
      awsRequestId: randomUUID(),
      logGroupName: `/aws/lambda/${this.spec.logicalId}`,
      logStreamName: "local",
      getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
      done: () => undefined,
      fail: () => undefined,
      succeed: () => undefined,
    };
    this.inFlight++;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        handler(event, context),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new FunctionTimeoutError(
                  `${this.spec.logicalId} timed out after ${this.spec.timeoutSeconds} s`,
                ),
              ),
            this.spec.timeoutSeconds * 1000,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
      this.inFlight--;
    }
  }
}
