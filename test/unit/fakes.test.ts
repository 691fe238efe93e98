import { describe } from "vitest";
import { InMemoryJobStore, InMemoryNotificationStore } from "../support/fakes.ts";
import { jobStoreContract } from "../support/job-store-contract.ts";
import { notificationStoreContract } from "../support/notification-store-contract.ts";

/**
 * The fakes every use-case test relies on, held to the contracts the DynamoDB adapters meet against
 * dynalite (test/integration: dynamo-job-store, notification-store).
 */
describe("InMemoryJobStore", () => {
  jobStoreContract((clock) => new InMemoryJobStore(clock));
});

describe("InMemoryNotificationStore", () => {
  notificationStoreContract(() => new InMemoryNotificationStore());
});
