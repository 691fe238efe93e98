/**
 * The http(s) URLs clients give us (images the provider or a GPU worker fetches, webhook endpoints)
 * must read the same to every URL parser, because we check one reading and another program may
 * connect. The WHATWG parser (Node's, ours) reads `https://cdn.example.com\@169.254.169.254/x` as
 * host cdn.example.com (a backslash ends the authority), where an RFC 3986 parser reads host
 * 169.254.169.254 (after the userinfo `…\@`); tabs and newlines are deleted before parsing, a host
 * is percent-decoded and IDNA-mapped, and so on. So a URL is refused unless its authority — what
 * comes between `//` and the first `/`, `?` or `#` — is exactly the host (and port) the WHATWG
 * parser reads, and unless it is free of what some parser rewrites: whitespace, control characters,
 * backslashes and userinfo. What passes is then forwarded as the WHATWG `href` (`normaliseHttpUrl`),
 * so the fetcher gets the very URL whose host was checked.
 */

/** A C0 control character, space or DEL: what the WHATWG parser strips, deletes or escapes. */
const hasWhitespaceOrControl = (text: string): boolean => {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code <= 0x20 || code === 0x7f) return true;
  }
  return false;
};
const SCHEME_AND_AUTHORITY = /^(https?):\/\/([^/?#]*)/i;
const DEFAULT_PORTS: Record<string, string> = { "http:": "80", "https:": "443" };

/** Lower-cases ASCII letters only: a non-ASCII letter may lower-case to an ASCII one (K, U+212A). */
const asciiLower = (text: string): string => text.replace(/[A-Z]/g, (c) => c.toLowerCase());

/**
 * What httpUrlProblem accepts, as far as a JSON Schema pattern can say it (for the OpenAPI document):
 * the scheme in any case, a host part without user info, and no whitespace, control character or
 * backslash anywhere. Looser than httpUrlProblem: how parsers read the host is no pattern.
 */
export const HTTP_URL_PATTERN =
  "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\\u0000-\\u0020\\u007F\\\\]+(?:[/?#][^\\u0000-\\u0020\\u007F\\\\]*)?$";

/** What makes `value` an unusable or ambiguous http(s) URL, or null when it is neither. */
export function httpUrlProblem(value: string, maxChars: number): string | null {
  if (value.length > maxChars) return `must be at most ${maxChars} characters`;
  if (hasWhitespaceOrControl(value))
    return "must not contain whitespace or control characters (percent-encode them)";
  if (value.includes("\\"))
    return "must not contain a backslash: URL parsers disagree on it (percent-encode it as %5C)";
  const match = SCHEME_AND_AUTHORITY.exec(value);
  if (!match) return "must be an http(s) URL (http:// or https:// and a host)";
  const authority = match[2] ?? "";
  if (authority === "") return "must name a host right after the //";
  if (authority.includes("@"))
    return "must not carry user info (user@host): URL parsers disagree on where its host starts";
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return "must be a valid http(s) URL";
  }
  const written = asciiLower(authority);
  const defaultPort = DEFAULT_PORTS[url.protocol];
  if (written !== url.host && written !== `${url.host}:${defaultPort}`) {
    return `must write its host as URL parsers read it (${url.host}): no percent-escapes, IDNA or numeric shorthands in the host`;
  }
  return null;
}

/**
 * The URL as the WHATWG parser reads it (`new URL(value).href`): what is forwarded, so the fetcher
 * connects to the host that was checked. A value that does not parse is returned as it is.
 */
export function normaliseHttpUrl(value: string): string {
  try {
    return new URL(value).href;
  } catch {
    return value;
  }
}
