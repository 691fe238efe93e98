import { describe } from "vitest";
import { apiKeyStoreContract } from "../support/api-key-store-contract.ts";
import {
  InMemoryApiKeys,
  InMemoryJobStore,
  InMemoryNotificationStore,
  InMemoryWaitingList,
  InMemoryWebhookSettings,
} from "../support/fakes.ts";
import { jobStoreContract } from "../support/job-store-contract.ts";
import { notificationStoreContract } from "../support/notification-store-contract.ts";
import { waitingListContract } from "../support/waiting-list-contract.ts";
import { webhookSettingsContract } from "../support/webhook-settings-contract.ts";

/**
 * The fakes every use-case test relies on, held to the contracts the DynamoDB adapters meet against
 * dynalite (test/integration: dynamo-job-store, notification-store, dynamo-tenant-store).
 */
describe("InMemoryJobStore", () => {
  jobStoreContract((clock) => new InMemoryJobStore(clock));
});

describe("InMemoryNotificationStore", () => {
  notificationStoreContract(() => new InMemoryNotificationStore());
});

describe("InMemoryWebhookSettings", () => {
  webhookSettingsContract((clock) => {
    const store = new InMemoryWebhookSettings(clock);
    return { store, addTenant: async (id) => void store.addTenant(id) };
  });
});

describe("InMemoryApiKeys", () => {
  apiKeyStoreContract((clock) => {
    const store = new InMemoryApiKeys(clock);
    return { store, addTenant: async (id) => void store.addTenant(id) };
  });
});

describe("InMemoryWaitingList", () => {
  waitingListContract((settings) => new InMemoryWaitingList(settings));
});
