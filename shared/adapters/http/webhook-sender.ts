import { request } from "undici";
import type { WebhookDeliveryResult, WebhookSender } from "../../ports/index.ts";
import { checkUrl, createSafeAgent, type DownloadPolicy, findRefusal, urlHost } from "./safe-fetch.ts";

/**
 * Delivers client webhooks under the same address rules as output downloads: scheme and address
 * checks (at connection time, so DNS cannot be used to reach private ranges), no redirects, a
 * timeout (15 s by default) and a cap on how much of the answer is read.
 */
export class SafeWebhookSender implements WebhookSender {
  private readonly agent;

  constructor(
    private readonly policy: DownloadPolicy,
    private readonly maxResponseBytes = 64 * 1024,
  ) {
    this.agent = createSafeAgent(policy);
  }

  async send(url: string, headers: Record<string, string>, body: string): Promise<WebhookDeliveryResult> {
    const started = performance.now();
    const elapsed = () => performance.now() - started;
    try {
      // Any host may receive webhooks; the address rules still apply to it.
      const target = checkUrl(url, { ...this.policy, allowedHosts: [urlHost(new URL(url))] });
      const response = await request(target, {
        method: "POST",
        headers,
        body,
        dispatcher: this.agent,
        signal: AbortSignal.timeout(this.policy.timeoutMs),
      });
      let read = 0;
      for await (const chunk of response.body) {
        read += (chunk as Buffer).byteLength;
        if (read > this.maxResponseBytes) {
          response.body.destroy();
          break;
        }
      }
      return { status: response.statusCode, error: null, durationMs: elapsed() };
    } catch (error) {
      const refusal = findRefusal(error);
      const reason = refusal
        ? `${refusal.code}: ${refusal.message}`
        : error instanceof Error
          ? error.message
          : String(error);
      return { status: null, error: reason.slice(0, 500), durationMs: elapsed() };
    }
  }
}
