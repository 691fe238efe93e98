/** The API as the console uses it: bearer key, JSON, a timeout on every call, errors with their code. */

const TIMEOUT_MS = 15000;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

/** The API's base URL: config.json's `api_url`, or this page's origin when it names none. */
export async function loadApiBase(location = window.location) {
  let configured = "";
  try {
    const response = await fetch("./config.json", {
      cache: "no-cache",
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    if (response.ok) {
      const config = await response.json();
      if (typeof config?.api_url === "string") configured = config.api_url.trim();
    }
  } catch {
    // No readable config.json: the API is this page's origin.
  }
  if (configured === "") return location.origin;
  const url = new URL(configured, location.href);
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new Error(`config.json: api_url must be an http(s) URL, not ${url.protocol}`);
  }
  return url.origin + url.pathname.replace(/\/+$/, "");
}

export function createApi(base, getKey) {
  async function call(method, path, body) {
    const headers = { authorization: `Bearer ${getKey()}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    let response;
    try {
      response = await fetch(`${base}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (error) {
      const reason = error?.name === "TimeoutError" ? `no answer in ${TIMEOUT_MS / 1000} s` : "network error";
      throw new ApiError(0, "NETWORK", `${method} ${path}: ${reason}`);
    }
    const text = await response.text();
    let parsed;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (response.ok) return parsed;
    if (parsed?.error?.code) {
      throw new ApiError(response.status, String(parsed.error.code), String(parsed.error.message ?? ""));
    }
    // API Gateway's own answers (the authorizer's 401/403) carry only `message`.
    if (response.status === 401 || response.status === 403) {
      throw new ApiError(
        response.status,
        "API_KEY_REFUSED",
        `The API key was refused (${response.status} ${parsed?.message ?? response.statusText}).`,
      );
    }
    throw new ApiError(
      response.status,
      `HTTP_${response.status}`,
      String(parsed?.message ?? response.statusText),
    );
  }
  const id = (value) => encodeURIComponent(value);
  return {
    listJobs: ({ status, cursor, limit = 25 } = {}) => {
      const query = new URLSearchParams({ limit: String(limit) });
      if (status) query.set("status", status);
      if (cursor) query.set("cursor", cursor);
      return call("GET", `/v1/jobs?${query}`);
    },
    getJob: (jobId) => call("GET", `/v1/jobs/${id(jobId)}`),
    notifications: (jobId) => call("GET", `/v1/jobs/${id(jobId)}/notifications`),
    replay: (jobId) => call("POST", `/v1/jobs/${id(jobId)}/notifications/replay`),
    webhook: () => call("GET", "/v1/webhook"),
    setWebhookUrl: (url) => call("PUT", "/v1/webhook", { url }),
    rotateSecret: () => call("POST", "/v1/webhook/secret/rotate"),
  };
}
