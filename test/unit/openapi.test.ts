import { Validator } from "@seriousme/openapi-schema-validator";
import openapiTS, { astToString } from "openapi-typescript";
import { beforeAll, describe, expect, it } from "vitest";
import {
  ERROR_CODES,
  type ErrorCode,
  MethodNotAllowedError,
  UnauthorizedError,
  UnavailableError,
} from "../../shared/domain/errors.ts";
import { NOTIFICATION_TYPES } from "../../shared/domain/events.ts";
import { errorToHttp, httpStatusOf } from "../../shared/http/errors.ts";
import { buildOpenApiDocument } from "../../shared/http/openapi.ts";
import { pathParams, ROUTES, routeKey } from "../../shared/http/routes.ts";
import { submitJobBodySchema } from "../../shared/schemas/api.ts";
import { typeErrors } from "../support/typecheck.ts";

/** The document as a client receives it (JSON, no undefined). */
const doc = JSON.parse(JSON.stringify(buildOpenApiDocument())) as any;

type Operation = {
  operationId?: string;
  parameters?: { name: string; in: string; required: boolean; schema: any }[];
  requestBody?: { content: Record<string, { schema: any }> };
  responses: Record<string, { headers?: Record<string, unknown>; content?: Record<string, { schema: any }> }>;
  security?: unknown[];
};
const METHODS = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];
const operations = (): [string, Operation][] =>
  Object.entries(doc.paths as Record<string, Record<string, Operation>>).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([method]) => METHODS.includes(method))
      .map(([method, op]) => [`${method.toUpperCase()} ${path}`, op] as [string, Operation]),
  );
const operationOf = (key: string): Operation => {
  const found = operations().find(([k]) => k === key);
  if (!found) throw new Error(`no operation ${key}`);
  return found[1];
};
const body = (op: Operation) => op.requestBody?.content["application/json"]?.schema;

/** A valid job request with nothing optional. */
const MINIMAL_JOB = {
  model_id: "sd15",
  controlnet_model: "canny",
  controlnet_type: "canny",
  control_image: "https://example.com/control.png",
};
const PNG_BASE64 = Buffer.from("89504e470d0a1a0a0000000d49484452", "hex").toString("base64");

/**
 * Whether a JSON Schema accepts `value`, for the keywords of string, number and object rules this
 * document uses (type, pattern, length, bounds, enum, const, anyOf, not, maxProperties, required,
 * allOf, dependentRequired); any other keyword fails the test rather than being ignored.
 */
function accepts(schema: any, value: unknown): boolean {
  const known = new Set([
    "type",
    "pattern",
    "maxLength",
    "minLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "enum",
    "const",
    "anyOf",
    "allOf",
    "not",
    "maxProperties",
    "required",
    "dependentRequired",
    "description",
    "format",
  ]);
  const unknown = Object.keys(schema).filter((key) => !known.has(key));
  if (unknown.length > 0) throw new Error(`accepts() does not evaluate ${unknown.join(", ")}`);
  const s = schema as Record<string, any>;
  if (s.type === "string" && typeof value !== "string") return false;
  if (s.type === "number" && typeof value !== "number") return false;
  if (s.type === "object" && (typeof value !== "object" || value === null)) return false;
  if (typeof value === "string") {
    if (s.pattern !== undefined && !new RegExp(s.pattern, "u").test(value)) return false;
    if (s.maxLength !== undefined && [...value].length > s.maxLength) return false;
    if (s.minLength !== undefined && [...value].length < s.minLength) return false;
  }
  if (typeof value === "number") {
    if (s.minimum !== undefined && value < s.minimum) return false;
    if (s.maximum !== undefined && value > s.maximum) return false;
    if (s.exclusiveMinimum !== undefined && value <= s.exclusiveMinimum) return false;
    if (s.exclusiveMaximum !== undefined && value >= s.exclusiveMaximum) return false;
  }
  if (typeof value === "object" && value !== null) {
    const keys = Object.keys(value);
    if (s.maxProperties !== undefined && keys.length > s.maxProperties) return false;
    if (s.required && !s.required.every((key: string) => keys.includes(key))) return false;
    for (const [key, needs] of Object.entries((s.dependentRequired ?? {}) as Record<string, string[]>)) {
      if (keys.includes(key) && !needs.every((need) => keys.includes(need))) return false;
    }
  }
  if (s.enum && !s.enum.includes(value)) return false;
  if ("const" in s && s.const !== value) return false;
  if (s.anyOf && !s.anyOf.some((branch: unknown) => accepts(branch, value))) return false;
  if (s.allOf && !s.allOf.every((branch: unknown) => accepts(branch, value))) return false;
  if (s.not && accepts(s.not, value)) return false;
  return true;
}

/** A schema's own keywords, without `properties` and the others accepts() leaves to the caller. */
const own = (schema: any, ...drop: string[]) =>
  Object.fromEntries(Object.entries(schema).filter(([key]) => !drop.includes(key)));

describe("the OpenAPI document", () => {
  it("is a valid OpenAPI 3.1 document (@seriousme/openapi-schema-validator)", async () => {
    const validator = new Validator();
    const result = await validator.validate(doc);
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
  });

  it("has exactly the route table's operations, each with its operationId", () => {
    const documented = operations().map(([key, op]) => [key, op.operationId]);
    const declared = ROUTES.map((route) => [routeKey(route), route.operationId]);
    expect(documented.sort()).toEqual(declared.sort());
    const ids = ROUTES.map((route) => route.operationId);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("declares where the API is served and how it authenticates, per operation", () => {
    expect(doc.servers).toEqual([expect.objectContaining({ url: "/" })]);
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: "http", scheme: "bearer" });
    for (const route of ROUTES) {
      expect(operationOf(routeKey(route)).security, route.operationId).toEqual(
        route.auth === "apiKey" ? [{ bearer: [] }] : [],
      );
    }
  });

  it("documents every path parameter of every route", () => {
    for (const route of ROUTES) {
      const params = operationOf(routeKey(route)).parameters ?? [];
      const inPath = params.filter((p) => p.in === "path");
      expect(
        inPath.map((p) => p.name),
        route.operationId,
      ).toEqual(pathParams(route.path));
      for (const param of inPath)
        expect(param, `${route.operationId} ${param.name}`).toMatchObject({
          required: true,
          description: expect.any(String),
        });
    }
  });

  it("lists each route's error codes (and INTERNAL) as an enum under the status each answers", () => {
    for (const route of ROUTES) {
      const op = operationOf(routeKey(route));
      const documented: ErrorCode[] = [];
      for (const [status, response] of Object.entries(op.responses)) {
        if (Number(status) < 400) continue;
        const schema = response.content?.["application/json"]?.schema;
        expect(schema.allOf[0], `${route.operationId} ${status}`).toEqual({
          $ref: "#/components/schemas/Error",
        });
        const codes = schema.allOf[1].properties.error.properties.code.enum as ErrorCode[];
        for (const code of codes) expect(httpStatusOf(code), code).toBe(Number(status));
        documented.push(...codes);
      }
      expect(documented.sort(), route.operationId).toEqual(
        [...new Set<ErrorCode>([...route.errors, "INTERNAL"])].sort(),
      );
    }
    expect(doc.components.schemas.Error.properties.error.properties.code.enum).toEqual(ERROR_CODES);
  });

  it("declares the response headers the API sends", () => {
    for (const status of ["200", "202"]) {
      const submitted = operationOf("POST /v1/jobs").responses[status];
      expect(Object.keys(submitted?.headers ?? {}), status).toEqual([
        "Location",
        "Idempotent-Replayed",
        "Preference-Applied",
      ]);
    }
    expect(
      (operationOf("POST /v1/jobs").parameters ?? []).map(
        (p: { name: string; in: string }) => `${p.in}:${p.name}`,
      ),
    ).toEqual(["header:Idempotency-Key", "header:Prefer"]);
    // Each documented error header is one errorToHttp sends with an error of that status.
    const sent = {
      "401": errorToHttp(new UnauthorizedError()).headers,
      "503": errorToHttp(new UnavailableError("STORE_UNAVAILABLE", "later")).headers,
    };
    for (const [status, headers] of Object.entries(sent)) {
      const documented = Object.keys(operationOf("POST /v1/jobs").responses[status]?.headers ?? {});
      expect(documented.length, status).toBeGreaterThan(0);
      expect(Object.keys(headers ?? {})).toEqual(
        expect.arrayContaining(documented.map((name) => name.toLowerCase())),
      );
    }
    expect(errorToHttp(new MethodNotAllowedError("PUT", "/v1/jobs", ["GET", "POST"])).headers).toMatchObject({
      allow: "GET, POST",
    });
  });

  it("has the job.* notifications as webhooks, each payload carrying its type and the job", () => {
    expect(Object.keys(doc.webhooks)).toEqual([...NOTIFICATION_TYPES]);
    for (const type of NOTIFICATION_TYPES) {
      const post = doc.webhooks[type].post;
      expect(post.parameters.map((p: { name: string }) => p.name)).toEqual([
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
      ]);
      const ref = post.requestBody.content["application/json"].schema.$ref as string;
      const payload = doc.components.schemas[ref.replace("#/components/schemas/", "")];
      expect(payload.properties.type).toMatchObject({ const: type });
      expect(payload.properties.data.$ref).toBe("#/components/schemas/Job");
      expect(payload.required).toEqual(["type", "timestamp", "data"]);
    }
  });

  it("shows the request rules the server enforces", () => {
    const request = body(operationOf("POST /v1/jobs"));
    const props = request.properties;
    expect(props.metadata).toMatchObject({ maxProperties: 20 });
    expect(props.metadata.propertyNames.not.enum).toEqual(
      expect.arrayContaining(["constructor", "__proto__"]),
    );
    expect(props.webhook).toMatchObject({ format: "uri", maxLength: 2048, pattern: expect.any(String) });
    expect(props.width).toMatchObject({ minimum: 64, maximum: 1024 });
    expect(props).not.toHaveProperty("key");
    expect(request.description).toContain("controlnet_type is one of the controlnet_model entries");
    const settings = body(operationOf("PUT /v1/webhook"));
    expect(settings.properties.url.anyOf[0]).toMatchObject({ format: "uri", pattern: expect.any(String) });
    const upload = body(operationOf("POST /v1/uploads"));
    expect(upload.properties.content_type.enum).toEqual(["image/png", "image/jpeg", "image/webp"]);
  });

  it("accepts every value the server accepts, and refuses what its rules refuse", () => {
    const request = body(operationOf("POST /v1/jobs"));
    const serverAccepts = (fields: Record<string, unknown>) =>
      submitJobBodySchema.safeParse({ ...MINIMAL_JOB, base64: "yes", ...fields }).success;
    const fieldAccepts = (field: string, value: unknown) =>
      accepts(own(request.properties[field], "propertyNames", "additionalProperties"), value);

    const adapter = { ip_adapter_id: "ip-adapter_sd15" };
    const twoModels = { controlnet_model: "canny,depth" };
    const cases: [field: string, value: unknown, server: boolean, others?: Record<string, unknown>][] = [
      ["control_image", "https://example.com/a.png", true],
      ["control_image", "HTTP://example.com/a.png", true],
      ["control_image", `upload:${"0".repeat(8)}-0000-0000-0000-${"0".repeat(12)}`, true],
      ["control_image", `data:image/png;base64,${PNG_BASE64}`, true],
      ["control_image", PNG_BASE64, true],
      ["control_image", "ftp://example.com/a.png", false],
      ["control_image", "javascript:alert(1)", false],
      ["control_image", "data:text/plain;base64,aGVsbG8=", false],
      ["control_image", "upload:not-an-id", false],
      ["control_image", `https://example.com/${"a".repeat(2048)}`, false],
      ["ip_adapter_image", "https://example.com/face.png", true, adapter],
      ["ip_adapter_image", "ftp://example.com/face.png", false, adapter],
      ["webhook", "https://hooks.example.com/x", true],
      ["webhook", "ftp://hooks.example.com/x", false],
      ["webhook", "https://hooks.example.com/a b", false],
      ["webhook", "https://user@hooks.example.com/x", false],
      ["control_image", "https://cdn.example.com\\@169.254.169.254/x", false],
      ["controlnet_model", "canny, depth", true],
      ["controlnet_model", "canny,unknown", false],
      ["lora_model", "a.b-c,d_e", true],
      ["lora_model", "a b", false],
      ["controlnet_conditioning_scale", "0.5, 1", true, twoModels],
      ["controlnet_conditioning_scale", "0.5;1", false, twoModels],
      ["controlnet_conditioning_scale", 7, false],
      ["guidance_scale", 7.5, true],
      ["strength", 0, true],
      ["strength", 5e-7, false],
      ["metadata", Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, "v"])), true],
      ["metadata", Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, "v"])), false],
    ];
    for (const [field, value, server, others = {}] of cases) {
      const label = `${field}=${JSON.stringify(value).slice(0, 60)}`;
      expect(serverAccepts({ ...others, [field]: value }), `server: ${label}`).toBe(server);
      // The document refuses what the server refuses here, and never refuses what it accepts.
      expect(fieldAccepts(field, value), `document: ${label}`).toBe(server);
    }

    // Rules across fields that JSON Schema can state: the same verdicts as the server's.
    const rules = own(request, "type", "properties", "additionalProperties", "description");
    const whole: [Record<string, unknown>, boolean][] = [
      [MINIMAL_JOB, true],
      [{ ...MINIMAL_JOB, control_image: undefined, init_image: "https://example.com/i.png" }, true],
      [{ model_id: "sd15", controlnet_model: "canny", controlnet_type: "canny" }, false],
      [{ ...MINIMAL_JOB, ip_adapter_scale: 0.5 }, false],
      [{ ...MINIMAL_JOB, ip_adapter_id: "ip-adapter_sd15" }, false],
      [{ ...MINIMAL_JOB, lora_strength: 0.5 }, false],
    ];
    for (const [value, server] of whole) {
      const defined = JSON.parse(JSON.stringify(value));
      expect(submitJobBodySchema.safeParse(defined).success, JSON.stringify(defined)).toBe(server);
      expect(accepts(rules, defined), JSON.stringify(defined)).toBe(server);
    }
  });
});

describe("types generated from the document (openapi-typescript)", () => {
  let generated: string;
  beforeAll(async () => {
    generated = astToString(await openapiTS(doc));
  }, 30_000);

  const check = (code: string) =>
    typeErrors(`${generated}
type Json<T> = T extends { content: { "application/json": infer B } } ? B : never;
type JobRequest = Json<NonNullable<paths["/v1/jobs"]["post"]["requestBody"]>>;
type ListQuery = NonNullable<paths["/v1/jobs"]["get"]["parameters"]["query"]>;
type Job = components["schemas"]["Job"];
${code}`);

  it("leaves the fields with a default optional in the request, as the server does", () => {
    expect(submitJobBodySchema.parse(MINIMAL_JOB)).toMatchObject({ provider: "auto" });
    expect(
      check(`
export const minimal: JobRequest = ${JSON.stringify(MINIMAL_JOB)};
export const query: ListQuery = {};
export const withDefault: JobRequest["provider"] = undefined;`),
    ).toEqual([]);
  }, 30_000);

  it("keeps required fields required and defaulted fields present in answers", () => {
    const errors = check(`
export const missing: JobRequest = { model_id: "sd15" };
export const job: Pick<Job, "provider"> = {};
export const image: JobRequest["control_image"] = 1;
export const code: NonNullable<paths["/v1/jobs/{id}/cancel"]["post"]["responses"]["409"]["content"]>["application/json"]["error"]["code"] = "JOB_NOT_FOUND";`);
    expect(errors).toEqual([
      expect.stringContaining("missing the following properties from type"),
      expect.stringContaining("Property 'provider' is missing"),
      expect.stringContaining("Type 'number' is not assignable to type 'string'"),
      expect.stringContaining(`Type '"JOB_NOT_FOUND"' is not assignable`),
    ]);
  }, 30_000);
});
