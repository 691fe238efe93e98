/**
 * Jobs queue consumer: the chosen provider's capacity gate, `queued → processing`, the submission (a
 * provider with callbacks gets our callback URL) — or, for `auto` jobs, the fallback provider while
 * the primary's breaker is open or when its capacity would come too late.
 */
import type { Environment } from "../shared/adapters/aws-client.ts";
import { createDispatchHandler } from "../shared/lambda/dispatch-handler.ts";
import { queues } from "../shared/schemas/messages.ts";

/** The function as configured by `env`: its configuration, clients and handler (tests build several). */
export const createHandler = (env: Environment) => createDispatchHandler(env, queues.jobs);

export const handler = await createHandler(process.env);
