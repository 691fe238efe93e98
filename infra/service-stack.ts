import {
  CfnOutput,
  CrossStackReferences,
  Duration,
  ReferenceStrength,
  RemovalPolicy,
  type StackProps,
  Validations,
} from "aws-cdk-lib";
import { AccessLogFormat } from "aws-cdk-lib/aws-apigateway";
import {
  CorsHttpMethod,
  HttpApi,
  type HttpMethod,
  HttpRoute,
  HttpRouteKey,
  HttpStage,
  type IHttpRouteAuthorizer,
  LogGroupLogDestination,
} from "aws-cdk-lib/aws-apigatewayv2";
import { HttpLambdaAuthorizer, HttpLambdaResponseType } from "aws-cdk-lib/aws-apigatewayv2-authorizers";
import { HttpLambdaIntegration } from "aws-cdk-lib/aws-apigatewayv2-integrations";
import { SnsAction } from "aws-cdk-lib/aws-cloudwatch-actions";
import type { ITable } from "aws-cdk-lib/aws-dynamodb";
import { type IEventBus, Rule } from "aws-cdk-lib/aws-events";
import { LambdaFunction } from "aws-cdk-lib/aws-events-targets";
import { FunctionUrlAuthType, InvokeMode } from "aws-cdk-lib/aws-lambda";
import { SqsEventSource } from "aws-cdk-lib/aws-lambda-event-sources";
import { LogGroup } from "aws-cdk-lib/aws-logs";
import type { IBucket } from "aws-cdk-lib/aws-s3";
import type { ISecret } from "aws-cdk-lib/aws-secretsmanager";
import type { ITopic } from "aws-cdk-lib/aws-sns";
import type { IQueue } from "aws-cdk-lib/aws-sqs";
import type { Construct } from "constructs";
import { INDEXES } from "../shared/adapters/dynamo/table-design.ts";
import { PROVIDER_REGISTRY } from "../shared/providers/registry.ts";
import { type InfraConfig, isProduction, lambdaCatalog } from "./config.ts";
import { BusinessMetrics } from "./constructs/business-metrics.ts";
import {
  bindBucket,
  bindEventBus,
  bindQueue,
  bindSecret,
  bindTable,
  HouseFunction,
} from "./constructs/house-function.ts";
import { OperationsDashboard } from "./constructs/operations-dashboard.ts";
import { ReadableStack } from "./constructs/readable-stack.ts";
import {
  BUCKET_VARIABLES,
  type BucketAccess,
  type BucketName,
  FUNCTIONS,
  type FunctionSpec,
  QUEUE_NAMES,
  QUEUE_URL_VARIABLES,
  type QueueAccess,
  type QueueName,
  type RouteSpec,
} from "./functions.ts";

/** What the service stack takes from the stateful stack. */
export interface StatefulResources {
  table: ITable;
  queues: Record<QueueName, IQueue>;
  deadLetterQueues: Record<QueueName, IQueue>;
  alarmTopic: ITopic;
  inputsBucket: IBucket;
  outputsBucket: IBucket;
  eventBus: IEventBus;
  modelslabApiKey: ISecret;
  callbackSecret: ISecret;
}

export interface ServiceStackProps extends StackProps {
  config: InfraConfig;
  stateful: StatefulResources;
  functions?: readonly FunctionSpec[];
}

export const SERVICE_NAME = "controlnet-orchestrator";

/** One JSON line per request in the API's access log. */
export const ACCESS_LOG_FIELDS = {
  requestId: "$context.requestId",
  time: "$context.requestTime",
  ip: "$context.identity.sourceIp",
  method: "$context.httpMethod",
  routeKey: "$context.routeKey",
  path: "$context.path",
  status: "$context.status",
  responseLength: "$context.responseLength",
  latencyMs: "$context.responseLatency",
  integrationLatencyMs: "$context.integrationLatency",
  integrationError: "$context.integrationErrorMessage",
  authorizerError: "$context.authorizer.error",
  tenant: "$context.authorizer.tenantId",
} as const;

/** The authorizer's identity source and cache: a key's verdict is reused for 5 minutes. */
export const AUTHORIZER_IDENTITY_SOURCE = ["$request.header.Authorization"];
export const AUTHORIZER_CACHE_TTL = Duration.seconds(300);

/**
 * The stateless part: one Lambda per row of the function table, the HTTP API and its routes, the
 * queue subscriptions and the reconcile schedule. Replaceable at will; the data lives in the stateful
 * stack.
 */
export class ServiceStack extends ReadableStack {
  readonly httpApi: HttpApi;
  /** Origin of the provider's callbacks: the callback function's URL, or the HTTP API's (`callbackIngress`). */
  readonly callbackBaseUrl: string;
  readonly functions: Record<string, HouseFunction> = {};
  readonly dashboard: OperationsDashboard;
  /** The business metrics' alarms (failure rate, waiting, admission, breaker, dead letters). */
  readonly businessMetrics: BusinessMetrics;
  readonly accessLogGroup: LogGroup;

  constructor(scope: Construct, id: string, props: ServiceStackProps) {
    super(scope, id, props);
    // Strong references (exports + Fn::ImportValue): the stateful stack cannot drop what this one uses.
    CrossStackReferences.of(this).consume(ReferenceStrength.STRONG);
    const { config, stateful } = props;
    const specs = props.functions ?? FUNCTIONS;

    this.httpApi = new HttpApi(this, "HttpApi", {
      apiName: `${SERVICE_NAME}-${config.stage}`,
      description: "ControlNet job orchestrator API",
      // The $default stage is made below, with access logs.
      createDefaultStage: false,
      // A console hosted elsewhere (consoleOrigins) calls the API from the browser: API Gateway answers
      // the preflights and adds the CORS headers. The key travels in Authorization, never a cookie.
      ...(config.consoleOrigins.length > 0 && {
        corsPreflight: {
          allowOrigins: config.consoleOrigins,
          allowMethods: [CorsHttpMethod.GET, CorsHttpMethod.POST, CorsHttpMethod.PUT, CorsHttpMethod.DELETE],
          allowHeaders: ["authorization", "content-type", "idempotency-key", "prefer"],
          exposeHeaders: ["location", "idempotent-replayed", "preference-applied", "retry-after"],
          allowCredentials: false,
          maxAge: Duration.hours(1),
        },
      }),
    });
    const removalPolicy = isProduction(config) ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;
    this.accessLogGroup = new LogGroup(this, "ApiAccessLogs", {
      retention: config.logRetentionDays,
      removalPolicy,
    });
    new HttpStage(this.httpApi, "DefaultStage", {
      httpApi: this.httpApi,
      stageName: "$default",
      autoDeploy: true,
      accessLogSettings: {
        destination: new LogGroupLogDestination(this.accessLogGroup),
        // No query string: callback URLs carry their job's token in it.
        format: AccessLogFormat.custom(JSON.stringify(ACCESS_LOG_FIELDS)),
      },
    });

    const alarmAction = new SnsAction(stateful.alarmTopic);
    for (const spec of specs) {
      const fn = new HouseFunction(this, spec.id, {
        alarmAction,
        entry: spec.entry,
        memoryMb: spec.memoryMb,
        timeout: spec.timeout,
        logRetention: config.logRetentionDays,
        logRemovalPolicy: removalPolicy,
        environment: {
          LOG_LEVEL: config.logLevel,
          POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
          // The business metrics (EMF lines in the function's log): one namespace, the stage a dimension.
          METRICS_NAMESPACE: config.metricsNamespace,
          STAGE: config.stage,
          METRICS_TENANT_GAUGES: String(config.metricsTenantGauges),
        },
      });
      this.functions[spec.id] = fn;

      if (spec.table) {
        bindTable(
          fn,
          stateful.table,
          spec.table,
          Object.values(INDEXES).map((index) => index.name),
        );
      }
      for (const [queue, accesses] of Object.entries(spec.queues ?? {}) as Array<
        [QueueName, readonly QueueAccess[]]
      >) {
        bindQueue(fn, stateful.queues[queue], QUEUE_URL_VARIABLES[queue], accesses);
      }
      for (const [bucket, access] of Object.entries(spec.buckets ?? {}) as Array<
        [BucketName, BucketAccess]
      >) {
        const target = bucket === "inputs" ? stateful.inputsBucket : stateful.outputsBucket;
        bindBucket(fn, target, BUCKET_VARIABLES[bucket], access);
      }
      for (const queue of spec.deadLetters ?? []) {
        bindQueue(
          fn,
          stateful.deadLetterQueues[queue],
          QUEUE_URL_VARIABLES[queue].replace(/(_QUEUE)?_URL$/, "_DLQ_URL"),
          ["send"],
        );
      }
      if (spec.events) {
        bindEventBus(fn, stateful.eventBus);
        fn.function.addEnvironment("LIFECYCLE_EVENTS", config.lifecycleEvents);
      }
      if (spec.provider?.settings || spec.provider?.outputHosts) {
        fn.function.addEnvironment("PROVIDER_OUTPUT_HOSTS", config.providerOutputHosts.join(","));
      }
      if (spec.provider?.settings) {
        fn.function.addEnvironment("MODELSLAB_BASE_URL", config.modelslabBaseUrl);
        fn.function.addEnvironment("MODELSLAB_MAX_CONCURRENCY", String(config.modelslabMaxConcurrency));
        // The fleet's capacity: what it holds at full scale (each task runs one job, queued ones wait for it).
        fn.function.addEnvironment(
          "SELF_HOSTED_MAX_JOBS",
          String(config.gpuMaxTasks * config.gpuBacklogPerTask),
        );
      }
      if (spec.provider?.settings || spec.provider?.catalog) {
        fn.function.addEnvironment("SELF_HOSTED_MODELS", lambdaCatalog(config.selfHostedModels));
      }
      if (spec.provider?.apiKey) bindSecret(fn, stateful.modelslabApiKey, "MODELSLAB_API_KEY_SECRET_ARN");
      if (spec.provider?.callbackSecret) bindSecret(fn, stateful.callbackSecret, "CALLBACK_SECRET_ARN");

      if (spec.consumes) {
        fn.function.addEventSource(
          new SqsEventSource(stateful.queues[spec.consumes.queue], {
            batchSize: spec.consumes.batchSize,
            maxBatchingWindow: spec.consumes.maxBatchingWindow,
            reportBatchItemFailures: true,
            maxConcurrency: spec.consumes.maxConcurrency,
          }),
        );
      }
      if (spec.schedule) {
        new Rule(this, `${spec.id}Schedule`, {
          description: `Runs ${spec.entry}`,
          schedule: spec.schedule,
          targets: [new LambdaFunction(fn.function)],
        });
      }
    }

    // The provider's callbacks: a function URL costs nothing beyond the invocation (an HTTP API
    // request is $1 per million, one per job); the receiver checks path, method and token itself.
    const receivers = specs.filter((spec) => spec.callbackReceiver);
    if (receivers.length > 1) throw new Error("At most one function may receive the provider's callbacks");
    const receiverSpec = receivers[0];
    const callbackUrl =
      receiverSpec && config.callbackIngress === "function-url"
        ? this.fn(receiverSpec.id).function.addFunctionUrl({
            authType: FunctionUrlAuthType.NONE,
            invokeMode: InvokeMode.BUFFERED,
          })
        : undefined;
    this.callbackBaseUrl = callbackUrl?.url ?? this.httpApi.apiEndpoint;
    for (const spec of specs) {
      if (spec.provider?.settings)
        this.fn(spec.id).function.addEnvironment("CALLBACK_BASE_URL", this.callbackBaseUrl);
    }

    const authorizers = specs.filter((spec) => spec.httpAuthorizer);
    const authorizerSpec = authorizers[0];
    if (authorizers.length > 1) throw new Error("At most one function may be the HTTP authorizer");
    const authorizer =
      authorizerSpec &&
      new HttpLambdaAuthorizer("ApiKeyAuthorizer", this.fn(authorizerSpec.id).function, {
        responseTypes: [HttpLambdaResponseType.SIMPLE],
        identitySource: AUTHORIZER_IDENTITY_SOURCE,
        resultsCacheTtl: AUTHORIZER_CACHE_TTL,
      });

    for (const spec of specs) {
      if (!spec.routes?.length || (spec === receiverSpec && callbackUrl)) continue;
      const integration = new HttpLambdaIntegration(`${spec.id}Integration`, this.fn(spec.id).function);
      for (const route of spec.routes) {
        if (route.auth === "apiKey" && !authorizer)
          throw new Error(`${route.routeKey} needs the HTTP authorizer`);
        const httpRoute = new HttpRoute(this.httpApi, routeId(route.routeKey), {
          httpApi: this.httpApi,
          routeKey: parseRouteKey(route.routeKey),
          integration,
          authorizer: route.auth === "apiKey" ? (authorizer as IHttpRouteAuthorizer) : undefined,
        });
        if (route.auth === "none") {
          Validations.of(httpRoute).acknowledge({
            id: "AwsSolutions-APIG4",
            reason: `${route.routeKey}: ${route.unauthenticatedBecause}`,
          });
        }
      }
    }

    this.businessMetrics = new BusinessMetrics(this, "BusinessMetrics", {
      config,
      providers: Object.values(PROVIDER_REGISTRY).map((module) => ({
        id: module.id,
        breaker: module.breakerKey !== null,
      })),
      alarmAction,
    });
    this.dashboard = new OperationsDashboard(this, "Operations", {
      dashboardName: `${SERVICE_NAME}-${config.stage}`,
      httpApi: this.httpApi,
      queues: Object.fromEntries(
        QUEUE_NAMES.map((name) => [
          name,
          { queue: stateful.queues[name], dlq: stateful.deadLetterQueues[name] },
        ]),
      ),
      functions: this.functions,
      extraWidgets: this.businessMetrics.widgets(),
    });

    new CfnOutput(this, "ApiUrl", { value: this.httpApi.apiEndpoint, description: "The API's base URL" });
    new CfnOutput(this, "CallbackBaseUrl", {
      value: this.callbackBaseUrl,
      description: "CALLBACK_BASE_URL: where the provider's callbacks arrive",
    });
  }

  private fn(id: string): HouseFunction {
    const fn = this.functions[id];
    if (!fn) throw new Error(`No function ${id}`);
    return fn;
  }
}

function parseRouteKey(routeKey: RouteSpec["routeKey"]): HttpRouteKey {
  if (routeKey === "$default") return HttpRouteKey.DEFAULT;
  const match = /^([A-Z]+) (\/\S*)$/.exec(routeKey);
  if (!match?.[1] || !match[2])
    throw new Error(`Bad route key ${routeKey}: want "METHOD /path" or "$default"`);
  return HttpRouteKey.with(match[2], match[1] as HttpMethod);
}

/** `"POST /v1/jobs/{id}/cancel"` → `PostV1JobsIdCancelRoute`, `"$default"` → `DefaultRoute`. */
function routeId(routeKey: string): string {
  const words = routeKey.toLowerCase().match(/[a-z0-9]+/g) ?? [];
  return `${words.map((word) => word.charAt(0).toUpperCase() + word.slice(1)).join("")}Route`;
}
