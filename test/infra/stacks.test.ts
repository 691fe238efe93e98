import { Match, Template } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../../infra/build-app.ts";
import { loadInfraConfig } from "../../infra/config.ts";
import { FUNCTIONS, QUEUES, VISIBILITY_TIMEOUT_FACTOR } from "../../infra/functions.ts";
import {
  INDEXES,
  projectionOf,
  TABLE_KEYS,
  TTL_ATTRIBUTE,
} from "../../shared/adapters/dynamo/table-design.ts";
import { CALLBACK_PATH } from "../../shared/domain/callback-token.ts";
import { ROUTES, routeKey } from "../../shared/http/routes.ts";
import { followImport, only, refTarget, resources, TEST_CONTEXT } from "./support.ts";

let stateful: Template;
let service: Template;

beforeAll(() => {
  const { stacks } = buildApp({ skipBundling: true, context: TEST_CONTEXT });
  stateful = Template.fromStack(stacks.stateful);
  service = Template.fromStack(stacks.service);
});

describe("StatefulStack: table", () => {
  it("has the table design's keys, indexes, TTL, PITR and on-demand billing", () => {
    stateful.hasResourceProperties("AWS::DynamoDB::Table", {
      KeySchema: [
        { AttributeName: TABLE_KEYS.partitionKey, KeyType: "HASH" },
        { AttributeName: TABLE_KEYS.sortKey, KeyType: "RANGE" },
      ],
      AttributeDefinitions: Match.arrayWith([
        { AttributeName: TABLE_KEYS.partitionKey, AttributeType: "S" },
        { AttributeName: TABLE_KEYS.sortKey, AttributeType: "S" },
        { AttributeName: INDEXES.byTenantStatus.partitionKey, AttributeType: "S" },
        { AttributeName: INDEXES.byTenantStatus.sortKey, AttributeType: "S" },
        { AttributeName: INDEXES.due.partitionKey, AttributeType: "S" },
        { AttributeName: INDEXES.due.sortKey, AttributeType: "N" },
      ]),
      GlobalSecondaryIndexes: Match.arrayWith(
        Object.values(INDEXES).map((index) =>
          Match.objectLike({
            IndexName: index.name,
            KeySchema: [
              { AttributeName: index.partitionKey, KeyType: "HASH" },
              { AttributeName: index.sortKey, KeyType: "RANGE" },
            ],
            Projection: projectionOf(index.projection),
          }),
        ),
      ),
      BillingMode: "PAY_PER_REQUEST",
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true },
    });
  });

  it("is destroyed with a dev stage and not deletion-protected", () => {
    stateful.hasResource("AWS::DynamoDB::Table", {
      DeletionPolicy: "Delete",
      Properties: Match.objectLike({ DeletionProtectionEnabled: false }),
    });
  });

  it("has readable logical ids", () => {
    expect(Object.keys(resources(stateful, "AWS::DynamoDB::Table"))).toEqual(["JobsTable"]);
    expect(Object.keys(resources(stateful, "AWS::SQS::Queue")).sort()).toEqual(
      [
        "JobsDlq",
        "JobsQueue",
        "AdmissionsDlq",
        "AdmissionsQueue",
        "ResultsDlq",
        "ResultsQueue",
        "NotificationsDlq",
        "NotificationsQueue",
        "FallbackDlq",
        "FallbackQueue",
      ].sort(),
    );
    expect(Object.keys(resources(stateful, "AWS::S3::Bucket")).sort()).toEqual(
      ["AccessLogsBucket", "InputsBucket", "OutputsBucket"].sort(),
    );
  });
});

describe("StatefulStack: queues", () => {
  it("gives every work queue a redrive policy to its own dead-letter queue after 5 receives", () => {
    const queues = resources(stateful, "AWS::SQS::Queue");
    const targets = new Set<string>();
    for (const [id, queue] of Object.entries(queues)) {
      const redrive = queue.Properties?.RedrivePolicy as {
        deadLetterTargetArn: unknown;
        maxReceiveCount: number;
      };
      if (id.endsWith("Dlq")) {
        expect(redrive, `${id} is a DLQ`).toBeUndefined();
        continue;
      }
      expect(redrive, `${id} has a redrive policy`).toBeDefined();
      expect(redrive.maxReceiveCount).toBe(5);
      const dlq = refTarget(redrive.deadLetterTargetArn);
      expect(queues[dlq]?.Type).toBe("AWS::SQS::Queue");
      expect(targets.has(dlq), `${dlq} is shared`).toBe(false);
      targets.add(dlq);
    }
    expect([...targets].sort()).toEqual(
      Object.values(QUEUES)
        .map((q) => `${q.id}Dlq`)
        .sort(),
    );
  });

  it("keeps dead letters 14 days", () => {
    const queues = resources(stateful, "AWS::SQS::Queue");
    for (const id of Object.values(QUEUES).map((q) => `${q.id}Dlq`)) {
      expect(queues[id]?.Properties?.MessageRetentionPeriod).toBe(14 * 86_400);
    }
  });

  it("encrypts every queue with SQS-managed keys and denies plain HTTP", () => {
    const queues = resources(stateful, "AWS::SQS::Queue");
    for (const [id, queue] of Object.entries(queues)) {
      expect(queue.Properties?.SqsManagedSseEnabled, id).toBe(true);
      stateful.hasResourceProperties("AWS::SQS::QueuePolicy", {
        Queues: [{ Ref: id }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({ Effect: "Deny", Condition: { Bool: { "aws:SecureTransport": "false" } } }),
          ]),
        },
      });
    }
  });

  it("sets each consumed queue's visibility timeout to at least 6x its consumer's timeout", () => {
    const queues = resources(stateful, "AWS::SQS::Queue");
    const functions = resources(service, "AWS::Lambda::Function");
    const mappings = Object.values(resources(service, "AWS::Lambda::EventSourceMapping"));
    expect(mappings.length).toBeGreaterThan(0);
    for (const mapping of mappings) {
      const queueId = refTarget(followImport(mapping.Properties?.EventSourceArn, stateful));
      const fn = functions[refTarget(mapping.Properties?.FunctionName)];
      const timeout = fn?.Properties?.Timeout as number;
      const visibility = queues[queueId]?.Properties?.VisibilityTimeout as number;
      expect(visibility, queueId).toBeGreaterThanOrEqual(VISIBILITY_TIMEOUT_FACTOR * timeout);
    }
  });
});

describe("ServiceStack: functions", () => {
  const functions = () => resources(service, "AWS::Lambda::Function");

  it("has one function per row of the function table, on Node.js 22 arm64 with tracing", () => {
    for (const spec of FUNCTIONS) {
      const fn = functions()[`${spec.id}Function`];
      expect(fn, spec.id).toBeDefined();
      expect(fn?.Metadata?.["local:entry"]).toBe(spec.entry);
      expect(fn?.Properties).toMatchObject({
        Runtime: "nodejs22.x",
        Architectures: ["arm64"],
        Handler: "index.handler",
        MemorySize: spec.memoryMb,
        Timeout: spec.timeout.toSeconds(),
        TracingConfig: { Mode: "Active" },
      });
    }
  });

  it("logs every function to its own log group with a retention", () => {
    const logGroups = resources(service, "AWS::Logs::LogGroup");
    const seen = new Set<string>();
    for (const [id, fn] of Object.entries(functions())) {
      const logGroup = refTarget((fn.Properties?.LoggingConfig as { LogGroup: unknown })?.LogGroup);
      expect(logGroups[logGroup]?.Properties?.RetentionInDays, id).toBe(30);
      expect(seen.has(logGroup)).toBe(false);
      seen.add(logGroup);
    }
  });

  it("passes the environment each function needs", () => {
    const env = (id: string): Record<string, unknown> => {
      const environment = functions()[`${id}Function`]?.Properties?.Environment as
        | { Variables: Record<string, unknown> }
        | undefined;
      return environment?.Variables ?? {};
    };
    const common = ["LOG_LEVEL", "POWERTOOLS_SERVICE_NAME", "TABLE_NAME"];
    const provider = [
      "MODELSLAB_BASE_URL",
      "MODELSLAB_MAX_CONCURRENCY",
      "SELF_HOSTED_MAX_JOBS",
      "FALLBACK_QUEUE_URL",
      "CALLBACK_BASE_URL",
      "MODELSLAB_API_KEY_SECRET_ARN",
      "CALLBACK_SECRET_ARN",
    ];
    expect(Object.keys(env("Api"))).toEqual(expect.arrayContaining([...common, "JOBS_QUEUE_URL"]));
    expect(Object.keys(env("Authorizer"))).toEqual(expect.arrayContaining(common));
    expect(Object.keys(env("Authorizer"))).not.toContain("JOBS_QUEUE_URL");
    expect(Object.keys(env("Reconcile"))).toEqual(
      expect.arrayContaining([...common, "JOBS_QUEUE_URL", "RESULTS_QUEUE_URL", ...provider]),
    );
    // Every function that releases a provider slot sends the next job's admission.
    for (const id of ["Dispatch", "Admit"]) {
      expect(Object.keys(env(id))).toEqual(
        expect.arrayContaining([
          ...common,
          "JOBS_QUEUE_URL",
          "ADMISSIONS_QUEUE_URL",
          "RESULTS_QUEUE_URL",
          ...provider,
        ]),
      );
    }
    expect(Object.keys(env("Callback"))).toEqual(
      expect.arrayContaining(["LOG_LEVEL", "RESULTS_QUEUE_URL", "CALLBACK_SECRET_ARN"]),
    );
    expect(Object.keys(env("Callback"))).not.toContain("MODELSLAB_API_KEY_SECRET_ARN");
    // Finalize starts attempts on the fallback provider: its queues, its settings, the callback secret.
    expect(Object.keys(env("Finalize"))).toEqual(
      expect.arrayContaining([
        ...common,
        "JOBS_QUEUE_URL",
        "ADMISSIONS_QUEUE_URL",
        "RESULTS_QUEUE_URL",
        "FALLBACK_QUEUE_URL",
        "MODELSLAB_BASE_URL",
        "SELF_HOSTED_MAX_JOBS",
        "CALLBACK_BASE_URL",
        "CALLBACK_SECRET_ARN",
      ]),
    );
    expect(Object.keys(env("Finalize"))).not.toContain("MODELSLAB_API_KEY_SECRET_ARN");
    // The fleet's capacity: the jobs it holds at full scale.
    const context = loadInfraConfig((key) => (TEST_CONTEXT as Record<string, unknown>)[key]);
    expect(env("Dispatch").SELF_HOSTED_MAX_JOBS).toBe(
      String(context.gpuMaxTasks * context.gpuBacklogPerTask),
    );
    expect(Object.keys(env("Callback"))).not.toContain("TABLE_NAME"); // it never reads the table
    expect(env("Dispatch").CALLBACK_BASE_URL).toEqual({
      "Fn::GetAtt": ["CallbackFunctionFunctionUrl", "FunctionUrl"],
    });
  });

  it("lets dispatch send to the queues and read both secrets", () => {
    const [, policy] = only(
      service.findResources("AWS::IAM::Policy", {
        Properties: { Roles: [{ Ref: "DispatchRole" }] },
      }),
      "dispatch policy",
    );
    const text = JSON.stringify(policy);
    expect(text).toContain("sqs:SendMessage");
    expect(text).toContain("sqs:DeleteMessage"); // the event source mapping's consume grant
    expect(text).toContain("secretsmanager:GetSecretValue");
    expect(text).toContain("ModelslabApiKeySecret");
    expect(text).toContain("CallbackSecret");
  });

  it("gives the authorizer read-only table access", () => {
    const [, policy] = only(
      service.findResources("AWS::IAM::Policy", {
        Properties: { Roles: [{ Ref: "AuthorizerRole" }] },
      }),
      "authorizer policy",
    );
    const actions = JSON.stringify(policy);
    expect(actions).toContain("dynamodb:GetItem");
    expect(actions).not.toContain("dynamodb:PutItem");
  });
});

describe("ServiceStack: queue subscriptions and schedule", () => {
  it("subscribes dispatch to the jobs queue, admit to the admissions queue and finalize to the results queue with partial batch responses", () => {
    const expected = [
      // No batching window on the admission path: a freed slot's next job must not wait for a batch.
      { fn: "DispatchFunction", queue: "JobsQueue", concurrency: { MaximumConcurrency: 2 }, window: 0 },
      { fn: "AdmitFunction", queue: "AdmissionsQueue", concurrency: { MaximumConcurrency: 2 }, window: 0 },
      { fn: "FinalizeFunction", queue: "ResultsQueue", concurrency: Match.absent(), window: 0 },
    ];
    for (const { fn, queue, concurrency, window } of expected) {
      const [, mapping] = only(
        service.findResources("AWS::Lambda::EventSourceMapping", {
          Properties: { FunctionName: { Ref: fn } },
        }),
        `${fn} mapping`,
      );
      expect(refTarget(followImport(mapping.Properties.EventSourceArn, stateful))).toBe(queue);
      service.hasResourceProperties("AWS::Lambda::EventSourceMapping", {
        FunctionName: { Ref: fn },
        BatchSize: 10,
        MaximumBatchingWindowInSeconds: window,
        FunctionResponseTypes: ["ReportBatchItemFailures"],
        ScalingConfig: concurrency,
      });
    }
  });

  it("runs reconcile every minute", () => {
    service.hasResourceProperties("AWS::Events::Rule", {
      ScheduleExpression: "rate(1 minute)",
      State: "ENABLED",
      Targets: [Match.objectLike({ Arn: { "Fn::GetAtt": ["ReconcileFunction", "Arn"] } })],
    });
  });
});

/** Each synthesized HTTP API route: its key, the function it invokes, and whether the authorizer guards it. */
function synthesizedRoutes(
  template: Template,
): { routeKey: string; functionId: string; authorized: boolean }[] {
  return Object.values(resources(template, "AWS::ApiGatewayV2::Route")).map((route) => {
    const target = route.Properties?.Target as { "Fn::Join": [string, [string, { Ref: string }]] };
    const integrationId = target["Fn::Join"][1][1].Ref;
    const integration = resources(template, "AWS::ApiGatewayV2::Integration")[integrationId];
    const authorized = route.Properties?.AuthorizationType === "CUSTOM";
    if (authorized) {
      const authorizer = resources(template, "AWS::ApiGatewayV2::Authorizer")[
        refTarget(route.Properties?.AuthorizerId)
      ];
      expect(authorizer?.Properties).toMatchObject({
        AuthorizerType: "REQUEST",
        EnableSimpleResponses: true,
        IdentitySource: ["$request.header.Authorization"],
        AuthorizerResultTtlInSeconds: 300,
      });
      expect(JSON.stringify(authorizer?.Properties?.AuthorizerUri)).toContain('"AuthorizerFunction","Arn"');
    } else {
      expect(route.Properties?.AuthorizerId).toBeUndefined();
      expect(route.Properties?.AuthorizationType ?? "NONE").toBe("NONE");
    }
    return {
      routeKey: route.Properties?.RouteKey as string,
      functionId: refTarget(integration?.Properties?.IntegrationUri),
      authorized,
    };
  });
}

const byKey = (a: { routeKey: string }, b: { routeKey: string }) => a.routeKey.localeCompare(b.routeKey);

/** The routes the table declares, as API Gateway should have them, plus the catch-all. */
const declaredRoutes = (callbackOnTheApi: boolean) =>
  [
    ...ROUTES.filter((route) => callbackOnTheApi || route.servedBy !== "Callback").map((route) => ({
      routeKey: routeKey(route),
      functionId: `${route.servedBy}Function`,
      authorized: route.auth === "apiKey",
    })),
    { routeKey: "$default", functionId: "ApiFunction", authorized: false },
  ].sort(byKey);

describe("ServiceStack: HTTP API", () => {
  it("has exactly the route table's routes, each to its function, the API-key ones behind the authorizer", () => {
    expect(synthesizedRoutes(service).sort(byKey)).toEqual(declaredRoutes(false));
  });

  it("serves the provider's callback route too with callbackIngress=http-api, and nothing else more", () => {
    const { stacks } = buildApp({
      skipBundling: true,
      context: { ...TEST_CONTEXT, callbackIngress: "http-api" },
    });
    expect(synthesizedRoutes(Template.fromStack(stacks.service)).sort(byKey)).toEqual(declaredRoutes(true));
  });

  it("leaves the OpenAPI document and the default route without authorizer", () => {
    const open = synthesizedRoutes(service).filter((route) => !route.authorized);
    expect(open.map((route) => route.routeKey).sort()).toEqual(["$default", "GET /v1/openapi.json"]);
  });

  it("lets API Gateway invoke the routed functions", () => {
    for (const fn of ["ApiFunction", "AuthorizerFunction"]) {
      service.hasResourceProperties("AWS::Lambda::Permission", {
        Action: "lambda:InvokeFunction",
        Principal: "apigateway.amazonaws.com",
        FunctionName: { "Fn::GetAtt": [fn, "Arn"] },
      });
    }
  });
});

describe("ServiceStack: callback ingress", () => {
  const callbackRoutes = (template: Template) =>
    template.findResources("AWS::ApiGatewayV2::Route", {
      Properties: { RouteKey: `POST ${CALLBACK_PATH}` },
    });

  it("receives callbacks on the callback function's own URL by default, not through API Gateway", () => {
    const [, url] = only(resources(service, "AWS::Lambda::Url"), "function URL");
    expect(url.Properties).toMatchObject({
      AuthType: "NONE", // Providers cannot sign; the per-attempt HMAC token in the URL is checked first
      InvokeMode: "BUFFERED",
      TargetFunctionArn: { "Fn::GetAtt": ["CallbackFunction", "Arn"] },
    });
    expect(callbackRoutes(service)).toEqual({});
    // Anyone may call the URL (as ModelsLab does); only that function, only through its URL.
    service.hasResourceProperties("AWS::Lambda::Permission", {
      Action: "lambda:InvokeFunctionUrl",
      Principal: "*",
      FunctionUrlAuthType: "NONE",
      FunctionName: { "Fn::GetAtt": ["CallbackFunction", "Arn"] },
    });
    // Lambda also wants lambda:InvokeFunction for a public URL's callers: granted only through the URL.
    service.hasResourceProperties("AWS::Lambda::Permission", {
      Action: "lambda:InvokeFunction",
      Principal: "*",
      InvokedViaFunctionUrl: true,
      FunctionName: { "Fn::GetAtt": ["CallbackFunction", "Arn"] },
    });
    const anyoneMayInvoke = Object.values(resources(service, "AWS::Lambda::Permission")).filter(
      (permission) => permission.Properties?.Principal === "*",
    );
    expect(anyoneMayInvoke.map((p) => refTarget(p.Properties?.FunctionName))).toEqual([
      "CallbackFunction",
      "CallbackFunction",
    ]);
    const outputs = service.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(outputs.CallbackBaseUrl?.Value).toEqual({
      "Fn::GetAtt": ["CallbackFunctionFunctionUrl", "FunctionUrl"],
    });
  });

  it("routes callbacks through the HTTP API, without authorizer, with callbackIngress=http-api", () => {
    const { stacks } = buildApp({
      skipBundling: true,
      context: { ...TEST_CONTEXT, callbackIngress: "http-api" },
    });
    const template = Template.fromStack(stacks.service);
    expect(resources(template, "AWS::Lambda::Url")).toEqual({});
    const [, route] = only(callbackRoutes(template), "callback route");
    expect(route.Properties?.AuthorizationType ?? "NONE").toBe("NONE");
    const dispatch = resources(template, "AWS::Lambda::Function").DispatchFunction;
    const environment = dispatch?.Properties?.Environment as
      | { Variables?: Record<string, unknown> }
      | undefined;
    const variables = environment?.Variables ?? {};
    expect(variables.CALLBACK_BASE_URL).toEqual({ "Fn::GetAtt": ["HttpApi", "ApiEndpoint"] });
    template.hasResourceProperties("AWS::Lambda::Permission", {
      Action: "lambda:InvokeFunction",
      Principal: "apigateway.amazonaws.com",
      FunctionName: { "Fn::GetAtt": ["CallbackFunction", "Arn"] },
    });
  });
});

describe("StatefulStack: buckets", () => {
  const buckets = () => resources(stateful, "AWS::S3::Bucket");

  it("encrypts every bucket, blocks public access, disables ACLs and denies plain HTTP", () => {
    for (const [id, bucket] of Object.entries(buckets())) {
      expect(bucket.Properties, id).toMatchObject({
        BucketEncryption: {
          ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: "AES256" } }],
        },
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        },
        OwnershipControls: { Rules: [{ ObjectOwnership: "BucketOwnerEnforced" }] },
      });
      stateful.hasResourceProperties("AWS::S3::BucketPolicy", {
        Bucket: { Ref: id },
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({ Effect: "Deny", Condition: { Bool: { "aws:SecureTransport": "false" } } }),
          ]),
        },
      });
    }
  });

  it("logs inputs and outputs accesses to the access-log bucket", () => {
    for (const [id, prefix] of [
      ["InputsBucket", "inputs/"],
      ["OutputsBucket", "outputs/"],
    ] as const) {
      expect(buckets()[id]?.Properties?.LoggingConfiguration, id).toEqual({
        DestinationBucketName: { Ref: "AccessLogsBucket" },
        LogFilePrefix: prefix,
      });
    }
    stateful.hasResourceProperties("AWS::S3::BucketPolicy", {
      Bucket: { Ref: "AccessLogsBucket" },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: "Allow", Principal: { Service: "logging.s3.amazonaws.com" } }),
        ]),
      },
    });
  });

  it("expires inputs, ages and expires outputs, and aborts stale multipart uploads everywhere", () => {
    const rules = (id: string) =>
      (
        (buckets()[id]?.Properties?.LifecycleConfiguration ?? { Rules: [] }) as {
          Rules: Array<Record<string, unknown>>;
        }
      ).Rules;
    expect(rules("InputsBucket")).toContainEqual(
      expect.objectContaining({ ExpirationInDays: 7, Status: "Enabled" }),
    );
    expect(rules("OutputsBucket")).toContainEqual(
      expect.objectContaining({
        ExpirationInDays: 90,
        Transitions: [{ StorageClass: "STANDARD_IA", TransitionInDays: 30 }],
      }),
    );
    expect(rules("AccessLogsBucket")).toContainEqual(expect.objectContaining({ ExpirationInDays: 90 }));
    for (const id of Object.keys(buckets())) {
      expect(rules(id), id).toContainEqual(
        expect.objectContaining({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }),
      );
    }
  });

  it("keeps buckets when a stack is deleted", () => {
    for (const [id, bucket] of Object.entries(buckets())) expect(bucket.DeletionPolicy, id).toBe("Retain");
  });

  it("names the event bus after the stage", () => {
    stateful.hasResourceProperties("AWS::Events::EventBus", { Name: "controlnet-dev" });
  });
});

describe("ServiceStack: least privilege", () => {
  type Statement = { Action: string | string[]; Resource: unknown };
  const policyOf = (fn: string): Statement[] => {
    const [, policy] = only(
      service.findResources("AWS::IAM::Policy", { Properties: { Roles: [{ Ref: `${fn}Role` }] } }),
      `${fn} policy`,
    );
    return (policy.Properties.PolicyDocument as { Statement: Statement[] }).Statement;
  };
  const managedPoliciesOf = (fn: string): string[] => {
    const role = resources(service, "AWS::IAM::Role")[`${fn}Role`];
    return ((role?.Properties?.ManagedPolicyArns ?? []) as unknown[]).map((arn) =>
      refTarget(followImport(arn, stateful)),
    );
  };

  it("uses no AWS managed policy and lets each function write only its own log group", () => {
    for (const spec of FUNCTIONS) {
      const role = resources(service, "AWS::IAM::Role")[`${spec.id}Role`];
      expect(JSON.stringify(role?.Properties?.ManagedPolicyArns ?? []), spec.id).not.toContain("aws:policy");
      const inline = (role?.Properties?.Policies ?? []) as Array<{ PolicyName: string }>;
      expect(
        inline.map((policy) => policy.PolicyName),
        spec.id,
      ).toEqual(["logs"]);
      const logs = JSON.stringify(role?.Properties?.Policies);
      expect(logs).toContain(`"${spec.id}LogGroup","Arn"`);
    }
  });

  it("grants table actions on the table and its named indexes, never index/*", () => {
    for (const spec of FUNCTIONS) {
      const text = JSON.stringify(policyOf(spec.id));
      if (!spec.table) {
        expect(text, spec.id).not.toContain("dynamodb:");
        continue;
      }
      expect(text, spec.id).not.toContain("index/*");
      expect(text, spec.id).not.toContain("dynamodb:Scan");
      for (const index of Object.values(INDEXES)) expect(text, spec.id).toContain(`/index/${index.name}`);
    }
  });

  it("binds buckets through per-access policies: api reads and writes inputs, reads outputs; finalize writes outputs", () => {
    expect(managedPoliciesOf("Api").sort()).toEqual([
      "InputsBucketReadWritePolicy",
      "OutputsBucketReadPolicy",
    ]);
    // inputs: presigned GETs in the worker message of an `auto` job sent to the fallback.
    expect(managedPoliciesOf("Finalize").sort()).toEqual([
      "InputsBucketReadPolicy",
      "OutputsBucketReadWritePolicy",
    ]);
    expect(managedPoliciesOf("Authorizer")).toEqual([]);
    expect(managedPoliciesOf("Callback")).toEqual([]);
    const policies = resources(stateful, "AWS::IAM::ManagedPolicy");
    const actionsOf = (id: string) =>
      (
        (policies[id]?.Properties?.PolicyDocument ?? { Statement: [] }) as { Statement: Statement[] }
      ).Statement.flatMap((s) => [s.Action].flat());
    expect(actionsOf("OutputsBucketReadPolicy")).toEqual(["s3:GetObject"]);
    const readWrite = [
      "s3:AbortMultipartUpload",
      "s3:DeleteObject",
      "s3:GetObject",
      "s3:ListBucket",
      "s3:PutObject",
    ].sort();
    expect(actionsOf("InputsBucketReadWritePolicy").sort()).toEqual(readWrite);
    // Finalize discards the outputs of a job that did not succeed.
    expect(actionsOf("OutputsBucketReadWritePolicy").sort()).toEqual(readWrite);
    // Deleting objects is for the read-write users only, and never more than one object at a time.
    for (const id of Object.keys(policies)) {
      const actions = actionsOf(id).filter((action) => action.startsWith("s3:Delete"));
      expect(actions, id).toEqual(id.endsWith("ReadWritePolicy") ? ["s3:DeleteObject"] : []);
    }
  });

  it("lets api, dispatch and finalize put events on the app's bus only, and sets EVENT_BUS_NAME", () => {
    for (const id of ["Api", "Dispatch", "Finalize"]) {
      const putEvents = policyOf(id).find((s) => s.Action === "events:PutEvents");
      expect(refTarget(followImport(putEvents?.Resource, stateful)), id).toBe("EventBus");
      const fn = resources(service, "AWS::Lambda::Function")[`${id}Function`];
      const variables = (
        (fn?.Properties?.Environment ?? { Variables: {} }) as { Variables: Record<string, unknown> }
      ).Variables;
      expect(refTarget(followImport(variables.EVENT_BUS_NAME, stateful)), id).toBe("EventBus");
      // Each event is billed: only terminal states unless the deployment asks for every transition.
      expect(variables.LIFECYCLE_EVENTS, id).toBe("terminal");
    }
    expect(JSON.stringify(policyOf("Authorizer"))).not.toContain("events:PutEvents");
  });

  it("logs API access without query strings (callback tokens live there)", () => {
    const [, stage] = only(resources(service, "AWS::ApiGatewayV2::Stage"), "stage");
    expect(stage.Properties?.StageName).toBe("$default");
    const settings = stage.Properties?.AccessLogSettings as { DestinationArn: unknown; Format: string };
    expect(refTarget(settings.DestinationArn)).toBe("ApiAccessLogs");
    expect(settings.Format).toContain("$context.requestId");
    expect(settings.Format).not.toMatch(/querystring|\$context\.path.*\?/i);
  });
});

describe("StatefulStack: provisioned table billing", () => {
  let template: Template;
  beforeAll(() => {
    const { stacks } = buildApp({
      skipBundling: true,
      context: {
        ...TEST_CONTEXT,
        tableBilling: "provisioned",
        tableMinWriteCapacity: "10",
        tableMaxWriteCapacity: "2000",
      },
    });
    template = Template.fromStack(stacks.stateful);
  });

  it("is on-demand by default, with nothing to scale", () => {
    stateful.hasResourceProperties("AWS::DynamoDB::Table", { BillingMode: "PAY_PER_REQUEST" });
    expect(resources(stateful, "AWS::ApplicationAutoScaling::ScalableTarget")).toEqual({});
  });

  it("provisions the table and every index at the minimum", () => {
    const [, table] = only(resources(template, "AWS::DynamoDB::Table"), "table");
    expect(table.Properties?.BillingMode ?? "PROVISIONED").toBe("PROVISIONED");
    expect(table.Properties?.ProvisionedThroughput).toEqual({ ReadCapacityUnits: 5, WriteCapacityUnits: 10 });
    const indexes = table.Properties?.GlobalSecondaryIndexes as Array<Record<string, unknown>>;
    expect(indexes.map((index) => index.IndexName).sort()).toEqual(
      Object.values(INDEXES)
        .map((index) => index.name)
        .sort(),
    );
    for (const index of indexes) {
      expect(index.ProvisionedThroughput, String(index.IndexName)).toEqual({
        ReadCapacityUnits: 5,
        WriteCapacityUnits: 10,
      });
    }
  });

  it("scales reads and writes of the table and of every index at 70 % utilization", () => {
    const targets = Object.values(resources(template, "AWS::ApplicationAutoScaling::ScalableTarget"));
    const dimensions = targets.map((target) => String(target.Properties?.ScalableDimension)).sort();
    expect(dimensions).toEqual(
      [
        "dynamodb:table:ReadCapacityUnits",
        "dynamodb:table:WriteCapacityUnits",
        ...Object.values(INDEXES).flatMap(() => [
          "dynamodb:index:ReadCapacityUnits",
          "dynamodb:index:WriteCapacityUnits",
        ]),
      ].sort(),
    );
    for (const target of targets) {
      const writes = String(target.Properties?.ScalableDimension).endsWith("WriteCapacityUnits");
      expect(target.Properties).toMatchObject(
        writes ? { MinCapacity: 10, MaxCapacity: 2000 } : { MinCapacity: 5, MaxCapacity: 500 },
      );
    }
    const policies = Object.values(resources(template, "AWS::ApplicationAutoScaling::ScalingPolicy"));
    expect(policies).toHaveLength(targets.length);
    for (const policy of policies) {
      expect(policy.Properties).toMatchObject({
        PolicyType: "TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration: { TargetValue: 70 },
      });
    }
  });

  it("alarms when requests are throttled anyway", () => {
    const alarms = Object.values(resources(template, "AWS::CloudWatch::Alarm")).filter((alarm) =>
      JSON.stringify(alarm.Properties?.Metrics ?? []).includes("ThrottledRequests"),
    );
    expect(alarms).toHaveLength(1);
    expect(alarms[0]?.Properties?.AlarmActions).toEqual([{ Ref: expect.stringMatching(/^AlarmTopic/) }]);
  });

  it("refuses a minimum above the maximum", () => {
    expect(() =>
      buildApp({
        skipBundling: true,
        context: { ...TEST_CONTEXT, tableBilling: "provisioned", tableMinReadCapacity: "900" },
      }),
    ).toThrow(/tableMinReadCapacity: must not exceed tableMaxReadCapacity/);
  });
});
