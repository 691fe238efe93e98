import { Duration } from "aws-cdk-lib";
import { Schedule } from "aws-cdk-lib/aws-events";
import { ROUTES, type RouteDeclaration, routeKey } from "../shared/http/routes.ts";

/**
 * Every Lambda function of the service, one row each. The service stack turns a row into a function
 * with its grants, environment, routes, queue subscription and schedule; the stateful stack reads the
 * `consumes` rows to size each queue's visibility timeout from its consumer's timeout. Adding a
 * function is adding a row (and its `functions/<name>.ts`). A row's HTTP routes come from the route
 * table (`ROUTES`, shared/http/routes.ts): adding a route is adding a row there.
 */

/** The queues of the stateful stack, by short name. */
export type QueueName = "jobs" | "admissions" | "results" | "notifications" | "fallback";

export interface QueueSpec {
  /** Construct id: logical ids `<id>Queue`, `<id>Dlq`, `<id>DlqAlarm`, `<id>AgeAlarm`. */
  id: string;
  /** The environment variable a bound function (or task) reads the queue URL from. */
  urlVariable: string;
  /** Backlog alarm: the oldest message is older than this. */
  maxMessageAge: Duration;
  /**
   * Visibility timeout for a queue no Lambda consumes (a container's own poller); a Lambda-consumed
   * queue's comes from its consumer's timeout (`visibilityTimeoutFor`).
   */
  visibilityTimeout?: Duration;
}

/** Every queue of the app, one row each; the stateful stack makes each a `QueueWithDlq`. */
export const QUEUES: Readonly<Record<QueueName, QueueSpec>> = {
  // Dispatch delays messages while the provider is at capacity, so some age is normal.
  jobs: { id: "Jobs", urlVariable: "JOBS_QUEUE_URL", maxMessageAge: Duration.minutes(15) },
  // An admitted job holds a slot until its message is consumed: any age here is paid capacity left idle.
  admissions: { id: "Admissions", urlVariable: "ADMISSIONS_QUEUE_URL", maxMessageAge: Duration.minutes(5) },
  results: { id: "Results", urlVariable: "RESULTS_QUEUE_URL", maxMessageAge: Duration.minutes(10) },
  // Client webhooks retry with backoff (delayed messages), so a notification may wait a while.
  notifications: {
    id: "Notifications",
    urlVariable: "NOTIFICATIONS_QUEUE_URL",
    maxMessageAge: Duration.minutes(30),
  },
  // Consumed by the GPU worker on ECS, which starts from zero instances (minutes) and may run a job for
  // several minutes; the worker extends a message's visibility while it works.
  fallback: {
    id: "Fallback",
    urlVariable: "FALLBACK_QUEUE_URL",
    maxMessageAge: Duration.minutes(30),
    visibilityTimeout: Duration.minutes(15),
  },
};

export const QUEUE_URL_VARIABLES = Object.fromEntries(
  Object.entries(QUEUES).map(([name, spec]) => [name, spec.urlVariable]),
) as Record<QueueName, string>;

export const QUEUE_NAMES = Object.keys(QUEUES) as QueueName[];

export type TableAccess = "read" | "readWrite";
/** `put`: write objects only; `read`: get (and presign GETs of) objects; `readWrite`: both, plus delete and list. */
export type BucketAccess = "read" | "readWrite" | "put";
/** The buckets of the stateful stack, by short name. */
export type BucketName = "inputs" | "outputs";
export const BUCKET_VARIABLES = {
  inputs: "INPUTS_BUCKET",
  outputs: "OUTPUTS_BUCKET",
} as const satisfies Record<BucketName, string>;
export type QueueAccess = "send" | "consume";

/** Auth of an HTTP route: the API-key Lambda authorizer, or none (public or self-authenticating). */
export type RouteAuth = "apiKey" | "none";

export type RouteSpec =
  | {
      /** `"POST /v1/jobs"`, `"GET /v1/jobs/{id}"`, or `"$default"`. */
      routeKey: string;
      auth: "apiKey";
    }
  | {
      routeKey: string;
      auth: "none";
      /** Why this route needs no authorizer: the cdk-nag AwsSolutions-APIG4 acknowledgement of the route. */
      unauthenticatedBecause: string;
    };

/** The routes of the table that the function `id` serves, as API Gateway routes. */
export function routesServedBy(
  id: RouteDeclaration["servedBy"],
  routes: readonly RouteDeclaration[] = ROUTES,
): RouteSpec[] {
  return routes
    .filter((route) => route.servedBy === id)
    .map((route) =>
      route.auth === "apiKey"
        ? { routeKey: routeKey(route), auth: "apiKey" }
        : { routeKey: routeKey(route), auth: "none", unauthenticatedBecause: route.unauthenticatedBecause },
    );
}

/** API Gateway's catch-all: the API function answers 404 and 405 in the API's error format. */
export const CATCH_ALL_ROUTE: RouteSpec = {
  routeKey: "$default",
  auth: "none",
  unauthenticatedBecause:
    "the catch-all route only answers 404/405 in the API's error format for paths and methods that do not exist",
};

export interface QueueSubscription {
  queue: QueueName;
  batchSize: number;
  maxBatchingWindow: Duration;
  /** At least 2 (Lambda's minimum) when set. */
  maxConcurrency?: number;
}

/** What a function needs of the provider: plain settings, and which secrets it reads. */
export interface ProviderNeeds {
  /**
   * The provider modules' settings (MODELSLAB_BASE_URL, MODELSLAB_MAX_CONCURRENCY, SELF_HOSTED_MAX_JOBS)
   * and CALLBACK_BASE_URL (the callback receiver's origin).
   */
  settings?: boolean;
  /** MODELSLAB_API_KEY_SECRET_ARN + read grant. */
  apiKey?: boolean;
  /** CALLBACK_SECRET_ARN + read grant. */
  callbackSecret?: boolean;
  /** PROVIDER_OUTPUT_HOSTS: where outputs may be downloaded from (finalize) — also set with `settings`. */
  outputHosts?: boolean;
  /**
   * SELF_HOSTED_MODELS: the self-hosted model catalog, without its S3 locations (the API checks pinned
   * jobs against it and lists it at GET /v1/models) — also set with `settings`.
   */
  catalog?: boolean;
}

export interface FunctionSpec {
  /** Construct id; the function's logical id is `<id>Function`. */
  id: string;
  /** Module under `functions/`, relative to the repository root; it exports `handler`. */
  entry: `functions/${string}.ts`;
  memoryMb: number;
  timeout: Duration;
  table?: TableAccess;
  queues?: Partial<Record<QueueName, readonly QueueAccess[]>>;
  buckets?: Partial<Record<BucketName, BucketAccess>>;
  /** EVENT_BUS_NAME + events:PutEvents on the app's bus (job lifecycle events). */
  events?: boolean;
  consumes?: QueueSubscription;
  /** Dead-letter queues it sends to itself (`<NAME>_DLQ_URL`), e.g. notifications whose retries ran out. */
  deadLetters?: readonly QueueName[];
  routes?: readonly RouteSpec[];
  /**
   * This function receives the provider's callbacks (exactly one row sets it): with the
   * `function-url` callback ingress its routes are served by a Lambda function URL instead of the
   * HTTP API, and CALLBACK_BASE_URL names whichever serves them.
   */
  callbackReceiver?: boolean;
  /** This function is the HTTP API's Lambda authorizer (exactly one row sets it). */
  httpAuthorizer?: boolean;
  schedule?: Schedule;
  provider?: ProviderNeeds;
}

/** What dispatch sends, on either of its queues. */
const DISPATCH_QUEUES: FunctionSpec["queues"] = {
  jobs: ["send"],
  admissions: ["send"],
  results: ["send"],
  notifications: ["send"],
  fallback: ["send"],
};

export const FUNCTIONS: readonly FunctionSpec[] = [
  {
    id: "Api",
    entry: "functions/api.ts",
    memoryMb: 512,
    // A `Prefer: wait` submit holds the request up to MAX_PREFER_WAIT_SECONDS (at most 25 s) from its
    // arrival, then answers: the function must outlive that, and stay under API Gateway's 30 s
    // integration timeout, so the client gets our answer and never the gateway's 503.
    timeout: Duration.seconds(29),
    table: "readWrite",
    // notifications: the outbox of job lifecycle notifications (cancel makes a job terminal).
    queues: { jobs: ["send"], notifications: ["send"] },
    // inputs: base64 images and presigned uploads of control images; outputs: presigned GETs of results.
    buckets: { inputs: "readWrite", outputs: "read" },
    events: true,
    routes: [...routesServedBy("Api"), CATCH_ALL_ROUTE],
    provider: { catalog: true },
  },
  {
    id: "Authorizer",
    entry: "functions/authorizer.ts",
    memoryMb: 256,
    timeout: Duration.seconds(5),
    table: "read",
    httpAuthorizer: true,
  },
  {
    id: "Reconcile",
    entry: "functions/reconcile.ts",
    memoryMb: 512,
    timeout: Duration.seconds(60),
    table: "readWrite",
    // jobs: resend stuck queued jobs; results: what a provider fetch found (one ingestion path);
    // notifications: terminal jobs whose notify message was lost.
    // fallback: re-sends a worker message whose send was lost; admissions: the safety net's admissions.
    queues: {
      jobs: ["send"],
      admissions: ["send"],
      results: ["send"],
      notifications: ["send"],
      fallback: ["send"],
    },
    // inputs: stored control images become presigned GETs in a re-sent worker message.
    buckets: { inputs: "read" },
    events: true,
    schedule: Schedule.rate(Duration.minutes(1)),
    provider: { settings: true, apiKey: true, callbackSecret: true },
  },
  {
    id: "Dispatch",
    entry: "functions/dispatch.ts",
    memoryMb: 512,
    // The provider's POST can take 90 s.
    timeout: Duration.seconds(120),
    table: "readWrite",
    // Jobs waiting for capacity wait in the waiting list; the sends are retries, admissions of the slots
    // it releases, and the fallback's.
    // fallback: self-hosted jobs, and `auto` jobs the provider cannot take (breaker open, no capacity in time).
    queues: DISPATCH_QUEUES,
    // inputs: the control image the provider (or worker) is given (a presigned GET).
    buckets: { inputs: "read" },
    events: true,
    consumes: { queue: "jobs", batchSize: 10, maxBatchingWindow: Duration.seconds(0), maxConcurrency: 2 },
    provider: { settings: true, apiKey: true, callbackSecret: true },
  },
  {
    // Dispatch's use case on the admissions queue: a job admitted on a freed slot starts without waiting
    // behind the jobs queue's backlog (its slot would sit idle meanwhile).
    id: "Admit",
    entry: "functions/admit.ts",
    memoryMb: 512,
    // The provider's POST can take 90 s.
    timeout: Duration.seconds(120),
    table: "readWrite",
    queues: DISPATCH_QUEUES,
    buckets: { inputs: "read" },
    events: true,
    // No batching window: an admission's message comes alone, and its slot is held (idle) until it is
    // consumed; a window would add its length to every slot turnover.
    consumes: {
      queue: "admissions",
      batchSize: 10,
      maxBatchingWindow: Duration.seconds(0),
      maxConcurrency: 2,
    },
    provider: { settings: true, apiKey: true, callbackSecret: true },
  },
  {
    id: "Callback",
    entry: "functions/callback.ts",
    memoryMb: 256,
    timeout: Duration.seconds(10),
    queues: { results: ["send"] },
    callbackReceiver: true,
    routes: routesServedBy("Callback"),
    provider: { callbackSecret: true },
  },
  {
    id: "Finalize",
    entry: "functions/finalize.ts",
    memoryMb: 512,
    timeout: Duration.seconds(60),
    table: "readWrite",
    // jobs: a failed attempt goes back to dispatch for a retry; fallback: an `auto` job whose provider
    // attempts failed too often goes to the self-hosted workers; results: a fallback provider's
    // immediate answer (one ingestion path); admissions: the next job on each slot it releases.
    queues: {
      jobs: ["send"],
      admissions: ["send"],
      results: ["send"],
      notifications: ["send"],
      fallback: ["send"],
    },
    // Streams the provider's images into the outputs bucket (and reads them back to check; the worker's
    // outputs are read back from it); inputs: presigned GETs in a worker message.
    buckets: { outputs: "readWrite", inputs: "read" },
    events: true,
    // No batching window: finalize releases the result's slot, which admits the next waiting job.
    consumes: { queue: "results", batchSize: 10, maxBatchingWindow: Duration.seconds(0) },
    // Output host allow-list, retry timings, the providers' settings; the callback secret for the
    // callback URL of an attempt it starts on the fallback.
    provider: { settings: true, callbackSecret: true },
  },
  {
    id: "Notify",
    entry: "functions/notify.ts",
    memoryMb: 512,
    // One delivery try is at most 15 s; a batch of 10 runs in parallel.
    timeout: Duration.seconds(30),
    table: "readWrite",
    // notifications: retries are delayed messages to itself.
    queues: { notifications: ["send"] },
    deadLetters: ["notifications"],
    // Presigned output URLs in the notification payload.
    buckets: { outputs: "read" },
    events: true,
    consumes: { queue: "notifications", batchSize: 10, maxBatchingWindow: Duration.seconds(1) },
    provider: { outputHosts: true },
  },
];

/** Lambda's guidance: a source queue's visibility timeout ≥ 6 × the consumer's timeout (+ batching window). */
export const VISIBILITY_TIMEOUT_FACTOR = 6;

/**
 * The visibility timeout a queue needs for its consumers in `functions` (the largest, if several), or
 * undefined for a queue nobody consumes through an event source mapping.
 */
export function visibilityTimeoutFor(
  queue: QueueName,
  functions: readonly FunctionSpec[] = FUNCTIONS,
): Duration | undefined {
  const seconds = functions
    .filter((fn) => fn.consumes?.queue === queue)
    .map(
      (fn) =>
        VISIBILITY_TIMEOUT_FACTOR * fn.timeout.toSeconds() +
        (fn.consumes?.maxBatchingWindow.toSeconds() ?? 0),
    );
  return seconds.length === 0 ? undefined : Duration.seconds(Math.max(...seconds));
}
