/**
 * The use cases' settings as the functions get them from an environment that sets only what has no
 * default: `loadConfig` and the mappings of shared/lambda/settings.ts, so a test's settings are the
 * deployed defaults (each setting's one default lives in shared/schemas/config.ts). A test that needs
 * another value overrides that field, which then says what the test depends on.
 */

import type { ModelCatalog } from "../../shared/domain/model-catalog.ts";
import {
  apiSettings,
  dispatchSettings,
  finalizeSettings,
  notifySettings,
  reconcileSettings,
} from "../../shared/lambda/settings.ts";
import { apiConfig, loadConfig, notifyConfig, reconcileConfig } from "../../shared/schemas/config.ts";

const QUEUE = "https://sqs.us-east-1.amazonaws.com/000000000000/queue";

/**
 * The self-hosted catalog of the tests: one SD 1.5 model under the id the test requests name
 * (test/support/requests.ts), with the tiny model's ControlNets and no annotator weights, upscaler or
 * safety checker.
 */
export const TEST_MODELS: ModelCatalog = [
  {
    id: "sd15",
    kind: "sd15",
    controlnets: ["canny", "depth", "inpaint", "tile", "scribble", "shuffle", "qrcode", "blur"],
    annotators: [],
  },
];

/** The variables without a default, and nothing else. */
export const MINIMAL_ENV = {
  TABLE_NAME: "jobs",
  JOBS_QUEUE_URL: QUEUE,
  ADMISSIONS_QUEUE_URL: QUEUE,
  RESULTS_QUEUE_URL: QUEUE,
  FALLBACK_QUEUE_URL: QUEUE,
  NOTIFICATIONS_QUEUE_URL: QUEUE,
  NOTIFICATIONS_DLQ_URL: QUEUE,
  EVENT_BUS_NAME: "bus",
  INPUTS_BUCKET: "inputs",
  OUTPUTS_BUCKET: "outputs",
  CALLBACK_BASE_URL: "https://api.example.com/",
  SELF_HOSTED_MODELS: JSON.stringify(TEST_MODELS),
} as const;

export const CALLBACK_SECRET = "callback-secret";

const providerConfig = () => loadConfig(reconcileConfig, MINIMAL_ENV);

export const testDispatchSettings = (overrides: Partial<ReturnType<typeof dispatchSettings>> = {}) => ({
  ...dispatchSettings(providerConfig(), CALLBACK_SECRET),
  ...overrides,
});

export const testFinalizeSettings = (overrides: Partial<ReturnType<typeof finalizeSettings>> = {}) => ({
  ...finalizeSettings(providerConfig(), CALLBACK_SECRET),
  ...overrides,
});

export const testReconcileSettings = (overrides: Partial<ReturnType<typeof reconcileSettings>> = {}) => ({
  ...reconcileSettings(providerConfig()),
  ...overrides,
});

export const testNotifySettings = (overrides: Partial<ReturnType<typeof notifySettings>> = {}) => ({
  ...notifySettings(loadConfig(notifyConfig, MINIMAL_ENV)),
  ...overrides,
});

export const testApiSettings = (overrides: Partial<ReturnType<typeof apiSettings>> = {}) => ({
  ...apiSettings(loadConfig(apiConfig, MINIMAL_ENV)),
  ...overrides,
});
