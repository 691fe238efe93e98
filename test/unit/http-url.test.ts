import { describe, expect, it } from "vitest";
import { ValidationError } from "../../shared/domain/errors.ts";
import { httpUrlProblem, normaliseHttpUrl } from "../../shared/domain/http-url.ts";
import { parseOrThrow } from "../../shared/domain/validation.ts";
import { submitJobBodySchema } from "../../shared/schemas/api.ts";
import { validJobRequest } from "../support/requests.ts";

/**
 * URLs that parsers read differently, or that the WHATWG parser rewrites before it reads the host:
 * each is refused at submit, in every URL field, with the field named.
 */
const AMBIGUOUS: Array<[label: string, url: string]> = [
  [
    "backslash before @ (WHATWG: cdn.example.com, RFC 3986: 169.254.169.254)",
    "https://cdn.example.com\\@169.254.169.254/x.png",
  ],
  ["backslashes for the slashes", "https:\\\\cdn.example.com/x.png"],
  ["a slash and a backslash", "https:/\\cdn.example.com/x.png"],
  ["a backslash in the path", "https://cdn.example.com/a\\b.png"],
  ["a tab in the host", "https://cdn.exa\tmple.com/x.png"],
  ["a newline after the host", "https://cdn.example.com\n/x.png"],
  ["a carriage return in the host", "https://cdn.example.com\r.evil.example/x.png"],
  ["a space in the path", "https://cdn.example.com/x y.png"],
  ["a NUL at the end", "https://cdn.example.com/x.png\u0000"],
  ["a DEL in the host", "https://cdn.example\u007f.com/x.png"],
  ["userinfo", "https://user@cdn.example.com/x.png"],
  ["userinfo naming the host we would check", "https://cdn.example.com@169.254.169.254/x.png"],
  ["an empty userinfo", "https://@cdn.example.com/x.png"],
  ["an empty user and password", "https://:@cdn.example.com/x.png"],
  ["a percent-encoded @ in the host", "https://cdn.example.com%40169.254.169.254/x.png"],
  ["a percent-encoded dot in the host", "https://cdn.example.com%2e/x.png"],
  ["a percent-encoded letter in the host", "https://%63dn.example.com/x.png"],
  ["no host before the path (https:///host)", "https:///169.254.169.254/x.png"],
  ["one slash (https:/host)", "https:/cdn.example.com/x.png"],
  ["no slashes (https:host)", "https:cdn.example.com/x.png"],
  ["a numeric shorthand host", "https://0x7f.1/x.png"],
  ["full-width letters in the host", "https://\uff43\uff44\uff4e.example.com/x.png"],
  ["a Kelvin sign that IDNA maps to k", "https://\u212aeep.example.com/x.png"],
  ["a non-ASCII host (IDNA rewrites it)", "https://b\u00fccher.example/x.png"],
  ["an empty port", "https://cdn.example.com:/x.png"],
  ["a port with a leading zero", "https://cdn.example.com:0443/x.png"],
  ["a non-canonical IPv6 literal", "https://[0:0:0:0:0:ffff:5db8:d70e]/x.png"],
  ["over 2048 characters", `https://cdn.example.com/${"a".repeat(2048)}.png`],
];

/** Every URL field of a job body, and the body that puts a URL in it. */
const FIELDS: Array<[field: string, body: (url: string) => Record<string, unknown>]> = [
  ["init_image", (url) => validJobRequest({ init_image: url })],
  ["control_image", (url) => validJobRequest({ control_image: url })],
  ["mask_image", (url) => validJobRequest({ mask_image: url })],
  ["ip_adapter_image", (url) => validJobRequest({ ip_adapter_id: "ip-adapter_sd15", ip_adapter_image: url })],
  ["webhook", (url) => validJobRequest({ webhook: url })],
];

const refusal = (body: unknown): ValidationError => {
  try {
    parseOrThrow(submitJobBodySchema, body, "The job request");
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return error as ValidationError;
  }
  throw new Error("the body was accepted");
};

describe("ambiguous URLs are refused at submit", () => {
  describe.each(FIELDS)("in %s", (field, body) => {
    it.each(AMBIGUOUS)("%s", (_, url) => {
      const error = refusal(body(url));
      expect(error.code).toBe("VALIDATION_FAILED");
      expect(error.details.map((d) => d.path)).toEqual([field]);
    });
  });

  it.each(AMBIGUOUS)("httpUrlProblem says what is wrong: %s", (_, url) => {
    expect(httpUrlProblem(url, 2048)).toEqual(expect.any(String));
  });

  it("says why, naming what the parser read", () => {
    expect(httpUrlProblem("https://cdn.example.com\\@169.254.169.254/x.png", 2048)).toMatch(/backslash/);
    expect(httpUrlProblem("https://:@cdn.example.com/x.png", 2048)).toMatch(/user info/);
    expect(httpUrlProblem("https://cdn.exa\tmple.com/x.png", 2048)).toMatch(/whitespace or control/);
    expect(httpUrlProblem("https://cdn.example.com%2e/x.png", 2048)).toMatch(/cdn\.example\.com\./);
    expect(httpUrlProblem("https:///169.254.169.254/x.png", 2048)).toMatch(/host right after/);
  });
});

describe("unambiguous URLs are accepted and given on as the parser reads them", () => {
  it.each(
    [
      ["https://cdn.example.com/x.png", "https://cdn.example.com/x.png"],
      ["http://127.0.0.1:9/edges.png", "http://127.0.0.1:9/edges.png"],
      ["upper-case scheme and host", "HTTPS://CDN.Example.COM/x.png", "https://cdn.example.com/x.png"],
      ["the default port", "https://cdn.example.com:443/x.png", "https://cdn.example.com/x.png"],
      ["http's default port", "http://cdn.example.com:80/x.png", "http://cdn.example.com/x.png"],
      ["no path", "https://cdn.example.com", "https://cdn.example.com/"],
      [
        "a query and no path",
        "https://cdn.example.com?@169.254.169.254/",
        "https://cdn.example.com/?@169.254.169.254/",
      ],
      [
        "a fragment and no path",
        "https://cdn.example.com#@169.254.169.254/",
        "https://cdn.example.com/#@169.254.169.254/",
      ],
      [
        "@ in the path",
        "https://cdn.example.com/@169.254.169.254/x.png",
        "https://cdn.example.com/@169.254.169.254/x.png",
      ],
      ["dot segments", "https://cdn.example.com/a/../b/./x.png", "https://cdn.example.com/b/x.png"],
      [
        "non-ASCII in the path",
        "https://cdn.example.com/caf\u00e9.png",
        "https://cdn.example.com/caf%C3%A9.png",
      ],
      ["a punycode host", "https://xn--bcher-kva.example/x.png", "https://xn--bcher-kva.example/x.png"],
      ["a trailing dot", "https://cdn.example.com./x.png", "https://cdn.example.com./x.png"],
      [
        "an IPv6 literal",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/x",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/x",
      ],
      ["an explicit port", "https://cdn.example.com:8443/x.png", "https://cdn.example.com:8443/x.png"],
    ].map((row) => (row.length === 2 ? [row[0], row[0], row[1]] : row) as [string, string, string]),
  )("%s", (_, url, href) => {
    expect(httpUrlProblem(url, 2048)).toBeNull();
    expect(normaliseHttpUrl(url)).toBe(href);
    for (const [field, body] of FIELDS) {
      const parsed = parseOrThrow(submitJobBodySchema, body(url), "The job request") as Record<
        string,
        unknown
      >;
      expect(parsed[field]).toBe(href);
    }
  });

  it("leaves base64 data and upload refs as they are", () => {
    const png =
      "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
    const upload = "upload:0b7c6f1e-2a3d-4e5f-8a9b-0c1d2e3f4a5b";
    const parsed = parseOrThrow(
      submitJobBodySchema,
      validJobRequest({ control_image: `data:image/png;base64,${png}`, init_image: upload, base64: "yes" }),
      "The job request",
    );
    expect(parsed.control_image).toBe(`data:image/png;base64,${png}`);
    expect(parsed.init_image).toBe(upload);
  });
});
