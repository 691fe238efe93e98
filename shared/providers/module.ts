import type * as z from "zod/mini";
import type { JobError } from "../domain/job.ts";
import type { ProviderId } from "../domain/providers.ts";
import type { Queue } from "../ports/index.ts";
import type { CallbackNormalizer, Provider, ProviderCapabilities } from "../ports/provider.ts";
import type { queues } from "../schemas/messages.ts";
import type { MessageOf } from "../schemas/queue.ts";

export type QueueName = keyof typeof queues;

/** What a provider module may use to build its provider: the function's clients, never its own. */
export interface ProviderContext {
  /**
   * One of the queues of shared/schemas/messages.ts, by name, at `url` (the self-hosted fleet's). By
   * name: a module's settings are bundled by every function, its queues' schemas only by those that
   * build it.
   */
  queue<K extends QueueName>(name: K, url: string): Queue<MessageOf<(typeof queues)[K]>>;
  /** A secret: the plain value of `valueName` when set, else the Secrets Manager secret named by `arnName`. */
  secret(config: Record<string, unknown>, valueName: string, arnName: string): Promise<string>;
  log(message: string, data: Record<string, unknown>): void;
}

/**
 * One provider, as the registry knows it: everything the orchestrator needs to use it, in one place.
 * Adding a provider is one module (this shape), its registry rows (`PROVIDER_REGISTRY`,
 * `PROVIDER_SETTINGS`, `PROVIDER_UNSUPPORTED`) and its id in PROVIDER_IDS.
 */
export interface ProviderModule<S extends z.ZodMiniObject = z.ZodMiniObject> {
  id: ProviderId;
  /** What it can do, known without building it (the callback function reads `callback`). */
  capabilities: ProviderCapabilities;
  /**
   * Its environment variables: composed into the configuration of every function that uses providers
   * (shared/schemas/config.ts), so a bad value fails that function's cold start with the others.
   */
  config: S;
  /** The most jobs it holds at once: its capacity gate's limit. */
  capacity(config: z.infer<S>): number;
  /**
   * The key of its circuit breaker (the `BREAKER#<key>` item), or null for a provider nothing is
   * routed around (the last resort of `auto` jobs).
   */
  breakerKey: string | null;
  /** Builds the provider. Cheap: a secret it needs is read on its first call, so functions that never call it need no grant. */
  create(config: z.infer<S>, context: ProviderContext): Provider;
  /** Its callback parser; present exactly when `capabilities.callback`. */
  normalizeCallback?: (body: unknown, log: ProviderContext["log"]) => ReturnType<CallbackNormalizer>;
  /** Why a job asking for it fails where a deployment lacks it (PROVIDER_UNAVAILABLE when not given). */
  unavailable?: JobError;
}
