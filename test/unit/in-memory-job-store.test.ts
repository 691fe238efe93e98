import { describe } from "vitest";
import { InMemoryJobStore } from "../support/fakes.ts";
import { jobStoreContract } from "../support/job-store-contract.ts";

/** The fake every use-case test relies on, held to the contract DynamoJobStore meets against dynalite. */
describe("InMemoryJobStore", () => {
  jobStoreContract((clock) => new InMemoryJobStore(clock));
});
