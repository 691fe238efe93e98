/**
 * Connections to addresses someone else chose (provider outputs, client webhooks), opened only to
 * addresses the address policy (`shared/domain/address-policy.ts`) allows. The check runs in the
 * connector, at connection time: the name is resolved there, all its addresses are checked, and the
 * socket is opened to the checked address itself, so a DNS answer that changes between a check and a
 * connect (rebinding) cannot slip through.
 *
 * Over `node:http`: the connector is the `createConnection` of an `http.Agent` (`SafeAgent`); see
 * `request.ts` for why not undici.
 */
import http, { type ClientRequestArgs } from "node:http";
import net, { type Socket } from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { type AddressPolicy, ipFamily, isAddressAllowed, normaliseIp } from "../../domain/address-policy.ts";
import { DownloadRefused } from "../../domain/downloads.ts";
import { type LookupAddress, systemLookup } from "./dns.ts";
import { connectTimeoutError } from "./request.ts";

/** Resolves a host name to all its addresses (like `dns.promises.lookup(name, { all: true })`). */
export type ResolveHost = (hostname: string) => Promise<LookupAddress[]>;

/** What the connector needs of a policy: which addresses, and how long a connection may take to open. */
export type ConnectPolicy = Pick<AddressPolicy, "mode"> & { timeoutMs: number };

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
export function createGuardedConnector(policy: ConnectPolicy, options: SafeConnectOptions = {}): Connector {
  const base = options.transport ?? directTransport(Math.min(policy.timeoutMs, 10_000));
  const resolve = options.resolve ?? systemLookup;
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
          ...(connectOptions.protocol === "https:" && ipFamily(hostname) === 0
            ? { servername: connectOptions.servername ?? hostname }
            : {}),
        },
        callback,
      );
    };
    if (ipFamily(hostname) !== 0) {
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
export function createSafeAgent(policy: ConnectPolicy, options: SafeConnectOptions = {}): SafeAgent {
  return new SafeAgent(createGuardedConnector(policy, options), {
    keepAlive: true,
    timeout: 4_000,
    maxSockets: 4,
  });
}
