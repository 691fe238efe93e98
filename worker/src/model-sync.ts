/**
 * Copies a model folder from S3 (s3://bucket/prefix) into a local folder at start. Files already present
 * with the same size are kept; downloads go to a temporary name and are renamed when complete.
 */
import { createWriteStream, existsSync, mkdirSync, renameSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";

export function parseS3Uri(uri: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (!m?.[1]) throw new Error(`not an s3:// URI: ${uri}`);
  const prefix = m[2] ?? "";
  return { bucket: m[1], prefix: prefix === "" || prefix.endsWith("/") ? prefix : `${prefix}/` };
}

export async function syncModelsFromS3(
  s3: S3Client,
  uri: string,
  dir: string,
): Promise<{ downloaded: number; kept: number; bytes: number }> {
  const { bucket, prefix } = parseS3Uri(uri);
  const root = resolve(dir);
  let token: string | undefined;
  let downloaded = 0;
  let kept = 0;
  let bytes = 0;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const object of page.Contents ?? []) {
      const key = object.Key;
      if (!key || key.endsWith("/")) continue;
      const target = resolve(root, key.slice(prefix.length));
      if (relative(root, target).startsWith("..")) continue; // never write outside the folder
      if (existsSync(target) && statSync(target).size === object.Size) {
        kept++;
        continue;
      }
      mkdirSync(dirname(target), { recursive: true });
      const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      const partial = join(dirname(target), `.${downloaded}.partial`);
      await pipeline(out.Body as Readable, createWriteStream(partial));
      renameSync(partial, target);
      downloaded++;
      bytes += object.Size ?? 0;
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  if (downloaded + kept === 0) throw new Error(`no model files under ${uri}`);
  return { downloaded, kept, bytes };
}
