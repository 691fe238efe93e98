import { describe, expect, it } from "vitest";
import { OPERATIONS, operationPath } from "../../packages/client/src/client.ts";
import { InvalidInputError } from "../../packages/client/src/errors.ts";
import { ROUTES } from "../../shared/http/routes.ts";

describe("the client's routes", () => {
  it("are the server's: every API route by its operation id, with the same method and path", () => {
    const apiRoutes = ROUTES.filter((route) => route.servedBy === "Api");
    expect(Object.keys(OPERATIONS).sort()).toEqual(apiRoutes.map((route) => route.operationId).sort());
    for (const route of apiRoutes) {
      const operation = OPERATIONS[route.operationId];
      if (operation === null) continue;
      expect({ id: route.operationId, ...operation }).toEqual({
        id: route.operationId,
        method: route.method,
        path: route.path,
      });
    }
  });

  it("fill each path parameter as one encoded segment, and refuse a missing one", () => {
    expect(operationPath("getJob", { id: "01JOB" })).toBe("/v1/jobs/01JOB");
    expect(operationPath("cancelJob", { id: "../api-keys/x?y" })).toBe(
      "/v1/jobs/..%2Fapi-keys%2Fx%3Fy/cancel",
    );
    expect(() => operationPath("getJob", {})).toThrow(InvalidInputError);
    expect(() => operationPath("revokeApiKey", { id: "" })).toThrow(InvalidInputError);
  });
});
