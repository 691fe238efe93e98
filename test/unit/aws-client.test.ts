import { describe, expect, it } from "vitest";
import { serviceLocation } from "../../shared/adapters/aws-client.ts";
import { createSqsClient } from "../../shared/adapters/sqs/queue.ts";

describe("serviceLocation (a client's region and endpoint from a function's environment)", () => {
  it("takes the service's own endpoint first, then the general one, as the SDK's default chain does", () => {
    const env = {
      AWS_REGION: "eu-west-1",
      AWS_ENDPOINT_URL: "http://127.0.0.1:4000",
      AWS_ENDPOINT_URL_SQS: "http://127.0.0.1:4001",
    };
    expect(serviceLocation(env, "SQS")).toEqual({ region: "eu-west-1", endpoint: "http://127.0.0.1:4001" });
    expect(serviceLocation(env, "DYNAMODB")).toEqual({
      region: "eu-west-1",
      endpoint: "http://127.0.0.1:4000",
    });
  });

  it("leaves out what the environment does not set (the default chain decides) and honours AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", () => {
    expect(serviceLocation({}, "S3")).toEqual({});
    expect(serviceLocation({ AWS_REGION: "", AWS_ENDPOINT_URL_S3: "" }, "S3")).toEqual({});
    expect(
      serviceLocation(
        { AWS_ENDPOINT_URL_S3: "http://127.0.0.1:4002", AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: "TRUE" },
        "S3",
      ),
    ).toEqual({});
  });

  it("is what a house client factory is configured with, whatever process.env says", async () => {
    const sqs = createSqsClient(
      {},
      { AWS_REGION: "ap-southeast-2", AWS_ENDPOINT_URL_SQS: "http://127.0.0.1:4003" },
    );
    try {
      expect(await sqs.config.region()).toBe("ap-southeast-2");
      const endpoint = await sqs.config.endpoint?.();
      expect(endpoint?.hostname).toBe("127.0.0.1");
      expect(endpoint?.port).toBe(4003);
    } finally {
      sqs.destroy();
    }
  });
});
