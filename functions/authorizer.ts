/**
 * Lambda authorizer (simple responses, cached by API Gateway per Authorization header). It resolves
 * the API key to a tenant and always lets the request through with `tenantId` in the context (empty
 * when the key is unknown): the API then answers 401 in its own error format, which a denying
 * authorizer cannot do (API Gateway would answer a bare 403).
 */
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type {
  APIGatewayRequestAuthorizerEventV2,
  APIGatewaySimpleAuthorizerWithContextResult,
} from "aws-lambda";
import type { Environment } from "../shared/adapters/aws-client.ts";
import { createDocumentClient } from "../shared/adapters/dynamo/client.ts";
import { DynamoTenantStore } from "../shared/adapters/dynamo/tenant-store.ts";
import { createLogger } from "../shared/lambda/logger.ts";
import { authorizerConfig, loadConfig } from "../shared/schemas/config.ts";
import { authenticate } from "../shared/usecases/authenticate.ts";

type Result = APIGatewaySimpleAuthorizerWithContextResult<{ tenantId: string }>;

/** The function as configured by `env`: its configuration, clients and handler (tests build several). */
export function createHandler(env: Environment) {
  const config = loadConfig(authorizerConfig, env);
  const logger = createLogger(env);
  const tenants = new DynamoTenantStore(createDocumentClient({}, env), config.TABLE_NAME);

  return middy<APIGatewayRequestAuthorizerEventV2, Result>()
    .use(injectLambdaContext(logger))
    .handler(async (event) => {
      const tenant = await authenticate(tenants, event.headers?.authorization);
      return { isAuthorized: true, context: { tenantId: tenant?.id ?? "" } };
    });
}

export const handler = createHandler(process.env);
