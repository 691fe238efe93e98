import { connect } from "node:net";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { DynamoDBDocumentClient, ScanCommand } from "@aws-sdk/lib-dynamodb";

/**
 * Sends bytes exactly as given to a loopback HTTP server and parses the answer into a `Response`:
 * for requests `fetch` refuses to send (CR/LF or bytes over 0xFF in a header, `..` in the path).
 * The request should say `Connection: close`; the answer is read until the server closes.
 */
export function rawHttp(baseUrl: string, request: string | Buffer): Promise<Response> {
  const { hostname, port } = new URL(baseUrl);
  if (hostname !== "127.0.0.1" && hostname !== "localhost") throw new Error("rawHttp is for loopback only");
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    const chunks: Buffer[] = [];
    socket.setTimeout(10_000, () => socket.destroy(new Error("raw HTTP request timed out")));
    socket.on("connect", () =>
      socket.end(typeof request === "string" ? Buffer.from(request, "latin1") : request),
    );
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    // A server may answer and close before the whole request is written (413): keep what it said.
    let failure: Error | undefined;
    socket.on("error", (error) => {
      failure = error;
    });
    socket.on("close", () => {
      try {
        resolve(parseRawResponse(Buffer.concat(chunks)));
      } catch (error) {
        reject(failure ?? error);
      }
    });
  });
}

function parseRawResponse(raw: Buffer): Response {
  const split = raw.indexOf("\r\n\r\n");
  if (split === -1) throw new Error(`not an HTTP response: ${JSON.stringify(raw.toString("latin1"))}`);
  const [statusLine = "", ...lines] = raw.subarray(0, split).toString("latin1").split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1]);
  if (!Number.isInteger(status)) throw new Error(`bad status line ${JSON.stringify(statusLine)}`);
  const headers = new Headers();
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  let body = raw.subarray(split + 4);
  if (headers.get("transfer-encoding")?.toLowerCase() === "chunked") body = dechunk(body);
  headers.delete("transfer-encoding");
  headers.delete("content-length");
  return new Response(new Uint8Array(body), { status, headers });
}

function dechunk(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = body.indexOf("\r\n", at);
    if (eol === -1) break;
    const size = Number.parseInt(body.subarray(at, eol).toString("latin1"), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(body.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

/** One HTTP/1.1 request as text (CRLF line ends), for `rawHttp`. */
export function rawRequest(
  method: string,
  path: string,
  headers: Array<[string, string]>,
  body: string | Buffer = "",
): Buffer {
  const bytes = typeof body === "string" ? Buffer.from(body, "utf8") : body;
  const head = [
    `${method} ${path} HTTP/1.1`,
    "Host: 127.0.0.1",
    "Connection: close",
    ...headers.map(([name, value]) => `${name}: ${value}`),
    ...(bytes.byteLength > 0 || method === "POST" ? [`Content-Length: ${bytes.byteLength}`] : []),
    "",
    "",
  ].join("\r\n");
  return Buffer.concat([Buffer.from(head, "latin1"), bytes]);
}

/** `depth` nested arrays (or objects under key "a") as JSON text, built without recursion. */
export function nestedJson(depth: number, kind: "array" | "object"): string {
  return kind === "array"
    ? "[".repeat(depth) + "]".repeat(depth)
    : `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
}

/** Every item of a DynamoDB table (the whole local table, paged), for before/after comparisons. */
export async function scanTable(endpoint: string, tableName: string): Promise<Record<string, unknown>[]> {
  const doc = DynamoDBDocumentClient.from(new DynamoDBClient({ endpoint }));
  const items: Record<string, unknown>[] = [];
  let start: Record<string, unknown> | undefined;
  try {
    do {
      const page = await doc.send(
        new ScanCommand({ TableName: tableName, ConsistentRead: true, ExclusiveStartKey: start }),
      );
      items.push(...(page.Items ?? []));
      start = page.LastEvaluatedKey;
    } while (start);
  } finally {
    doc.destroy();
  }
  const key = (item: Record<string, unknown>) => `${String(item.pk)}\u0000${String(item.sk)}`;
  return items.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/** Every object key in a bucket of the local S3 (fauxqs, path-style). */
export async function listBucket(endpoint: string, bucket: string): Promise<string[]> {
  const s3 = new S3Client({ endpoint, forcePathStyle: true });
  const keys: string[] = [];
  let token: string | undefined;
  try {
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
      keys.push(...(page.Contents ?? []).flatMap((o) => (o.Key ? [o.Key] : [])));
      token = page.NextContinuationToken;
    } while (token);
  } finally {
    s3.destroy();
  }
  return keys.sort();
}
