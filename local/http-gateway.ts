import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { APIGatewayProxyEventV2 } from "aws-lambda";
import type { LocalFunction } from "./lambda-runtime.ts";

/** API Gateway HTTP APIs refuse bodies over 10 MB before any function runs. */
const GATEWAY_MAX_BODY_BYTES = 10 * 1024 * 1024;

export interface GatewayRoute {
  routeKey: string;
  function: LocalFunction;
  authorizer?: { function: LocalFunction; identitySource: string[]; ttlSeconds: number };
}

/** An HTTP API's CorsConfiguration, as the CloudFormation template gives it. */
export interface GatewayCors {
  AllowOrigins?: string[];
  AllowMethods?: string[];
  AllowHeaders?: string[];
  ExposeHeaders?: string[];
  AllowCredentials?: boolean;
  MaxAge?: number;
}

interface CompiledRoute extends GatewayRoute {
  method: string;
  segments: string[];
  paramCount: number;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const TEXT_TYPES = /^(application\/(json|.*\+json|xml|x-www-form-urlencoded)|text\/)/i;

/**
 * A local stand-in for API Gateway (HTTP API, payload format 2.0): routes from the synthesized
 * template, the Lambda authorizer with its result cache, and the same request and response mapping,
 * so the handlers cannot tell it from the real thing.
 */
export class HttpGateway {
  private server: Server | undefined;
  private routes: CompiledRoute[] = [];
  private defaultRoute: GatewayRoute | undefined;
  private readonly sites: Array<
    (req: IncomingMessage, res: ServerResponse, pathname: string) => Promise<boolean>
  > = [];
  private cors: GatewayCors | null = null;
  private readonly authorizerCache = new Map<
    string,
    { expires: number; context: Record<string, unknown> | null }
  >();

  constructor(routes: GatewayRoute[] = []) {
    this.setRoutes(routes);
  }

  /**
   * Replaces the routes. The local stack listens before it provisions (so the template's references
   * to the API's URL resolve to the real local address) and routes once the functions exist.
   */
  setRoutes(routes: GatewayRoute[]): void {
    this.defaultRoute = routes.find((r) => r.routeKey === "$default");
    this.routes = routes
      .filter((r) => r.routeKey !== "$default")
      .map((route) => {
        const [method = "", path = ""] = route.routeKey.split(" ");
        const segments = path.split("/").filter(Boolean);
        return { ...route, method, segments, paramCount: segments.filter((s) => s.startsWith("{")).length };
      })
      // API Gateway prefers the most specific route: fewer path variables first.
      .sort((a, b) => a.paramCount - b.paramCount);
  }

  /**
   * Serves static files beside the API (locally only: in AWS the console is a static site of its
   * own, docs/deploy.md). Checked before the routes, so its prefix must be no API path.
   */
  mountStatic(site: (req: IncomingMessage, res: ServerResponse, pathname: string) => Promise<boolean>): void {
    this.sites.push(site);
  }

  /**
   * CORS as API Gateway does it with a CorsConfiguration: it answers the preflights itself, before any
   * route, and adds the headers to every answer to an allowed origin (what functions say is ignored).
   */
  setCors(cors: GatewayCors | null): void {
    this.cors = cors;
  }

  async listen(port: number, host = "127.0.0.1"): Promise<string> {
    this.server = await listenOn(port, host, (req, res) => this.handle(req, res));
    const address = this.server.address() as AddressInfo;
    return `http://${host}:${address.port}`;
  }

  async close(): Promise<void> {
    if (this.server) await closeServer(this.server);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://localhost");
    for (const site of this.sites) if (await site(req, res, url.pathname)) return;
    const method = (req.method ?? "GET").toUpperCase();
    if (this.cors && this.applyCors(this.cors, req, res, method)) return;
    const body = await readBody(req, GATEWAY_MAX_BODY_BYTES);
    if (body === null) return send(res, 413, { message: "Request Entity Too Large" });

    const match = this.match(method, url.pathname);
    if (!match) return send(res, 404, { message: "Not Found" });

    const event = buildEvent(req, url, method, body, match.route.routeKey, match.params);
    if (match.route.authorizer) {
      const outcome = await this.authorize(match.route.authorizer, event);
      if (outcome === "unauthorized") return send(res, 401, { message: "Unauthorized" });
      if (outcome === "forbidden") return send(res, 403, { message: "Forbidden" });
      (event.requestContext as unknown as Record<string, unknown>).authorizer = { lambda: outcome };
    }

    let result: unknown;
    try {
      result = await match.route.function.invoke(event);
    } catch (error) {
      console.error(`${match.route.routeKey}: function error`, error);
      return send(res, 500, { message: "Internal Server Error" });
    }
    writeLambdaResult(res, result, this.cors !== null);
  }

  private match(
    method: string,
    path: string,
  ): { route: GatewayRoute; params: Record<string, string> } | null {
    const parts = path.split("/").filter(Boolean);
    for (const route of this.routes) {
      if (route.method !== method && route.method !== "ANY") continue;
      if (route.segments.length !== parts.length) continue;
      const params: Record<string, string> = {};
      const ok = route.segments.every((segment, i) => {
        const part = parts[i] as string;
        if (segment.startsWith("{")) {
          params[segment.slice(1, -1)] = part;
          return true;
        }
        return segment === part;
      });
      if (ok) return { route, params };
    }
    return this.defaultRoute ? { route: this.defaultRoute, params: {} } : null;
  }

  /** Adds the CORS headers for an allowed origin; true when this was a preflight, now answered. */
  private applyCors(cors: GatewayCors, req: IncomingMessage, res: ServerResponse, method: string): boolean {
    const origin = req.headers.origin;
    const allowed = origin !== undefined && (cors.AllowOrigins ?? []).some((o) => o === "*" || o === origin);
    const preflight =
      method === "OPTIONS" && origin !== undefined && !!req.headers["access-control-request-method"];
    if (allowed) {
      res.setHeader("access-control-allow-origin", origin);
      res.setHeader("vary", "Origin");
      if (cors.AllowCredentials) res.setHeader("access-control-allow-credentials", "true");
      if (!preflight && cors.ExposeHeaders?.length) {
        res.setHeader("access-control-expose-headers", cors.ExposeHeaders.join(","));
      }
    }
    if (!preflight) return false;
    if (allowed) {
      if (cors.AllowMethods?.length)
        res.setHeader("access-control-allow-methods", cors.AllowMethods.join(","));
      if (cors.AllowHeaders?.length)
        res.setHeader("access-control-allow-headers", cors.AllowHeaders.join(","));
      if (cors.MaxAge !== undefined) res.setHeader("access-control-max-age", String(cors.MaxAge));
    }
    req.resume();
    res.writeHead(204);
    res.end();
    return true;
  }

  /** Simple-response Lambda authorizer with API Gateway's cache keyed on the identity source values. */
  private async authorize(
    authorizer: NonNullable<GatewayRoute["authorizer"]>,
    event: APIGatewayProxyEventV2,
  ): Promise<Record<string, unknown> | "unauthorized" | "forbidden"> {
    const identity = authorizer.identitySource.map((source) => {
      const name = source.replace(/^\$request\.header\./i, "").toLowerCase();
      return event.headers[name];
    });
    if (identity.some((value) => value === undefined || value === "")) return "unauthorized";
    const cacheKey = identity.join("\u0000");
    const cached = this.authorizerCache.get(cacheKey);
    let context: Record<string, unknown> | null;
    if (cached && cached.expires > Date.now()) {
      context = cached.context;
    } else {
      const result = (await authorizer.function.invoke({
        version: "2.0",
        type: "REQUEST",
        routeArn: `arn:aws:execute-api:us-east-1:000000000000:local/$default/${event.routeKey.replace(" ", "")}`,
        identitySource: identity,
        routeKey: event.routeKey,
        rawPath: event.rawPath,
        rawQueryString: event.rawQueryString,
        headers: event.headers,
        queryStringParameters: event.queryStringParameters,
        pathParameters: event.pathParameters,
        requestContext: event.requestContext,
      })) as { isAuthorized?: boolean; context?: Record<string, unknown> } | undefined;
      context = result?.isAuthorized ? (result.context ?? {}) : null;
      if (authorizer.ttlSeconds > 0) {
        this.authorizerCache.set(cacheKey, { expires: Date.now() + authorizer.ttlSeconds * 1000, context });
      }
    }
    return context ?? "forbidden";
  }
}

/** An HTTP server on `host:port` whose handler failures answer 500 (shared with the function URL stand-in). */
export async function listenOn(
  port: number,
  host: string,
  handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
): Promise<Server> {
  const server = createServer((req, res) => {
    handle(req, res).catch((error) => {
      console.error("gateway failure", error);
      if (!res.headersSent) send(res, 500, { message: "Internal Server Error" });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

export async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** The whole body, or null past `maxBytes` (the rest is drained). */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).byteLength;
    if (size > maxBytes) {
      req.resume();
      return null;
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export function buildEvent(
  req: IncomingMessage,
  url: URL,
  method: string,
  body: Buffer,
  routeKey: string,
  pathParameters: Record<string, string>,
): APIGatewayProxyEventV2 {
  const headers: Record<string, string> = {};
  const cookies: string[] = [];
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    if (name === "cookie") cookies.push(...String(value).split(/;\s*/));
    else headers[name] = Array.isArray(value) ? value.join(",") : value;
  }
  // No prototype: `?__proto__=x` or `?constructor=x` must arrive as own keys, as API Gateway's JSON has them.
  const query: Record<string, string> = Object.create(null);
  for (const [name, value] of url.searchParams)
    query[name] = name in query ? `${query[name]},${value}` : value;

  let text: string | undefined;
  let isBase64Encoded = false;
  if (body.byteLength > 0) {
    const textual = TEXT_TYPES.test(headers["content-type"] ?? "");
    try {
      text = textual ? utf8.decode(body) : undefined;
    } catch {
      text = undefined;
    }
    if (text === undefined) {
      text = body.toString("base64");
      isBase64Encoded = true;
    }
  }
  const now = new Date();
  return {
    version: "2.0",
    routeKey,
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    ...(cookies.length > 0 && { cookies }),
    headers,
    ...(Object.keys(query).length > 0 && { queryStringParameters: query }),
    ...(Object.keys(pathParameters).length > 0 && { pathParameters }),
    requestContext: {
      accountId: "000000000000",
      apiId: "local",
      domainName: headers.host ?? "localhost",
      domainPrefix: "local",
      http: {
        method,
        path: url.pathname,
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp: req.socket.remoteAddress ?? "127.0.0.1",
        userAgent: headers["user-agent"] ?? "",
      },
      requestId: randomUUID(),
      routeKey,
      stage: "$default",
      time: now.toUTCString(),
      timeEpoch: now.getTime(),
    },
    ...(text !== undefined && { body: text }),
    isBase64Encoded,
  };
}

/** `dropCors`: the API has a CORS configuration, so the gateway's CORS headers stand, not the function's. */
export function writeLambdaResult(res: ServerResponse, result: unknown, dropCors = false): void {
  // Payload 2.0: an object with statusCode is a full response; anything else is a 200 JSON body.
  if (result && typeof result === "object" && "statusCode" in result) {
    const r = result as {
      statusCode: number;
      headers?: Record<string, string>;
      body?: string;
      isBase64Encoded?: boolean;
    };
    const headers = Object.entries(r.headers ?? {}).filter(
      ([name]) => !(dropCors && name.toLowerCase().startsWith("access-control-")),
    );
    res.writeHead(r.statusCode, Object.fromEntries(headers));
    res.end(r.body === undefined ? undefined : Buffer.from(r.body, r.isBase64Encoded ? "base64" : "utf8"));
    return;
  }
  const body = typeof result === "string" ? result : JSON.stringify(result ?? null);
  res.writeHead(200, { "content-type": "application/json" });
  res.end(body);
}

export function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}
