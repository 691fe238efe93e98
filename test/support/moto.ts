/**
 * moto_server (Python; moto 5) as the second AWS emulator of `npm run test:moto`: started on a free
 * loopback port, behind a small proxy that works around two moto bugs (below). DynamoDB, SQS and S3
 * share its one endpoint.
 *
 * 1. A `size(path)` in a condition or filter raises inside moto when the attribute is missing, and the
 *    client gets an HTML 500; DynamoDB evaluates the comparison as false. The adapters compare size()
 *    of attributes that may be missing (the capacity gate's holders map before its first refusal; a
 *    circuit breaker's or a notification's list), so the proxy rewrites each `size(p) <op> v` of a
 *    DynamoDB request into `(attribute_exists(p) AND size(p) <op> v)`, which DynamoDB evaluates the
 *    same and moto evaluates without raising (its AND stops at the first false). Any other use of
 *    size() passes unchanged and still gets moto's 500: loud, never silently wrong.
 * 2. moto serves requests on threads and does not lock its DynamoDB tables: two conditional writes
 *    racing on one item can both pass their condition (two notification writes of the same try both
 *    succeeded), where DynamoDB applies one and fails the other. The proxy sends moto one DynamoDB
 *    request at a time; SQS and S3 pass concurrently.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { Agent, createServer, type IncomingMessage, request, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface MotoHandle {
  /** The proxy in front of moto: the endpoint for DynamoDB, SQS and S3. */
  endpoint: string;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;
const KEPT_OUTPUT_LINES = 40;
/** DynamoDB requests are small (a TransactWriteItems is at most 4 MB of items); more is refused. */
const MAX_DYNAMODB_BODY_BYTES = 16 * 1024 * 1024;
/** Bounds one request to moto, so that a stuck one cannot hold the DynamoDB queue forever. */
const UPSTREAM_TIMEOUT_MS = 60_000;

export async function startMoto(command = "moto_server"): Promise<MotoHandle> {
  const child = spawn(command, ["-H", "127.0.0.1", "-p", "0"], { stdio: ["ignore", "pipe", "pipe"] });
  // moto logs every request; the pipes are drained for as long as it runs, keeping the last lines for errors.
  const output: string[] = [];
  const keep = (chunk: Buffer) => {
    output.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    output.splice(0, Math.max(0, output.length - KEPT_OUTPUT_LINES));
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  let motoUrl: string;
  try {
    motoUrl = await listeningAddress(child, output);
    await answers(motoUrl);
  } catch (error) {
    await stopChild(child);
    throw error;
  }

  const agent = new Agent({ keepAlive: true });
  const target = new URL(motoUrl);
  const dynamodb = { queue: Promise.resolve() as Promise<unknown> };
  const proxy = createServer((req, res) => {
    forward(req, res, target, agent, dynamodb).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
      res.end(`moto proxy: ${String(error)}`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    proxy.once("error", reject);
    proxy.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = proxy.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: async () => {
      await new Promise<void>((resolve) => {
        proxy.close(() => resolve());
        proxy.closeAllConnections();
      });
      agent.destroy();
      await stopChild(child);
    },
  };
}

/** The address moto prints once it listens ("Running on http://127.0.0.1:PORT"). */
function listeningAddress(child: ChildProcess, output: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => fail(new Error(`moto_server did not start in ${START_TIMEOUT_MS} ms: ${output.join(" | ")}`)),
      START_TIMEOUT_MS,
    );
    const onData = (chunk: Buffer) => {
      const match = /Running on (http:\/\/127\.0\.0\.1:\d+)/.exec(chunk.toString("utf8"));
      if (!match?.[1]) return;
      cleanUp();
      resolve(match[1]);
    };
    const onExit = (code: number | null) =>
      fail(new Error(`moto_server exited (${code}) before listening: ${output.join(" | ")}`));
    const onError = (error: Error) => fail(new Error(`moto_server could not start: ${error.message}`));
    const cleanUp = () => {
      clearTimeout(timer);
      child.stderr?.off("data", onData);
      child.stdout?.off("data", onData);
      child.off("exit", onExit);
      child.off("error", onError);
    };
    const fail = (error: Error) => {
      cleanUp();
      reject(error);
    };
    child.stderr?.on("data", onData);
    child.stdout?.on("data", onData);
    child.once("exit", onExit);
    child.once("error", onError);
  });
}

/** Waits until moto's own API answers (it prints its address just before it serves). */
async function answers(url: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    try {
      const response = await fetch(`${url}/moto-api/`, { signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      if (response.ok) return;
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`moto_server at ${url} does not answer: ${String(error)}`);
    }
    if (Date.now() > deadline) throw new Error(`moto_server at ${url} does not answer`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

async function forward(
  req: IncomingMessage,
  res: ServerResponse,
  target: URL,
  agent: Agent,
  dynamodb: { queue: Promise<unknown> },
): Promise<void> {
  const headers = { ...req.headers, host: target.host };
  const send = (body?: Buffer) =>
    new Promise<void>((resolve, reject) => {
      const upstream = request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          answer.once("end", resolve);
          answer.once("error", reject);
        },
      );
      upstream.setTimeout(UPSTREAM_TIMEOUT_MS, () =>
        upstream.destroy(new Error(`moto did not answer in ${UPSTREAM_TIMEOUT_MS} ms`)),
      );
      upstream.once("error", reject);
      if (body) upstream.end(body);
      else req.pipe(upstream);
    });
  if (!String(req.headers["x-amz-target"] ?? "").startsWith("DynamoDB_")) return send();

  let body = await readBounded(req, MAX_DYNAMODB_BODY_BYTES);
  const rewritten = rewriteSizeComparisons(body.toString("utf8"));
  if (rewritten !== undefined) {
    body = Buffer.from(rewritten, "utf8");
    headers["content-length"] = String(body.length);
  }
  const run = dynamodb.queue.then(() => send(body));
  dynamodb.queue = run.catch(() => undefined);
  await run;
}

async function readBounded(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of req) {
    bytes += (chunk as Buffer).length;
    if (bytes > limit) throw new Error(`DynamoDB request over ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

const SIZE_COMPARISON = /size\(\s*([^()\s]+)\s*\)\s*(<>|<=|>=|=|<|>)\s*([:#\w.[\]]+)/g;

/**
 * The request with every `size(p) <op> v` of its ConditionExpression/FilterExpression members (at any
 * depth: TransactItems too) guarded by `attribute_exists(p)`; undefined when there is none.
 */
export function rewriteSizeComparisons(json: string): string | undefined {
  if (!json.includes("size(")) return undefined;
  let changed = false;
  const visit = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(visit);
    if (typeof value !== "object" || value === null) return value;
    return Object.fromEntries(
      Object.entries(value).map(([name, member]) => {
        if ((name === "ConditionExpression" || name === "FilterExpression") && typeof member === "string") {
          const guarded = member.replace(
            SIZE_COMPARISON,
            (_, path: string, op: string, operand: string) =>
              `(attribute_exists(${path}) AND size(${path}) ${op} ${operand})`,
          );
          changed ||= guarded !== member;
          return [name, guarded];
        }
        return [name, visit(member)];
      }),
    );
  };
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return undefined; // moto answers the malformed request itself
  }
  const rewritten = JSON.stringify(visit(parsed));
  return changed ? rewritten : undefined;
}
