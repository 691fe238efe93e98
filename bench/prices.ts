/**
 * Public list prices the pipeline benchmark turns its request counts into, in one dated table.
 * Region us-east-1 (N. Virginia), on-demand, no free tier, no savings plans, first volume tier.
 * Update the date and the figures together; every figure names the page it comes from.
 */
export const PRICES = {
  asOf: "2026-11 (us-east-1 list prices, first tier, free tier not deducted)",
  lambda: {
    // https://aws.amazon.com/lambda/pricing/ — requests: $0.20 per 1M.
    perMillionRequests: 0.2,
    // Same page, Arm (the functions run on arm64, infra/constructs/house-function.ts), first 7.5 B GB-s/month.
    perGbSecondArm: 0.0000133334,
    // Same page, x86, for comparison.
    perGbSecondX86: 0.0000166667,
  },
  apiGateway: {
    // https://aws.amazon.com/api-gateway/pricing/ — HTTP APIs: $1.00 per million requests (first 300 M),
    // metered in 512 KB increments.
    httpApiPerMillionRequests: 1.0,
  },
  sqs: {
    // https://aws.amazon.com/sqs/pricing/ — standard queues: $0.40 per million requests (after the first
    // 1 M free); every 64 KB chunk of a payload is one request.
    perMillionRequests: 0.4,
  },
  dynamodb: {
    // https://aws.amazon.com/dynamodb/pricing/on-demand/ — on-demand (after the November 2024 price cut):
    // $0.625 per million write request units, $0.125 per million read request units.
    perMillionWriteUnits: 0.625,
    perMillionReadUnits: 0.125,
    // https://aws.amazon.com/dynamodb/pricing/provisioned/ — provisioned capacity: $0.00065 per WCU-hour,
    // $0.00013 per RCU-hour (a WCU is one write unit per second; an RCU two eventually consistent
    // or one strongly consistent read unit per second).
    perWcuHour: 0.00065,
    perRcuHour: 0.00013,
    // Standard table class storage: $0.25 per GB-month (the job rows; retention is the operator's choice).
    perGbMonth: 0.25,
  },
  eventBridge: {
    // https://aws.amazon.com/eventbridge/pricing/ — custom events: $1.00 per million (64 KB chunks).
    perMillionEvents: 1.0,
  },
  cloudWatchLogs: {
    // https://aws.amazon.com/cloudwatch/pricing/ — logs ingestion (standard): $0.50 per GB. EMF lines
    // (the business metrics) are log bytes too, ingested at this price.
    perGbIngested: 0.5,
  },
  cloudWatchMetrics: {
    // https://aws.amazon.com/cloudwatch/pricing/ — custom metrics: $0.30 per metric-month (first 10,000);
    // a fixed cost per distinct (name, dimensions) pair, not per job.
    perMetricMonth: 0.3,
  },
  s3: {
    // https://aws.amazon.com/s3/pricing/ — S3 Standard: PUT, COPY, POST, LIST $0.005 per 1,000;
    // GET, SELECT and others $0.0004 per 1,000; storage $0.023 per GB-month (first 50 TB).
    perThousandWrites: 0.005,
    perThousandReads: 0.0004,
    perGbMonth: 0.023,
  },
} as const;

/** Lambda's own log lines per invocation (START, END, REPORT), bytes; measured from typical REPORT lines. */
export const LAMBDA_PLATFORM_LOG_BYTES_PER_INVOCATION = 350;
