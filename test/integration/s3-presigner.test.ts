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
