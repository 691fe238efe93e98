/**
 * S3UrlPresigner against the S3 emulator (fauxqs, or moto; path style as locally): a stored object is fetched through the URL
 * it signs, as the provider and the worker fetch stored inputs and webhook receivers fetch outputs.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createS3Client, S3ObjectStore } from "../../shared/adapters/s3/object-store.ts";
import { S3UrlPresigner } from "../../shared/adapters/s3/presigner.ts";
import {
  LOCAL_CREDENTIALS,
  LOCAL_REGION,
  ownName,
  type S3Emulator,
  startS3Emulator,
} from "../support/emulators.ts";

const BUCKET = ownName("presigner-inputs");

let emulator: S3Emulator;
let store: S3ObjectStore;
let presigner: S3UrlPresigner;

beforeAll(async () => {
  emulator = await startS3Emulator();
  await emulator.createBucket(BUCKET);
  const options = { endpoint: emulator.s3Endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS };
  store = new S3ObjectStore(createS3Client(options), BUCKET);
  presigner = new S3UrlPresigner(BUCKET, options);
});

afterAll(async () => {
  await emulator?.stop();
});

describe("S3UrlPresigner against the emulator", () => {
  it.each(["tenant-1/01J0ABCDEF/input-0.png", "tenant-1/a b/ü+é!'()*~.png"])(
    "a GET of the signed URL answers the stored object (%s)",
    async (key) => {
      const body = new TextEncoder().encode(`bytes of ${key}`);
      await store.put(key, body, { contentType: "image/png" });
      const url = await presigner.presignGet(key, 6 * 3_600);
      expect(url.startsWith(`${emulator.s3Endpoint}/${BUCKET}/`)).toBe(true);
      const response = await fetch(url);
      expect(response.status).toBe(200);
      expect(new Uint8Array(await response.arrayBuffer())).toEqual(body);
    },
  );

  it("names the same object as the S3 client's presigned URL", async () => {
    const key = "tenant-1/01J0ABCDEF/input-1.png";
    const [ours, theirs] = await Promise.all([presigner.presignGet(key, 900), store.presignGet(key, 900)]);
    const path = (url: string) => new URL(url).pathname;
    expect(path(ours)).toBe(path(theirs));
  });
});

describe("S3ObjectStore.presignPut against the emulator", () => {
  const key = "uploads/tenant-1/0b1f6f9e-upload";
  const contentType = "image/png";

  it("signs no request checksum: only the host and the content type", async () => {
    const url = new URL(await store.presignPut(key, contentType, 900));
    const names = [...url.searchParams.keys()].map((name) => name.toLowerCase());
    // The SDK's default CRC32 at presign time is that of an empty body: S3 would refuse the real bytes.
    expect(names.filter((name) => name.startsWith("x-amz-checksum-"))).toEqual([]);
    expect(names).not.toContain("x-amz-sdk-checksum-algorithm");
    expect(url.searchParams.get("X-Amz-SignedHeaders")?.split(";")).toEqual(["content-type", "host"]);
  });

  it("takes a PUT of the bytes with the content type it was signed for", async () => {
    const url = await store.presignPut(key, contentType, 900);
    const body = new TextEncoder().encode("the bytes of an uploaded control image");
    const response = await fetch(url, { method: "PUT", headers: { "content-type": contentType }, body });
    expect(response.status).toBe(200);
    expect(await store.head(key)).toMatchObject({ contentType, bytes: body.byteLength });
    const stored = await store.get(key);
    if (!stored) throw new Error("the uploaded object is missing");
    const chunks: Buffer[] = [];
    for await (const chunk of stored) chunks.push(chunk as Buffer);
    expect(new Uint8Array(Buffer.concat(chunks))).toEqual(body);
  });
});
