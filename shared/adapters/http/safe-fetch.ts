/**
 * SSRF-safe download of provider outputs.
 *
 * A callback body is untrusted, so the URLs in it are too. A download is allowed only when:
 * - the URL passes `checkUrl`: an allow-listed host, no credentials, https on the default port (aws
 *   mode) or http/https on any port (local mode);
 * - every address the host resolves to passes `isForbiddenAddress` (aws mode; local mode also allows
 *   loopback). The check runs in the connector, at connection time: the name is resolved there, all
 *   its addresses are checked, and the socket is opened to the checked address itself, so a DNS
 *   answer that changes between a check and a connect (rebinding) cannot slip through;
 * - redirects (followed by hand, at most `MAX_REDIRECTS`) stay on the same host and pass the same checks;
 * - the body stays under `maxBytes` (Content-Length and counted bytes) and the whole exchange under
 *   `timeoutMs`.
 * Every refusal is a `DownloadRefused` with a stable code and a `retryable` flag.
 *
 * Over `node:http`: the connector is the `createConnection` of an `http.Agent` (`SafeAgent`); see
 * `request.ts` for why not undici.
 */
import { lookup as dnsLookup } from "node:dns/promises";
import http, { type ClientRequestArgs, type IncomingHttpHeaders } from "node:http";
import net, { isIP, type Socket } from "node:net";
import { type Duplex, type Readable, Transform, type TransformCallback } from "node:stream";
import tls from "node:tls";
import { CONNECT_TIMEOUT_CODE, connectTimeoutError, exchange } from "./request.ts";

export interface DownloadPolicy {
  /** aws: https only, public addresses only. local: http allowed and loopback too (simulator). */
  mode: "aws" | "local";
  /** Host names (lower case) downloads may come from; `*.example.com` allows any subdomain. */
  allowedHosts: string[];
  maxBytes: number;
  /** Limit for one download, from the request to the last body byte. */
  timeoutMs: number;
  /** How long a caller keeps retrying retryable refusals (links propagate late). */
  retryForMs: number;
}

export type DownloadRefusalCode =
  | "URL_NOT_ALLOWED"
  | "ADDRESS_NOT_ALLOWED"
  | "REDIRECT_NOT_ALLOWED"
  | "TOO_LARGE"
  | "TIMEOUT"
  | "HTTP_STATUS"
  | "NETWORK";

export class DownloadRefused extends Error {
  readonly retryable: boolean;
  /** The HTTP status when `code` is HTTP_STATUS. */
  readonly status: number | null;

  constructor(
    readonly code: DownloadRefusalCode,
    message: string,
    options: { retryable?: boolean; status?: number; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "DownloadRefused";
    this.retryable = options.retryable ?? false;
    this.status = options.status ?? null;
  }
}

export const MAX_REDIRECTS = 3;

// ---------------------------------------------------------------------------------------------
// Addresses

type Range = readonly [base: bigint, prefix: number];

const v4 = (text: string): bigint | null => {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  let value = 0n;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part)) return null;
    const n = Number(part);
    if (n > 255) return null;
    value = (value << 8n) | BigInt(n);
  }
  return value;
};

/** Parses an IPv6 address (with an optional trailing dotted IPv4) into a 128-bit number. */
const v6 = (text: string): bigint | null => {
  let groups: string[];
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const split = (half: string): string[] => (half === "" ? [] : half.split(":"));
  const head = split(halves[0] ?? "");
  const tail = halves.length === 2 ? split(halves[1] ?? "") : [];
  const expand = (list: string[]): string[] | null => {
    const last = list[list.length - 1];
    if (last?.includes(".")) {
      const embedded = v4(last);
      if (embedded === null) return null;
      return [...list.slice(0, -1), (embedded >> 16n).toString(16), (embedded & 0xffffn).toString(16)];
    }
    return list;
  };
  if (halves.length === 2) {
    const h = expand(head);
    const t = expand(tail);
    if (!h || !t) return null;
    const missing = 8 - h.length - t.length;
    if (missing < 1) return null;
    groups = [...h, ...Array<string>(missing).fill("0"), ...t];
  } else {
    const h = expand(head);
    if (!h) return null;
    groups = h;
  }
  if (groups.length !== 8) return null;
  let value = 0n;
  for (const group of groups) {
    if (!/^[0-9a-f]{1,4}$/i.test(group)) return null;
    value = (value << 16n) | BigInt(Number.parseInt(group, 16));
  }
  return value;
};

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

/** IPv4 ranges never downloaded from: this network, private, CGNAT, loopback, link-local, special, multicast, reserved. */
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

function normaliseIp(ip: string): string {
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
  const family = isIP(text);
  if (family === 4) {
    const value = v4(text);
    return value === null || FORBIDDEN_V4.some((range) => inRange(value, range, 32));
  }
  if (family === 6) {
    const value = v6(text);
    if (value === null) return true;
    const embedded = embeddedV4(value);
    if (embedded !== null) return FORBIDDEN_V4.some((range) => inRange(embedded, range, 32));
    return FORBIDDEN_V6.some((range) => inRange(value, range, 128));
  }
  return true;
}

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback. */
export function isLoopbackAddress(ip: string): boolean {
  const text = normaliseIp(ip);
  const family = isIP(text);
  if (family === 4) {
    const value = v4(text);
    return value !== null && inRange(value, LOOPBACK_V4, 32);
  }
  if (family === 6) {
    const value = v6(text);
    if (value === null) return false;
    if (value === 1n) return true;
    const embedded = embeddedV4(value);
    return embedded !== null && inRange(embedded, LOOPBACK_V4, 32);
  }
  return false;
}

/** Whether the policy lets a socket be opened to `ip`. */
export function isAddressAllowed(ip: string, policy: Pick<DownloadPolicy, "mode">): boolean {
  if (!isForbiddenAddress(ip)) return true;
  return policy.mode === "local" && isLoopbackAddress(ip);
}

// ---------------------------------------------------------------------------------------------
// URLs

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
export function checkUrl(url: string | URL, policy: DownloadPolicy): URL {
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
  if (isIP(host) !== 0 && !isAddressAllowed(host, policy)) {
    throw new DownloadRefused("ADDRESS_NOT_ALLOWED", `Address ${host} is in a forbidden range.`);
  }
  return parsed;
}

// ---------------------------------------------------------------------------------------------
// Connections

export interface LookupAddress {
  address: string;
  family: number;
}
/** Resolves a host name to all its addresses (like `dns.promises.lookup(name, { all: true })`). */
export type ResolveHost = (hostname: string) => Promise<LookupAddress[]>;

const systemResolve: ResolveHost = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

/** What a connection is for: `hostname` is the URL's host (a name or an IP literal), `port` a decimal. */
export interface ConnectOptions {
  hostname: string;
  protocol: string;
  port: string;
  /** TLS server name (SNI and certificate check); the host name by default. */
  servername?: string;
}
/** Reports the connected socket (a TLS socket for https, already through its handshake) or an error. */
export type ConnectCallback = (...args: [null, Socket] | [Error, null]) => void;
/** Opens one connection (the shape of undici's `buildConnector.connector`, which tests still type it as). */
export type Connector = (options: ConnectOptions, callback: ConnectCallback) => void;

export interface SafeConnectOptions {
  /** Name resolution; tests inject one to simulate hostile DNS answers. */
  resolve?: ResolveHost;
  /** Called with every address a socket is about to be opened to (after the check). */
  onConnect?: (address: string, hostname: string) => void;
  /**
   * Opens the socket once the address has passed the checks (`hostname` is then that address).
   * Defaults to `net.connect` / `tls.connect`; tests route it to a loopback server to exercise aws-mode rules.
   */
  transport?: Connector;
}

/**
 * The default transport: a TCP connection to the (checked) address, with TLS on top for https (the
 * certificate verified against `servername`), reported once it is up or failed; one that is not up
 * within `timeoutMs` fails with `CONNECT_TIMEOUT_CODE`.
 */
function directTransport(timeoutMs: number): Connector {
  return (options, callback) => {
    const port = Number(options.port);
    const socket: Socket =
      options.protocol === "https:"
        ? tls.connect({
            host: options.hostname,
            port,
            ALPNProtocols: ["http/1.1"],
            ...(options.servername ? { servername: options.servername } : {}),
          })
        : net.connect({ host: options.hostname, port });
    let settled = false;
    const settle = (error: Error | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off("error", settle);
      if (error) {
        socket.destroy();
        callback(error, null);
      } else {
        callback(null, socket);
      }
    };
    const timer = setTimeout(
      () => settle(connectTimeoutError(timeoutMs, `${options.hostname}:${options.port}`)),
      timeoutMs,
    );
    socket.once(options.protocol === "https:" ? "secureConnect" : "connect", () => settle(null));
    socket.on("error", settle);
  };
}

/**
 * A connector that refuses forbidden addresses before any socket exists: IP literals are checked as
 * they are; names are resolved here, every address is checked, and the socket is opened to the first
 * checked address itself (TLS still verifies the certificate against the name). Checking in a `lookup`
 * hook instead would run inside `net.connect`, after a socket exists; here nothing is opened at all.
 */
export function createGuardedConnector(
  policy: Pick<DownloadPolicy, "mode" | "timeoutMs">,
  options: SafeConnectOptions = {},
): Connector {
  const base = options.transport ?? directTransport(Math.min(policy.timeoutMs, 10_000));
  const resolve = options.resolve ?? systemResolve;
  return (connectOptions, callback) => {
    const hostname = normaliseIp(connectOptions.hostname.toLowerCase());
    const refuse = (address: string) =>
      callback(
        new DownloadRefused(
          "ADDRESS_NOT_ALLOWED",
          address === hostname
            ? `Address ${address} is in a forbidden range.`
            : `Host ${hostname} resolves to ${address}, which is in a forbidden range.`,
        ),
        null,
      );
    const open = (address: string) => {
      options.onConnect?.(address, hostname);
      base(
        {
          ...connectOptions,
          hostname: address,
          ...(connectOptions.protocol === "https:" && isIP(hostname) === 0
            ? { servername: connectOptions.servername ?? hostname }
            : {}),
        },
        callback,
      );
    };
    if (isIP(hostname) !== 0) {
      if (!isAddressAllowed(hostname, policy)) refuse(hostname);
      else open(hostname);
      return;
    }
    resolve(hostname).then(
      (addresses) => {
        const forbidden = addresses.find((entry) => !isAddressAllowed(entry.address, policy));
        const first = addresses[0];
        if (forbidden) refuse(forbidden.address);
        else if (!first) callback(new DownloadRefused("NETWORK", `Host ${hostname} has no address.`), null);
        else open(first.address);
      },
      (error: unknown) =>
        callback(
          new DownloadRefused("NETWORK", `Host ${hostname} could not be resolved.`, {
            retryable: true,
            cause: error,
          }),
          null,
        ),
    );
  };
}

/**
 * An `http.Agent` whose every new connection comes from a connector. It serves one scheme: a
 * `ClientRequest` checks the URL's scheme against `agent.protocol` and takes the default port from the
 * agent, and the connector (not the agent) adds TLS for https.
 */
class ConnectorAgent extends http.Agent {
  constructor(
    private readonly connector: Connector,
    private readonly scheme: "http:" | "https:",
    options: http.AgentOptions,
  ) {
    super(options);
    Object.assign(this, { protocol: scheme, defaultPort: scheme === "https:" ? 443 : 80 });
  }

  override createConnection(
    options: ClientRequestArgs,
    callback?: (error: Error | null, socket: Duplex) => void,
  ): undefined {
    const hostname = options.host ?? options.hostname ?? "";
    const port = options.port ?? (this.scheme === "https:" ? 443 : 80);
    this.connector({ hostname, protocol: this.scheme, port: String(port) }, (error, socket) => {
      if (error) callback?.(error, undefined as unknown as Duplex);
      else callback?.(null, socket);
    });
    return undefined;
  }
}

/** A pair of guarded agents (http and https) over one connector; `for(url)` picks the URL's. */
export class SafeAgent {
  private readonly agents: Record<"http:" | "https:", ConnectorAgent>;

  constructor(connector: Connector, options: http.AgentOptions = {}) {
    this.agents = {
      "http:": new ConnectorAgent(connector, "http:", options),
      "https:": new ConnectorAgent(connector, "https:", options),
    };
  }

  for(url: URL): http.Agent {
    return this.agents[url.protocol === "https:" ? "https:" : "http:"];
  }

  /** Closes every pooled connection. */
  destroy(): void {
    this.agents["http:"].destroy();
    this.agents["https:"].destroy();
  }
}

/**
 * Agents whose every connection goes through `createGuardedConnector`. Connections are kept alive
 * between requests (redirects on the same host, webhooks to the same receiver) and a pooled one is
 * closed after 4 s idle, or sooner when the server's Keep-Alive hint says so.
 */
export function createSafeAgent(policy: DownloadPolicy, options: SafeConnectOptions = {}): SafeAgent {
  return new SafeAgent(createGuardedConnector(policy, options), {
    keepAlive: true,
    timeout: 4_000,
    maxSockets: 4,
  });
}

// ---------------------------------------------------------------------------------------------
// Downloads

export interface DownloadResponse {
  /** The URL the body came from (after same-host redirects). */
  url: URL;
  status: number;
  headers: IncomingHttpHeaders;
}

export interface SafeDownloadOptions extends SafeConnectOptions {
  /** Aborts the download from outside (in addition to the policy's timeout). */
  signal?: AbortSignal;
}

/** Counts bytes and fails with TOO_LARGE past `maxBytes`. */
export class ByteLimit extends Transform {
  bytes = 0;
  constructor(private readonly maxBytes: number) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      callback(tooLarge(this.maxBytes));
      return;
    }
    callback(null, chunk);
  }
}

const tooLarge = (maxBytes: number) =>
  new DownloadRefused("TOO_LARGE", `The output is larger than the ${maxBytes}-byte limit.`);

/** Drops a response body we will not read (a stream destroyed mid-way may still report an error). */
function discard(body: Readable): void {
  body.on("error", () => undefined);
  body.destroy();
}

const RETRYABLE_STATUSES = new Set([403, 404, 408, 425, 429]);
const isRetryableStatus = (status: number) => RETRYABLE_STATUSES.has(status) || status >= 500;

const TIMEOUT_CODES = new Set([CONNECT_TIMEOUT_CODE]);
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "ENOTFOUND",
  "ERR_STREAM_PREMATURE_CLOSE",
]);

/** Finds a DownloadRefused anywhere in an error's cause chain (streams and SDKs wrap errors). */
export function findRefusal(error: unknown): DownloadRefused | null {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current; depth++) {
    if (current instanceof DownloadRefused) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return null;
}

function classify(error: unknown, host: string, timedOut: boolean, policy: DownloadPolicy): unknown {
  const refusal = findRefusal(error);
  if (refusal) return refusal;
  if (timedOut) {
    return new DownloadRefused(
      "TIMEOUT",
      `Downloading from ${host} took longer than ${policy.timeoutMs} ms.`,
      {
        retryable: true,
        cause: error,
      },
    );
  }
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && TIMEOUT_CODES.has(code)) {
    return new DownloadRefused("TIMEOUT", `Downloading from ${host} timed out (${code}).`, {
      retryable: true,
      cause: error,
    });
  }
  if (typeof code === "string" && NETWORK_CODES.has(code)) {
    return new DownloadRefused("NETWORK", `Downloading from ${host} failed (${code}).`, {
      retryable: true,
      cause: error,
    });
  }
  return error;
}

/**
 * Downloads `url` under `policy` and hands the body to `onBody` as a byte-limited stream; resolves
 * with what `onBody` resolves. Everything `onBody` does runs inside the download's timeout. Errors
 * are `DownloadRefused` for policy, size, status, timeout and network problems; errors of `onBody`
 * itself pass through unchanged.
 */
export async function safeDownload<T>(
  url: string | URL,
  policy: DownloadPolicy,
  onBody: (body: Readable, response: DownloadResponse) => Promise<T>,
  options: SafeDownloadOptions = {},
): Promise<T> {
  let current = checkUrl(url, policy);
  const originalHost = urlHost(current);
  const agents = createSafeAgent(policy, options);
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), policy.timeoutMs);
  const signal = options.signal ? AbortSignal.any([timeout.signal, options.signal]) : timeout.signal;
  try {
    for (let redirects = 0; ; redirects++) {
      const { status, headers, body } = await exchange(current, {
        method: "GET",
        agent: agents.for(current),
        signal,
        headers: { accept: "image/png, image/jpeg, image/webp;q=0.9, */*;q=0.1" },
      });
      if (status >= 300 && status < 400 && status !== 304) {
        discard(body);
        const location = headers.location;
        if (typeof location !== "string") {
          throw new DownloadRefused(
            "HTTP_STATUS",
            `HTTP ${status} from ${urlHost(current)} without a Location.`,
            {
              status,
            },
          );
        }
        if (redirects >= MAX_REDIRECTS) {
          throw new DownloadRefused("REDIRECT_NOT_ALLOWED", `More than ${MAX_REDIRECTS} redirects.`);
        }
        const next = new URL(location, current);
        if (urlHost(next) !== originalHost) {
          throw new DownloadRefused(
            "REDIRECT_NOT_ALLOWED",
            `Redirect from ${originalHost} to another host (${urlHost(next)}) is not allowed.`,
          );
        }
        try {
          current = checkUrl(next, policy);
        } catch (error) {
          const reason = error instanceof Error ? error.message : String(error);
          throw new DownloadRefused("REDIRECT_NOT_ALLOWED", `Redirect refused: ${reason}`, { cause: error });
        }
        continue;
      }
      if (status !== 200) {
        discard(body);
        throw new DownloadRefused("HTTP_STATUS", `HTTP ${status} from ${urlHost(current)}.`, {
          status,
          retryable: isRetryableStatus(status),
        });
      }
      const declared = Number(headers["content-length"]);
      if (Number.isFinite(declared) && declared > policy.maxBytes) {
        discard(body);
        throw tooLarge(policy.maxBytes);
      }
      const limited = new ByteLimit(policy.maxBytes);
      body.on("error", (error) => limited.destroy(error));
      body.pipe(limited);
      try {
        return await onBody(limited, { url: current, status, headers });
      } finally {
        discard(body);
        limited.destroy();
      }
    }
  } catch (error) {
    throw classify(error, urlHost(current), timeout.signal.aborted, policy);
  } finally {
    clearTimeout(timer);
    agents.destroy();
  }
}
