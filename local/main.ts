/**
 * `npm start`: the whole product on loopback. Prints where it listens, the dev API key and a curl
 * example; Ctrl-C stops everything cleanly.
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { devApiKeyFrom, ensureTenant } from "./dev-tenant.ts";
import { CONSOLE_PATH, REPO_ROOT, startLocalStack } from "./stack.ts";

// Ctrl-C during startup is honoured too: we stop as soon as the stack is up, never mid-creation.
let signalled: string | null = null;
let onSignal = (signal: string) => {
  signalled = signal;
};
process.on("SIGINT", () => onSignal("SIGINT"));
process.on("SIGTERM", () => onSignal("SIGTERM"));

const { values: args } = parseArgs({
  options: { "with-worker": { type: "boolean", default: false } },
  strict: true,
});
const withWorker = args["with-worker"] === true;

// Checked before anything starts: a key that can never authenticate stops `npm start` with its reason.
let devApiKey: string | undefined;
try {
  devApiKey = devApiKeyFrom(process.env);
} catch (error) {
  console.error((error as Error).message);
  process.exit(2);
}

const port = Number(process.env.PORT ?? 3000);
const stack = await startLocalStack({
  port,
  dataDir: resolve(REPO_ROOT, ".data/dynamodb"),
  reconcileIntervalSeconds: Number(process.env.RECONCILE_INTERVAL_SECONDS ?? 5),
  // With a real key the stack calls the configured provider; without one, the local simulator.
  provider: process.env.MODELSLAB_API_KEY
    ? { kind: "configured" }
    : { kind: "simulator", options: { completionDelayMs: 2000 } },
  // `npm start -- --with-worker`: the self-hosted GPU worker runs here on the CPU (MODEL_DIR, or a tiny model).
  worker: withWorker,
  log: (line) => console.error(line),
});
const tableName = process.env.TABLE_NAME;
if (!tableName) throw new Error("the template gave the functions no TABLE_NAME");
const { apiKey, webhookSecret } = await ensureTenant(
  tableName,
  "dev",
  devApiKey,
  process.env.DEV_WEBHOOK_SECRET || undefined,
);
const provider = stack.simulator
  ? `${stack.simulator.url} (local simulator; set MODELSLAB_API_KEY to call ModelsLab)`
  : `${process.env.MODELSLAB_BASE_URL ?? "https://modelslab.com/api"} (MODELSLAB_API_KEY is set)`;
const controlImage = stack.simulator
  ? `${new URL(stack.simulator.url).origin}/samples/control.png`
  : "https://example.com/your-control-image.png";

console.log(`
ControlNet orchestrator (local stack)
  API          ${stack.url}
  OpenAPI      ${stack.url}/v1/openapi.json
  Console      ${stack.url}${CONSOLE_PATH}/ (paste the dev API key there)
  Callbacks    ${stack.callbackBaseUrl} (the provider's webhooks; a Lambda function URL in AWS)
  DynamoDB     ${stack.endpoints.dynamodb} (dynalite, data in .data/dynamodb)
  SQS          ${stack.endpoints.sqs} (fauxqs)
  Provider     ${provider}
  GPU worker   ${stack.worker ? `in-process on the CPU (${process.env.MODEL_DIR ? `MODEL_DIR ${process.env.MODEL_DIR}` : "tiny random-weight model: outputs are noise"})` : "not running (npm start -- --with-worker runs it; self-hosted jobs wait until then)"}
  Dev API key  ${apiKey}
  Webhook key  ${webhookSecret} (verifies the Standard Webhooks signatures of notifications)

Try:
  curl -s -X POST ${stack.url}/v1/jobs \\
    -H "Authorization: Bearer ${apiKey}" -H "Content-Type: application/json" \\
    -d '{"model_id":"sd15","controlnet_model":"canny","controlnet_type":"canny","prompt":"a lighthouse at dusk","control_image":"${controlImage}"}'
  curl -s ${stack.url}/v1/jobs/<id> -H "Authorization: Bearer ${apiKey}"
`);

let stopping = false;
onSignal = (signal: string) => {
  if (stopping) return;
  stopping = true;
  console.error(`\n${signal}: stopping…`);
  void stack.stop().then(() => process.exit(0));
};
if (signalled) onSignal(signalled);
