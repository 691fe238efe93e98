import { ensureTenant } from "../../local/dev-tenant.ts";
import { type LocalStack, type LocalStackOptions, startLocalStack } from "../../local/stack.ts";
import { ownName, sharedEmulatorEndpoint } from "./emulators.ts";

export interface TestClient {
  apiKey: string;
  tenantId: string;
  webhookSecret: string;
  request(
    method: string,
    path: string,
    init?: { body?: unknown; rawBody?: string | Buffer; headers?: Record<string, string> },
  ): Promise<{
    status: number;
    headers: Headers;
    body: any;
  }>;
}

let stacks = 0;

/** Starts the local stack in this test process (quiet, in-memory, random port) with one client per tenant. */
export async function startTestStack(
  tenants: string[] = ["tenant-a", "tenant-b"],
  options: LocalStackOptions = {},
): Promise<{ stack: LocalStack; clients: TestClient[] }> {
  process.env.POWERTOOLS_LOG_LEVEL ??= "SILENT";
  // Quiet as the logs: test/e2e/metrics.test.ts turns the EMF lines on to read them.
  process.env.POWERTOOLS_METRICS_DISABLED ??= "true";
  // On moto (`npm run test:moto`) every test file's stack shares the one emulator, under its own names.
  const shared = sharedEmulatorEndpoint();
  const stack = await startLocalStack({
    port: 0,
    dataDir: null,
    ...(shared && { aws: { endpoint: shared, namePrefix: `${ownName(`s${++stacks}`)}-` } }),
    reconcileIntervalSeconds: 3600,
    // DEBUG_LOCAL_STACK=1 shows the stack's own problems (poller and schedule errors) while debugging tests.
    ...(process.env.DEBUG_LOCAL_STACK && { log: (line: string) => console.error(`[local] ${line}`) }),
    ...options,
  });
  const tableName = process.env.TABLE_NAME as string;
  const clients: TestClient[] = [];
  for (const tenant of tenants) {
    const { apiKey, tenantId, webhookSecret } = await ensureTenant(tableName, tenant);
    clients.push(client(stack.url, tenantId, apiKey, webhookSecret));
  }
  return { stack, clients };
}

export function client(baseUrl: string, tenantId: string, apiKey: string, webhookSecret = ""): TestClient {
  return {
    apiKey,
    tenantId,
    webhookSecret,
    async request(method, path, init = {}) {
      const headers: Record<string, string> = { authorization: `Bearer ${apiKey}`, ...init.headers };
      let body: string | Buffer | undefined = init.rawBody;
      if (init.body !== undefined) {
        body = JSON.stringify(init.body);
        headers["content-type"] ??= "application/json";
      }
      const response = await fetch(`${baseUrl}${path}`, {
        method,
        headers,
        ...(body !== undefined && { body }),
      });
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        // not JSON: keep the text
      }
      return { status: response.status, headers: response.headers, body: parsed as any };
    },
  };
}
