import { lookup } from "node:dns/promises";
import type { HostResolver } from "../../ports/network.ts";

export interface LookupAddress {
  address: string;
  family: number;
}

/** Every address the system resolver gives for a name, in its own order (`dns.promises.lookup`, `all`). */
export const systemLookup = (hostname: string): Promise<LookupAddress[]> =>
  lookup(hostname, { all: true, verbatim: true });

/** The `HostResolver` port on the system resolver. */
export const systemHostResolver: HostResolver = async (hostname) =>
  (await systemLookup(hostname)).map((entry) => entry.address);
