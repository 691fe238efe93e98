/**
 * Admissions queue consumer: starts a job admitted on a provider slot taken on its behalf (dispatch's
 * use case, without a second look at the gate). Apart from the jobs queue's consumer, so that a freed
 * slot's next job never waits behind the backlog of first looks.
 */
import type { Environment } from "../shared/adapters/aws-client.ts";
import { createDispatchHandler } from "../shared/lambda/dispatch-handler.ts";
import { queues } from "../shared/schemas/messages.ts";

/** The function as configured by `env`: its configuration, clients and handler (tests build several). */
export const createHandler = (env: Environment) => createDispatchHandler(env, queues.admissions);

export const handler = await createHandler(process.env);
