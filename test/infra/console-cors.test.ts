import { Template } from "aws-cdk-lib/assertions";
import { AwsSolutionsChecks } from "cdk-nag";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../infra/build-app.ts";
import { InfraConfigError, loadInfraConfig } from "../../infra/config.ts";
import { only, resources, TEST_CONTEXT } from "./support.ts";

const corsOf = (context: Record<string, unknown>) => {
  const { stacks } = buildApp({ skipBundling: true, context: { ...TEST_CONTEXT, ...context } });
  const [, api] = only(resources(Template.fromStack(stacks.service), "AWS::ApiGatewayV2::Api"), "HTTP API");
  return api.Properties?.CorsConfiguration;
};

const problems = (consoleOrigins: unknown): string[] => {
  try {
    const context: Record<string, unknown> = { ...TEST_CONTEXT, consoleOrigins };
    loadInfraConfig((key) => context[key], {});
    return [];
  } catch (error) {
    if (error instanceof InfraConfigError) return error.problems;
    throw error;
  }
};

describe("ServiceStack: CORS for a console hosted elsewhere (consoleOrigins)", () => {
  it("has no CORS by default: browsers call the API only from its own origin", () => {
    expect(corsOf({})).toBeUndefined();
  });

  it("lets exactly the configured origins call the API, with the key in a header and no credentials", () => {
    expect(corsOf({ consoleOrigins: "https://console.example.com, https://ops.example.com:8443" })).toEqual({
      AllowOrigins: ["https://console.example.com", "https://ops.example.com:8443"],
      AllowMethods: ["GET", "POST", "PUT", "DELETE"],
      AllowHeaders: ["authorization", "content-type", "idempotency-key", "prefer"],
      ExposeHeaders: ["location", "idempotent-replayed", "preference-applied", "retry-after"],
      AllowCredentials: false,
      MaxAge: 3600,
    });
  });

  it("refuses what is not an origin: a path, a wildcard, plain http to a public host", () => {
    expect(problems(["https://console.example.com"])).toEqual([]);
    expect(problems("http://localhost:8080")).toEqual([]);
    for (const bad of [
      "https://console.example.com/",
      "*",
      "https://*.example.com",
      "http://console.example.com",
    ]) {
      expect(problems(bad), bad).toEqual([expect.stringMatching(/^consoleOrigins\.0: an origin/)]);
    }
  });

  it("keeps cdk-nag's AwsSolutions checks clean with CORS on", () => {
    const { app } = buildApp({
      skipBundling: true,
      context: { ...TEST_CONTEXT, consoleOrigins: "https://console.example.com" },
    });
    app.synth();
    const report = new AwsSolutionsChecks().validateScope(app);
    expect(report.violations.map((v) => `${v.severity} ${v.ruleName}`)).toEqual([]);
  });
});
