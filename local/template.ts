/**
 * The local stack's view of the CDK app: it synthesizes the real templates (without bundling), creates
 * their DynamoDB tables and SQS queues on the emulators, and reads the functions, routes, queue
 * subscriptions and schedules out of them. Nothing here is a second description of the
 * infrastructure: a table, queue, route or function added to the CDK app shows up locally.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  type AttributeDefinition,
  CreateTableCommand,
  type CreateTableCommandInput,
  DescribeTableCommand,
  DynamoDBClient,
  type GlobalSecondaryIndex,
  type KeySchemaElement,
  type LocalSecondaryIndex,
  ResourceInUseException,
} from "@aws-sdk/client-dynamodb";
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  type QueueAttributeName,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { type BuildAppOptions, type BuiltApp, buildApp } from "../infra/build-app.ts";
import { HANDLER_EXPORT, LOCAL_ENTRY_METADATA } from "../infra/constructs/house-function.ts";
import { AWS_CLIENT_DEFAULTS, boundedHttpHandler } from "../shared/adapters/aws-client.ts";
import {
  type CfnResource,
  type CfnTemplate,
  LOCAL_ACCOUNT_ID,
  type LocalResource,
  PendingError,
  TemplateResolver,
  UnresolvableError,
} from "./template-resolve.ts";

export type { CfnOutput, CfnParameter, CfnResource, CfnTemplate } from "./template-resolve.ts";
export { LOCAL_ACCOUNT_ID } from "./template-resolve.ts";

export interface LocalFunction {
  logicalId: string;
  /** The TypeScript module, relative to the repository root (`functions/api.ts`). */
  entry: string;
  /** The module's export Lambda calls (`handler`). */
  handlerExport: string;
  timeoutSeconds: number;
  memoryMb: number;
  /** What the template sets, resolved to local values; variables listed in `unresolved` are absent. */
  environment: Record<string, string>;
}

export interface LocalAuthorizer {
  functionId: string;
  /** e.g. `["$request.header.Authorization"]`. */
  identitySource: string[];
  /** How long a verdict is cached per identity (0: not cached). */
  ttlSeconds: number;
  /** The authorizer answers `{ isAuthorized, context }` (HTTP API simple responses). */
  simpleResponses: boolean;
}

export interface LocalRoute {
  /** `"POST /v1/jobs"`, `"GET /v1/jobs/{id}"` or `"$default"`. */
  routeKey: string;
  functionId: string;
  /** Lambda event payload format of the integration (`"2.0"` for HTTP APIs). */
  payloadFormatVersion: string;
  authorizer?: LocalAuthorizer;
}

/** A Lambda function URL (`AWS::Lambda::Url`) and the function it invokes. */
export interface LocalFunctionUrl {
  logicalId: string;
  functionId: string;
  /** `NONE` or `AWS_IAM`. */
  authType: string;
}

export interface LocalEventSourceMapping {
  queueLogicalId: string;
  functionId: string;
  batchSize: number;
  maxBatchingWindowSeconds: number;
  reportBatchItemFailures: boolean;
  maxConcurrency?: number;
}

export interface LocalSchedule {
  functionId: string;
  /** `rate(1 minute)`, `cron(...)`. */
  expression: string;
}

export interface LocalQueue {
  url: string;
  arn: string;
  name: string;
  visibilityTimeoutSeconds: number;
  /** ARN of the queue's dead-letter queue, when it has one. */
  dlqArn?: string;
  maxReceiveCount?: number;
}

export interface UnresolvedVariable {
  functionId: string;
  variable: string;
  /** Why it has no local value (e.g. `HttpApi.ApiEndpoint (AWS::ApiGatewayV2::Api) has no local equivalent`). */
  reason: string;
}

export interface LocalTopology {
  /** By logical id. */
  tables: Record<string, { name: string; arn: string }>;
  /** By logical id. */
  queues: Record<string, LocalQueue>;
  /**
   * By logical id: the local name of each `AWS::S3::Bucket` (`${namePrefix}${logicalId}`, lower-cased).
   * Only named here, so that `Ref`s to them resolve; creating them on an S3 emulator is the caller's job.
   */
  buckets: Record<string, { name: string; arn: string }>;
  /** By logical id: each `AWS::Events::EventBus` (its template name, prefixed); not emulated. */
  eventBuses: Record<string, { name: string; arn: string }>;
  /** By logical id; only functions whose template Metadata names a `local:entry`. */
  functions: Record<string, LocalFunction>;
  routes: LocalRoute[];
  functionUrls: LocalFunctionUrl[];
  eventSourceMappings: LocalEventSourceMapping[];
  schedules: LocalSchedule[];
  /** Environment variables with no local value (secret ARNs, the API's own URL): the local stack sets them. */
  unresolved: UnresolvedVariable[];
}

export interface LocalEndpoints {
  dynamodb: string;
  sqs: string;
  region: string;
}

export interface ProvisionOptions {
  /** Prepended to logical ids to name tables and queues (`${namePrefix}${logicalId}`); default none. */
  namePrefix?: string;
  /**
   * Local addresses of the template's HTTP endpoints, by logical id: an `AWS::ApiGatewayV2::Api`
   * (its `ApiEndpoint`) or an `AWS::Lambda::Url` (its `FunctionUrl`). References to them (a
   * function's environment naming the callback URL) resolve to these; without one they are unresolved.
   */
  localUrls?: Record<string, string>;
}

export interface SynthesizeOptions {
  /** CDK context (e.g. `{ stage: "local" }`). */
  context?: Record<string, unknown>;
  /** The function table, when a test wants other rows. */
  functions?: BuildAppOptions["functions"];
  /** Runs on the built app before synthesis: tests add constructs to `stacks.stateful` etc. */
  configure?: (built: BuiltApp) => void;
}

/**
 * Builds the CDK app in-process without bundling and returns each stack's template, by stack name
 * (`controlnet-dev-stateful`, `controlnet-dev-service`).
 */
export async function synthesizeTemplates(
  options: SynthesizeOptions = {},
): Promise<Record<string, CfnTemplate>> {
  const outdir = mkdtempSync(path.join(tmpdir(), "cdk-local-"));
  try {
    const built = buildApp({
      skipBundling: true,
      outdir,
      // The local stack never runs the GPU fallback: a placeholder image spares a Docker asset (and worker/Dockerfile).
      context: {
        workerImage: LOCAL_WORKER_IMAGE,
        selfHostedModels: LOCAL_SELF_HOSTED_MODELS,
        ...options.context,
      },
      ...(options.functions && { functions: options.functions }),
    });
    options.configure?.(built);
    const assembly = built.app.synth();
    const templates: Record<string, CfnTemplate> = {};
    for (const stack of assembly.stacks) templates[stack.stackName] = stack.template as CfnTemplate;
    return templates;
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

const credentials = { accessKeyId: "local", secretAccessKey: "local" };

/**
 * The local catalog: the tiny random-weight model (worker/src/models/tiny.ts) under the id the local
 * examples and tests name, with its ControlNets. Its S3 location is only a name: the in-process worker
 * builds the tiny model into each entry's folder instead (local/stack.ts), unless MODEL_DIR is set.
 */
export const LOCAL_SELF_HOSTED_MODELS = [
  {
    id: "sd15",
    kind: "sd15",
    controlnets: ["canny", "depth", "inpaint", "tile", "scribble", "shuffle", "qrcode", "blur"],
    annotators: [],
    s3Uri: "s3://local-models/sd15/",
  },
] as const;

/** The worker image the local synth names (nothing pulls it). */
export const LOCAL_WORKER_IMAGE = "local/controlnet-worker:unused";

/**
 * Creates every `AWS::DynamoDB::Table` and `AWS::SQS::Queue` of the templates on the emulators (named
 * `${namePrefix}${logicalId}`; an existing table of that name is reused when its keys and indexes
 * match), names the S3 buckets and event buses, then resolves the functions, routes, event source
 * mappings and schedules to local values. Every other resource type (alarms, topics, dashboards, IAM,
 * ECS...) is ignored: a reference to one from a function's environment is reported in `unresolved`.
 */
export async function provisionLocal(
  templates: Record<string, CfnTemplate>,
  endpoints: LocalEndpoints,
  options: ProvisionOptions = {},
): Promise<LocalTopology> {
  const prefix = options.namePrefix ?? "";
  const { region } = endpoints;
  const resources = new Map<string, Map<string, LocalResource>>();
  const resolver = new TemplateResolver({ templates, region, resources });
  const register = (stackName: string, logicalId: string, resource: LocalResource) => {
    const stack = resources.get(stackName) ?? new Map<string, LocalResource>();
    resources.set(stackName, stack);
    stack.set(logicalId, resource);
  };

  const all = Object.entries(templates).flatMap(([stackName, template]) =>
    Object.entries(template.Resources ?? {}).map(([logicalId, resource]) => ({
      stackName,
      logicalId,
      resource,
    })),
  );
  const ofType = (type: string) => all.filter((entry) => entry.resource.Type === type);
  const topology: LocalTopology = {
    tables: {},
    queues: {},
    buckets: {},
    eventBuses: {},
    functions: {},
    routes: [],
    functionUrls: [],
    eventSourceMappings: [],
    schedules: [],
    unresolved: [],
  };
  const claim = (kind: string, logicalId: string, taken: Record<string, unknown>) => {
    if (logicalId in taken)
      throw new Error(`Two stacks define ${kind} ${logicalId}; the local names would collide`);
  };

  const bounded = () => ({
    maxAttempts: AWS_CLIENT_DEFAULTS.maxAttempts,
    requestHandler: boundedHttpHandler(),
  });
  const dynamodb = new DynamoDBClient({ region, endpoint: endpoints.dynamodb, credentials, ...bounded() });
  const sqs = new SQSClient({ region, endpoint: endpoints.sqs, credentials, ...bounded() });
  try {
    for (const { stackName, logicalId, resource } of ofType("AWS::DynamoDB::Table")) {
      claim("table", logicalId, topology.tables);
      const name = `${prefix}${logicalId}`;
      const input = tableInput(
        name,
        resolver.resolve(stackName, resource.Properties ?? {}) as TableProperties,
      );
      await createTable(dynamodb, input);
      const arn = `arn:aws:dynamodb:${region}:${LOCAL_ACCOUNT_ID}:table/${name}`;
      topology.tables[logicalId] = { name, arn };
      register(stackName, logicalId, { ref: name, attributes: { Arn: arn } });
    }

    // Queues in dependency order: a queue's redrive policy names its DLQ's ARN, so the DLQ comes first.
    let pending = ofType("AWS::SQS::Queue");
    while (pending.length > 0) {
      const waiting: typeof pending = [];
      let lastPending: PendingError | undefined;
      for (const entry of pending) {
        const { stackName, logicalId, resource } = entry;
        let attributes: Partial<Record<QueueAttributeName, string>>;
        try {
          attributes = queueAttributes(resolver, stackName, resource);
        } catch (error) {
          if (!(error instanceof PendingError)) throw error;
          lastPending = error;
          waiting.push(entry);
          continue;
        }
        claim("queue", logicalId, topology.queues);
        const queue = await createQueue(sqs, `${prefix}${logicalId}`, resource, attributes);
        topology.queues[logicalId] = queue;
        register(stackName, logicalId, {
          ref: queue.url,
          attributes: { Arn: queue.arn, QueueName: queue.name, QueueUrl: queue.url },
        });
      }
      if (waiting.length === pending.length) {
        throw new Error(
          `Queues ${waiting.map((w) => w.logicalId).join(", ")} wait on each other (${lastPending?.message})`,
        );
      }
      pending = waiting;
    }

    // Named, not created: references to them (function environments) resolve to these local names.
    for (const { stackName, logicalId } of ofType("AWS::S3::Bucket")) {
      claim("bucket", logicalId, topology.buckets);
      const name = localBucketName(prefix, logicalId);
      const arn = `arn:aws:s3:::${name}`;
      topology.buckets[logicalId] = { name, arn };
      register(stackName, logicalId, {
        ref: name,
        attributes: {
          Arn: arn,
          DomainName: `${name}.s3.amazonaws.com`,
          RegionalDomainName: `${name}.s3.${region}.amazonaws.com`,
        },
      });
    }
    for (const { stackName, logicalId, resource } of ofType("AWS::Events::EventBus")) {
      claim("event bus", logicalId, topology.eventBuses);
      const templateName = resolver.resolve(stackName, resource.Properties?.Name);
      const name = `${prefix}${typeof templateName === "string" ? templateName : logicalId}`;
      const arn = `arn:aws:events:${region}:${LOCAL_ACCOUNT_ID}:event-bus/${name}`;
      topology.eventBuses[logicalId] = { name, arn };
      register(stackName, logicalId, { ref: name, attributes: { Arn: arn, Name: name } });
    }

    for (const [type, attribute] of [
      ["AWS::ApiGatewayV2::Api", "ApiEndpoint"],
      ["AWS::Lambda::Url", "FunctionUrl"],
    ] as const) {
      for (const { stackName, logicalId } of ofType(type)) {
        const url = options.localUrls?.[logicalId];
        if (url !== undefined)
          register(stackName, logicalId, { ref: logicalId, attributes: { [attribute]: url } });
      }
    }

    const functions = ofType("AWS::Lambda::Function").filter(
      ({ resource }) => typeof resource.Metadata?.[LOCAL_ENTRY_METADATA] === "string",
    );
    for (const { stackName, logicalId } of functions) {
      claim("function", logicalId, topology.functions);
      register(stackName, logicalId, { ref: logicalId, attributes: { Arn: functionArn(region, logicalId) } });
    }
    for (const { stackName, logicalId, resource } of functions) {
      topology.functions[logicalId] = localFunction(
        resolver,
        stackName,
        logicalId,
        resource,
        topology.unresolved,
      );
    }

    const functionIdOf = (stackName: string, value: unknown, what: string): string => {
      const resolved = resolver.resolveString(stackName, value, { markers: true });
      const match = /arn:aws:lambda:[^:]+:\d{12}:function:([A-Za-z0-9_-]+)/.exec(resolved);
      const id = match?.[1] ?? resolved;
      if (!(id in topology.functions)) throw new Error(`${what} refers to ${resolved}, not a local function`);
      return id;
    };
    const resourceIn = (stackName: string, logicalId: string, type: string): CfnResource => {
      const resource = templates[stackName]?.Resources?.[logicalId];
      if (resource?.Type !== type) throw new Error(`${stackName}/${logicalId} is not a ${type}`);
      return resource;
    };

    for (const { stackName, logicalId, resource } of ofType("AWS::ApiGatewayV2::Route")) {
      const props = resource.Properties ?? {};
      const target = resolver.resolveString(stackName, props.Target, { markers: true });
      const integrationId = /^integrations\/(.+)$/.exec(target)?.[1];
      if (!integrationId)
        throw new Error(`Route ${logicalId} has target ${target}, not a Lambda integration`);
      const integration =
        resourceIn(stackName, integrationId, "AWS::ApiGatewayV2::Integration").Properties ?? {};
      const route: LocalRoute = {
        routeKey: resolver.resolveString(stackName, props.RouteKey),
        functionId: functionIdOf(stackName, integration.IntegrationUri, `Integration ${integrationId}`),
        payloadFormatVersion: String(resolver.resolve(stackName, integration.PayloadFormatVersion) ?? "2.0"),
      };
      if (props.AuthorizationType === "CUSTOM") {
        const authorizerId = resolver.resolveString(stackName, props.AuthorizerId, { markers: true });
        const authorizer =
          resourceIn(stackName, authorizerId, "AWS::ApiGatewayV2::Authorizer").Properties ?? {};
        const identitySource = resolver.resolve(stackName, authorizer.IdentitySource ?? []);
        route.authorizer = {
          functionId: functionIdOf(stackName, authorizer.AuthorizerUri, `Authorizer ${authorizerId}`),
          identitySource: Array.isArray(identitySource) ? identitySource.map(String) : [],
          ttlSeconds: Number(resolver.resolve(stackName, authorizer.AuthorizerResultTtlInSeconds) ?? 0),
          simpleResponses: resolver.resolve(stackName, authorizer.EnableSimpleResponses) === true,
        };
      } else if (props.AuthorizationType !== undefined && props.AuthorizationType !== "NONE") {
        throw new Error(
          `Route ${logicalId}: authorization ${String(props.AuthorizationType)} is not supported locally`,
        );
      }
      topology.routes.push(route);
    }

    for (const { stackName, logicalId, resource } of ofType("AWS::Lambda::Url")) {
      const props = resource.Properties ?? {};
      if (props.Qualifier !== undefined) {
        throw new Error(
          `Function URL ${logicalId}: a qualified (alias or version) URL is not supported locally`,
        );
      }
      topology.functionUrls.push({
        logicalId,
        functionId: functionIdOf(stackName, props.TargetFunctionArn, `Function URL ${logicalId}`),
        authType: resolver.resolveString(stackName, props.AuthType),
      });
    }

    for (const { stackName, logicalId, resource } of ofType("AWS::Lambda::EventSourceMapping")) {
      const props = resource.Properties ?? {};
      const sourceArn = resolver.resolveString(stackName, props.EventSourceArn);
      const queueLogicalId = Object.keys(topology.queues).find(
        (id) => topology.queues[id]?.arn === sourceArn,
      );
      if (!queueLogicalId) continue; // not an SQS source (streams, Kafka): nothing local polls it
      if (resolver.resolve(stackName, props.Enabled) === false) continue;
      const types = resolver.resolve(stackName, props.FunctionResponseTypes ?? []);
      const maxConcurrency = resolver.resolve(
        stackName,
        (props.ScalingConfig as Record<string, unknown>)?.MaximumConcurrency,
      );
      topology.eventSourceMappings.push({
        queueLogicalId,
        functionId: functionIdOf(stackName, props.FunctionName, `EventSourceMapping ${logicalId}`),
        batchSize: Number(resolver.resolve(stackName, props.BatchSize) ?? 10),
        maxBatchingWindowSeconds: Number(
          resolver.resolve(stackName, props.MaximumBatchingWindowInSeconds) ?? 0,
        ),
        reportBatchItemFailures: Array.isArray(types) && types.includes("ReportBatchItemFailures"),
        ...(maxConcurrency !== undefined && { maxConcurrency: Number(maxConcurrency) }),
      });
    }

    for (const { stackName, logicalId, resource } of ofType("AWS::Events::Rule")) {
      const props = resource.Properties ?? {};
      if (props.ScheduleExpression === undefined || props.State === "DISABLED") continue;
      const expression = resolver.resolveString(stackName, props.ScheduleExpression);
      const targets = resolver.resolve(stackName, props.Targets ?? [], { markers: true });
      for (const target of Array.isArray(targets) ? targets : []) {
        const arn = (target as Record<string, unknown>).Arn;
        topology.schedules.push({
          functionId: functionIdOf(stackName, arn, `Rule ${logicalId}`),
          expression,
        });
      }
    }
    return topology;
  } finally {
    dynamodb.destroy();
    sqs.destroy();
  }
}

/** S3 names are lower-case letters, digits, dots and dashes, 3 to 63 characters. */
function localBucketName(prefix: string, logicalId: string): string {
  const name = `${prefix}${logicalId}`
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, "-")
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, "");
  if (name.length < 3 || name.length > 63)
    throw new Error(`Local bucket name ${name} is not 3 to 63 characters`);
  return name;
}

const functionArn = (region: string, logicalId: string) =>
  `arn:aws:lambda:${region}:${LOCAL_ACCOUNT_ID}:function:${logicalId}`;

function localFunction(
  resolver: TemplateResolver,
  stackName: string,
  logicalId: string,
  resource: CfnResource,
  unresolved: UnresolvedVariable[],
): LocalFunction {
  const props = resource.Properties ?? {};
  const handler = resolver.resolveString(stackName, props.Handler ?? `index.${HANDLER_EXPORT}`);
  const variables = ((props.Environment as Record<string, unknown> | undefined)?.Variables ?? {}) as Record<
    string,
    unknown
  >;
  const environment: Record<string, string> = {};
  for (const [variable, value] of Object.entries(variables)) {
    try {
      environment[variable] = resolver.resolveString(stackName, value);
    } catch (error) {
      if (!(error instanceof UnresolvableError)) throw error;
      unresolved.push({ functionId: logicalId, variable, reason: error.message });
    }
  }
  return {
    logicalId,
    entry: String(resource.Metadata?.[LOCAL_ENTRY_METADATA]),
    handlerExport: handler.slice(handler.lastIndexOf(".") + 1),
    timeoutSeconds: Number(resolver.resolve(stackName, props.Timeout) ?? 3),
    memoryMb: Number(resolver.resolve(stackName, props.MemorySize) ?? 128),
    environment,
  };
}

interface TableProperties {
  KeySchema: KeySchemaElement[];
  AttributeDefinitions?: AttributeDefinition[];
  BillingMode?: string;
  ProvisionedThroughput?: { ReadCapacityUnits: number; WriteCapacityUnits: number };
  GlobalSecondaryIndexes?: GlobalSecondaryIndex[];
  LocalSecondaryIndexes?: LocalSecondaryIndex[];
}

function tableInput(name: string, props: TableProperties): CreateTableCommandInput {
  // On-demand locally whatever the template says: dynalite does not throttle anyway.
  const stripThroughput = <T extends { ProvisionedThroughput?: unknown }>(index: T): T => {
    const { ProvisionedThroughput: _ignored, ...rest } = index;
    return rest as T;
  };
  return {
    TableName: name,
    KeySchema: props.KeySchema,
    AttributeDefinitions: props.AttributeDefinitions,
    BillingMode: "PAY_PER_REQUEST",
    ...(props.GlobalSecondaryIndexes?.length && {
      GlobalSecondaryIndexes: props.GlobalSecondaryIndexes.map(stripThroughput),
    }),
    ...(props.LocalSecondaryIndexes?.length && { LocalSecondaryIndexes: props.LocalSecondaryIndexes }),
  };
  // Not applied locally: TimeToLiveSpecification (dynalite has no UpdateTimeToLive; items simply never
  // expire), PointInTimeRecovery, streams, SSE, deletion protection.
}

/** Creates the table, or accepts an existing one (dynalite persists to disk) with the same keys and indexes. */
async function createTable(client: DynamoDBClient, input: CreateTableCommandInput): Promise<void> {
  try {
    await client.send(new CreateTableCommand(input));
    return;
  } catch (error) {
    if (!(error instanceof ResourceInUseException)) throw error;
  }
  const { Table: existing } = await client.send(new DescribeTableCommand({ TableName: input.TableName }));
  const shape = (
    keys: KeySchemaElement[] | undefined,
    indexes: Array<{ IndexName?: string; KeySchema?: KeySchemaElement[] }> = [],
  ) =>
    JSON.stringify({
      keys: keys?.map((k) => `${k.AttributeName}:${k.KeyType}`),
      indexes: indexes
        .map(
          (index) =>
            `${index.IndexName}(${index.KeySchema?.map((k) => `${k.AttributeName}:${k.KeyType}`).join(",")})`,
        )
        .sort(),
    });
  const want = shape(input.KeySchema, input.GlobalSecondaryIndexes);
  const have = shape(existing?.KeySchema, existing?.GlobalSecondaryIndexes);
  if (want !== have) {
    throw new Error(
      `Local table ${input.TableName} exists with another shape (${have}; the template wants ${want}). ` +
        "dynalite cannot change indexes: delete the local data folder (`.data/dynamodb`, jobs and tenants go with it) and start again.",
    );
  }
}

const QUEUE_ATTRIBUTES = {
  VisibilityTimeout: "VisibilityTimeout",
  MessageRetentionPeriod: "MessageRetentionPeriod",
  DelaySeconds: "DelaySeconds",
  ReceiveMessageWaitTimeSeconds: "ReceiveMessageWaitTimeSeconds",
  MaximumMessageSize: "MaximumMessageSize",
  FifoQueue: "FifoQueue",
  ContentBasedDeduplication: "ContentBasedDeduplication",
} as const satisfies Record<string, QueueAttributeName>;

/** The template's queue properties the emulator honours, as SQS attributes (resolving the DLQ's ARN). */
function queueAttributes(
  resolver: TemplateResolver,
  stackName: string,
  resource: CfnResource,
): Partial<Record<QueueAttributeName, string>> {
  const props = resource.Properties ?? {};
  const attributes: Partial<Record<QueueAttributeName, string>> = {};
  for (const [property, attribute] of Object.entries(QUEUE_ATTRIBUTES)) {
    if (props[property] !== undefined)
      attributes[attribute] = resolver.resolveString(stackName, props[property]);
  }
  if (props.RedrivePolicy !== undefined) {
    // Pending until the DLQ exists; the caller retries once it does.
    const policy = resolver.resolve(stackName, props.RedrivePolicy);
    attributes.RedrivePolicy = typeof policy === "string" ? policy : JSON.stringify(policy);
  }
  // Not applied locally: encryption (SqsManagedSseEnabled, KMS), queue policies (enforceSSL).
  return attributes;
}

async function createQueue(
  client: SQSClient,
  baseName: string,
  resource: CfnResource,
  attributes: Partial<Record<QueueAttributeName, string>>,
): Promise<LocalQueue> {
  const fifo = attributes.FifoQueue === "true" || resource.Properties?.FifoQueue === true;
  const name = fifo ? `${baseName}.fifo` : baseName;
  const { QueueUrl: url } = await client.send(
    new CreateQueueCommand({ QueueName: name, Attributes: attributes }),
  );
  if (!url) throw new Error(`CreateQueue ${name} returned no URL`);
  const { Attributes: actual = {} } = await client.send(
    new GetQueueAttributesCommand({
      QueueUrl: url,
      AttributeNames: ["QueueArn", "VisibilityTimeout", "RedrivePolicy"],
    }),
  );
  const arn = actual.QueueArn;
  if (!arn) throw new Error(`Queue ${name} has no ARN`);
  const queue: LocalQueue = {
    url,
    arn,
    name,
    visibilityTimeoutSeconds: Number(actual.VisibilityTimeout ?? 30),
  };
  if (actual.RedrivePolicy) {
    const redrive = JSON.parse(actual.RedrivePolicy) as {
      deadLetterTargetArn?: string;
      maxReceiveCount?: unknown;
    };
    if (redrive.deadLetterTargetArn) queue.dlqArn = redrive.deadLetterTargetArn;
    if (redrive.maxReceiveCount !== undefined) queue.maxReceiveCount = Number(redrive.maxReceiveCount);
  }
  return queue;
}
