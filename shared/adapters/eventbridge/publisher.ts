import { EventBridgeClient, PutEventsCommand } from "@aws-sdk/client-eventbridge";
import { UnavailableError } from "../../domain/errors.ts";
import { LIFECYCLE_SOURCE, type LifecycleEvent } from "../../domain/events.ts";
import type { EventPublisher } from "../../ports/index.ts";
import { AWS_CLIENT_DEFAULTS, boundedHttpHandler, type Environment, serviceLocation } from "../aws-client.ts";

/** Region and endpoint from `env` (`AWS_ENDPOINT_URL_EVENTBRIDGE`, ...: `serviceLocation`), credentials from the default chain. */
export const createEventBridgeClient = (env: Environment = process.env): EventBridgeClient =>
  new EventBridgeClient({
    maxAttempts: AWS_CLIENT_DEFAULTS.maxAttempts,
    requestHandler: boundedHttpHandler(),
    ...serviceLocation(env, "EVENTBRIDGE"),
  });

/** Publishes lifecycle events on the product's bus (at most 10 per PutEvents call). */
export class EventBridgePublisher implements EventPublisher {
  constructor(
    private readonly client: EventBridgeClient,
    private readonly busName: string,
  ) {}

  async publish(events: LifecycleEvent[]): Promise<void> {
    for (let i = 0; i < events.length; i += 10) {
      const batch = events.slice(i, i + 10);
      const out = await this.client.send(
        new PutEventsCommand({
          Entries: batch.map((event) => ({
            EventBusName: this.busName,
            Source: LIFECYCLE_SOURCE,
            DetailType: event.type,
            Detail: JSON.stringify(event.detail),
            Time: new Date(event.detail.occurred_at),
          })),
        }),
      );
      if ((out.FailedEntryCount ?? 0) > 0) {
        throw new UnavailableError(
          "EVENTS_UNAVAILABLE",
          `${out.FailedEntryCount} lifecycle event(s) were not accepted.`,
        );
      }
    }
  }
}
