/**
 * Which URLs and addresses we may connect to when someone else chose them: provider outputs we
 * download, client webhooks we deliver to, and image URLs the provider fetches on a client's behalf.
 * Pure rules, no I/O: the HTTP adapters (`shared/adapters/http/`) apply them at connection time, to
 * every address a name resolves to, and the use cases apply them before anything is stored.
 *
 * - `checkUrl`: an allow-listed host, no credentials, https on the default port (aws mode) or http(s)
 *   on any port (local mode), and no forbidden IP literal;
 * - `isAddressAllowed`: never a private, loopback, link-local, multicast, reserved or cloud-metadata
 *   address, in IPv4 or IPv6 (IPv4-mapped, NAT64 and 6to4 forms judged as the IPv4 address they
 *   embed); local mode also allows loopback (the simulator and test servers live there).
 */
import { DownloadRefused } from "./downloads.ts";

/** aws: https only, public addresses only. local: http allowed and loopback too (the local stack). */
export type NetworkMode = "aws" | "local";

export interface AddressPolicy {
  mode: NetworkMode;
  /** Host names (lower case) connections may go to; `*.example.com` allows any subdomain. */
  allowedHosts: string[];
}

type Range = readonly [base: bigint, prefix: number];

/** One decimal IPv4 part as Node's and the URL parser's canonical form writes it (no leading zeros). */
const V4_PART = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)$/;

const v4 = (text: string): bigint | null => {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  let value = 0n;
  for (const part of parts) {
    if (!V4_PART.test(part)) return null;
    value = (value << 8n) | BigInt(Number(part));
  }
  return value;
};

/** Parses an IPv6 address (its last 32 bits may be written as a dotted IPv4) into a 128-bit number. */
const v6 = (text: string): bigint | null => {
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const compressed = halves.length === 2;
  const split = (half: string): string[] => (half === "" ? [] : half.split(":"));
  const head = split(halves[0] ?? "");
  const tail = compressed ? split(halves[1] ?? "") : [];
  // Only the address's last group may be a dotted IPv4 address (it stands for two groups).
  const last = compressed ? tail : head;
  const dotted = last[last.length - 1];
  let embedded: string[] = [];
  if (dotted?.includes(".")) {
    const value = v4(dotted);
    if (value === null) return null;
    last.pop();
    embedded = [(value >> 16n).toString(16), (value & 0xffffn).toString(16)];
  }
  const explicit = head.length + tail.length + embedded.length;
  if (compressed ? explicit > 7 : explicit !== 8) return null;
  const groups = [...head, ...Array<string>(8 - explicit).fill("0"), ...tail, ...embedded];
  let value = 0n;
  for (const group of groups) {
    if (!/^[0-9a-f]{1,4}$/i.test(group)) return null;
    value = (value << 16n) | BigInt(Number.parseInt(group, 16));
  }
  return value;
};

/**
 * 4 or 6 when `text` is an IPv4 or IPv6 address (without brackets or a zone), else 0: what
 * `net.isIP` answers (test/unit/address-policy.test.ts compares the two), without importing `node:net`.
 */
export function ipFamily(text: string): 0 | 4 | 6 {
  if (v4(text) !== null) return 4;
  if (v6(text) !== null) return 6;
  return 0;
}

const range4 = (cidr: string): Range => {
  const [base, prefix] = cidr.split("/");
  return [v4(base ?? "") ?? 0n, Number(prefix)];
};
const range6 = (cidr: string): Range => {
  const [base, prefix] = cidr.split("/");
  return [v6(base ?? "") ?? 0n, Number(prefix)];
};

const inRange = (value: bigint, [base, prefix]: Range, bits: number): boolean => {
  const shift = BigInt(bits - prefix);
  return value >> shift === base >> shift;
};

/** IPv4 ranges never connected to: this network, private, CGNAT, loopback, link-local, special, multicast, reserved. */
const FORBIDDEN_V4: Range[] = [
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10", // CGNAT, also Alibaba's metadata 100.100.100.200
  "127.0.0.0/8",
  "169.254.0.0/16", // link-local, incl. 169.254.169.254 (AWS/GCP/Azure metadata)
  "172.16.0.0/12",
  "192.0.0.0/24", // IETF protocol assignments, incl. Oracle's metadata 192.0.0.192
  "192.0.2.0/24", // TEST-NET-1
  "192.88.99.0/24", // 6to4 relay anycast
  "192.168.0.0/16",
  "198.18.0.0/15", // benchmarking
  "198.51.100.0/24", // TEST-NET-2
  "203.0.113.0/24", // TEST-NET-3
  "224.0.0.0/4", // multicast
  "240.0.0.0/4", // reserved, incl. 255.255.255.255
].map(range4);

/** IPv6 ranges forbidden outright. Ranges that embed an IPv4 address are evaluated below instead. */
const FORBIDDEN_V6: Range[] = [
  "::/96", // unspecified, loopback and the deprecated IPv4-compatible addresses
  "64:ff9b:1::/48", // local-use NAT64
  "100::/64", // discard-only
  "2001::/32", // Teredo (hides an IPv4 address)
  "2001:db8::/32", // documentation
  "fc00::/7", // unique local, incl. fd00:ec2::254 (AWS metadata over IPv6)
  "fe80::/10", // link-local
  "fec0::/10", // deprecated site-local
  "ff00::/8", // multicast
].map(range6);

/** IPv6 ranges whose last 32 bits are an IPv4 address, judged as that address. */
const EMBEDDING_V6: Range[] = [
  "::ffff:0:0/96", // IPv4-mapped
  "::ffff:0:0:0/96", // IPv4-translated (SIIT)
  "64:ff9b::/96", // NAT64
].map(range6);
const SIX_TO_FOUR = range6("2002::/16");

const LOOPBACK_V4 = range4("127.0.0.0/8");

/** An address or host as written in a URL or a DNS answer, without IPv6 brackets or a zone. */
export function normaliseIp(ip: string): string {
  let text = ip.trim();
  if (text.startsWith("[") && text.endsWith("]")) text = text.slice(1, -1);
  const zone = text.indexOf("%");
  return zone === -1 ? text : text.slice(0, zone);
}

/** The IPv4 address an IPv6 address stands for, when it embeds one (mapped, NAT64, 6to4). */
function embeddedV4(value: bigint): bigint | null {
  if (EMBEDDING_V6.some((range) => inRange(value, range, 128))) return value & 0xffffffffn;
  if (inRange(value, SIX_TO_FOUR, 128)) return (value >> 80n) & 0xffffffffn;
  return null;
}

/**
 * True when `ip` must never be connected to: private, loopback, link-local, multicast, reserved or
 * cloud-metadata ranges, in IPv4 and IPv6 (with IPv4-mapped, NAT64 and 6to4 forms judged as the IPv4
 * address they embed). Anything that is not an IP address is forbidden too (fail closed).
 */
export function isForbiddenAddress(ip: string): boolean {
  const text = normaliseIp(ip);
  const four = v4(text);
  if (four !== null) return FORBIDDEN_V4.some((range) => inRange(four, range, 32));
  const six = v6(text);
  if (six === null) return true;
  const embedded = embeddedV4(six);
  if (embedded !== null) return FORBIDDEN_V4.some((range) => inRange(embedded, range, 32));
  return FORBIDDEN_V6.some((range) => inRange(six, range, 128));
}

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback. */
export function isLoopbackAddress(ip: string): boolean {
  const text = normaliseIp(ip);
  const four = v4(text);
  if (four !== null) return inRange(four, LOOPBACK_V4, 32);
  const six = v6(text);
  if (six === null) return false;
  if (six === 1n) return true;
  const embedded = embeddedV4(six);
  return embedded !== null && inRange(embedded, LOOPBACK_V4, 32);
}

/** Whether the policy lets a socket be opened to `ip`. */
export function isAddressAllowed(ip: string, policy: Pick<AddressPolicy, "mode">): boolean {
  if (!isForbiddenAddress(ip)) return true;
  return policy.mode === "local" && isLoopbackAddress(ip);
}

function hostAllowed(hostname: string, allowedHosts: string[]): boolean {
  return allowedHosts.some((entry) => {
    const allowed = normaliseIp(entry.trim().toLowerCase());
    if (allowed.startsWith("*.")) {
      const suffix = allowed.slice(1);
      return hostname.endsWith(suffix) && hostname.length > suffix.length;
    }
    return allowed === hostname;
  });
}

const urlRefused = (message: string) => new DownloadRefused("URL_NOT_ALLOWED", message);

/** Host of a URL without IPv6 brackets, lower case. */
export function urlHost(url: URL): string {
  return normaliseIp(url.hostname.toLowerCase());
}

/**
 * Checks a URL against the policy before anything touches the network. Returns the parsed URL.
 * Throws `DownloadRefused` (URL_NOT_ALLOWED, or ADDRESS_NOT_ALLOWED for a forbidden IP literal).
 */
export function checkUrl(url: string | URL, policy: AddressPolicy): URL {
  let parsed: URL;
  try {
    parsed = new URL(String(url));
  } catch {
    throw urlRefused("The output URL is not a valid absolute URL.");
  }
  const allowedSchemes = policy.mode === "aws" ? ["https:"] : ["https:", "http:"];
  if (!allowedSchemes.includes(parsed.protocol)) {
    throw urlRefused(
      `Scheme ${parsed.protocol} is not allowed for outputs (allowed: ${allowedSchemes.join(", ")}).`,
    );
  }
  if (parsed.username !== "" || parsed.password !== "") {
    throw urlRefused("Output URLs must not carry credentials.");
  }
  const host = urlHost(parsed);
  if (!hostAllowed(host, policy.allowedHosts)) {
    throw urlRefused(`Host ${host} is not an allowed provider output host.`);
  }
  if (policy.mode === "aws" && parsed.port !== "") {
    throw urlRefused(
      `Port ${parsed.port} is not allowed; outputs are downloaded from the default https port.`,
    );
  }
  if (ipFamily(host) !== 0 && !isAddressAllowed(host, policy)) {
    throw new DownloadRefused("ADDRESS_NOT_ALLOWED", `Address ${host} is in a forbidden range.`);
  }
  return parsed;
}
