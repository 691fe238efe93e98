/**
 * The `wait` preference of a `Prefer` header (RFC 7240): `wait=<delta-seconds>`, the preference name
 * case-insensitive, its value a token or a quoted string. Several Prefer headers reach us joined by
 * commas. Other preferences are not ours and are ignored, and so is a `wait` whose value is not
 * delta-seconds (RFC 7240 §2: a preference the server does not understand is ignored); only the first
 * `wait` counts (§2: a repeated preference is considered once). Returns the seconds asked for, or null.
 */
export function preferredWaitSeconds(prefer: string | undefined): number | null {
  if (prefer === undefined) return null;
  for (const preference of splitOutsideQuotes(prefer, ",")) {
    const [nameAndValue = ""] = splitOutsideQuotes(preference, ";");
    const equals = nameAndValue.indexOf("=");
    const name = (equals < 0 ? nameAndValue : nameAndValue.slice(0, equals)).trim().toLowerCase();
    if (name !== "wait") continue;
    let value = equals < 0 ? "" : nameAndValue.slice(equals + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    // delta-seconds (RFC 9111 §1.2.2): digits; more than 10 of them is far past any wait we grant.
    return /^\d{1,10}$/.test(value) ? Number(value) : null;
  }
  return null;
}

/** `text` split on `separator`, except inside double-quoted strings (with their backslash escapes). */
function splitOutsideQuotes(text: string, separator: string): string[] {
  const parts: string[] = [];
  let current = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i] as string;
    if (quoted && char === "\\" && i + 1 < text.length) {
      current += char + (text[i + 1] as string);
      i++;
      continue;
    }
    if (char === '"') quoted = !quoted;
    if (char === separator && !quoted) {
      parts.push(current);
      current = "";
    } else {
      current += char;
    }
  }
  parts.push(current);
  return parts;
}
