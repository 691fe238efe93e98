import type { Readable } from "node:stream";

/**
 * Fetches a URL someone else gave us (a provider output) under the address policy and the download's
 * own limits: the allow-list, address checks at connection time, redirects, a size limit on the body
 * and a time limit on the whole exchange are the adapter's (`shared/adapters/http/safe-fetch.ts`).
 * Every refusal is a `DownloadRefused` (`shared/domain/downloads.ts`) with a stable code and a
 * `retryable` flag; errors thrown by `onBody` pass through unchanged.
 */
export interface Downloader {
  /** Hands the body to `onBody` as a stream (failing past the size limit); resolves with what `onBody` resolves. */
  download<T>(url: string, onBody: (body: Readable) => Promise<T>): Promise<T>;
}

/** Resolves a host name to all its addresses (DNS). */
export type HostResolver = (hostname: string) => Promise<string[]>;
