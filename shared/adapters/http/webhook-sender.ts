import { checkUrl, urlHost } from "../../domain/address-policy.ts";
import { findRefusal } from "../../domain/downloads.ts";
import type { WebhookDeliveryResult, WebhookSender } from "../../ports/index.ts";
import { createSafeAgent } from "./guarded-connection.ts";
import { exchange } from "./request.ts";
import type { DownloadPolicy } from "./safe-fetch.ts";

/**
 * Delivers client webhooks under the same address rules as output downloads: scheme and address
 * checks (at connection time, so DNS cannot be used to reach private ranges), no redirects, a
 * timeout (15 s by default) and a cap on how much of the answer is read. Over `node:http`/`node:https`
 * (see `request.ts` for why not undici).
 */
export class SafeWebhookSender implements WebhookSender {
  private readonly agents;

  constructor(
    private readonly policy: DownloadPolicy,
    private readonly maxResponseBytes = 64 * 1024,
  ) {
    this.agents = createSafeAgent(policy);
  }

  async send(url: string, headers: Record<string, string>, body: string): Promise<WebhookDeliveryResult> {
    const started = performance.now();
    const elapsed = () => performance.now() - started;
    const signal = AbortSignal.timeout(this.policy.timeoutMs);
    try {
      // Any host may receive webhooks; the address rules still apply to it.
      const target = checkUrl(url, { ...this.policy, allowedHosts: [urlHost(new URL(url))] });
      const response = await exchange(target, {
        method: "POST",
        headers,
        body,
        agent: this.agents.for(target),
        signal,
      });
      let read = 0;
      for await (const chunk of response.body) {
        read += (chunk as Buffer).byteLength;
        if (read > this.maxResponseBytes) {
          response.body.destroy();
          break;
        }
      }
      return { status: response.status, error: null, durationMs: elapsed() };
    } catch (error) {
      const refusal = findRefusal(error);
      const reason = refusal
        ? `${refusal.code}: ${refusal.message}`
        : signal.aborted
          ? `TIMEOUT: no complete answer within ${this.policy.timeoutMs} ms`
          : error instanceof Error
            ? error.message
            : String(error);
      return { status: null, error: reason.slice(0, 500), durationMs: elapsed() };
    }
  }
}
