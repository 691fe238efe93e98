import { MethodNotAllowedError, NotFoundError } from "../domain/errors.ts";

export interface RouteMatch<H> {
  handler: H;
  params: Record<string, string>;
}

interface Route<H> {
  method: string;
  pattern: string;
  segments: string[];
  handler: H;
}

/**
 * A tiny method+path router for the API function. API Gateway already routes the known paths;
 * this exists so the `$default` route can answer 404 and 405 in the API's own error format.
 */
export class Router<H> {
  private readonly routes: Route<H>[] = [];

  add(method: string, pattern: string, handler: H): this {
    this.routes.push({ method, pattern, segments: pattern.split("/").filter(Boolean), handler });
    return this;
  }

  match(method: string, path: string): RouteMatch<H> {
    const parts = path.split("/").filter(Boolean);
    const allowed: string[] = [];
    for (const route of this.routes) {
      const params = matchSegments(route.segments, parts);
      if (!params) continue;
      if (route.method === method) return { handler: route.handler, params };
      allowed.push(route.method);
    }
    if (allowed.length > 0) throw new MethodNotAllowedError(method, path, allowed);
    throw new NotFoundError("ROUTE_NOT_FOUND", `No route ${method} ${path.slice(0, 200)}.`);
  }
}

function matchSegments(pattern: string[], parts: string[]): Record<string, string> | null {
  if (pattern.length !== parts.length) return null;
  const params: Record<string, string> = {};
  for (const [index, segment] of pattern.entries()) {
    const part = parts[index] as string;
    if (segment.startsWith("{") && segment.endsWith("}")) {
      try {
        params[segment.slice(1, -1)] = decodeURIComponent(part);
      } catch {
        return null;
      }
    } else if (segment !== part) {
      return null;
    }
  }
  return params;
}
