/**
 * S3ObjectStore's list and delete against fauxqs (S3, path style as locally), and the discard of a job's
 * outputs folder built on them: what finalize does for a job that did not succeed.
 */
import { startFauxqs } from "fauxqs";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createS3Client, S3ObjectStore } from "../../shared/adapters/s3/object-store.ts";
import { discardJobOutputs } from "../../shared/usecases/copy-output.ts";
import { LOCAL_CREDENTIALS, LOCAL_REGION } from "../support/emulators.ts";

let fauxqs: Awaited<ReturnType<typeof startFauxqs>>;
let store: S3ObjectStore;
let bucketNumber = 0;

const png = { contentType: "image/png" };
const body = (text: string) => new TextEncoder().encode(text);

beforeAll(async () => {
  fauxqs = await startFauxqs({ port: 0, logger: false });
});

afterAll(async () => {
  await fauxqs?.stop();
});

beforeEach(() => {
  const bucket = `outputs-${++bucketNumber}`;
  fauxqs.createBucket(bucket);
  const options = { endpoint: fauxqs.address, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS };
  store = new S3ObjectStore(createS3Client(options), bucket);
});

describe("S3ObjectStore list and delete against the emulator", () => {
  it("lists the keys under a prefix only, in key order, at most `limit`", async () => {
    for (const key of [
      "t1/JOB1/1.png",
      "t1/JOB1/0.png",
      "t1/JOB10/0.png",
      "t1/JOB2/0.png",
      "t10/JOB1/0.png",
    ]) {
      await store.put(key, body(key), png);
    }
    expect(await store.list("t1/JOB1/", 100)).toEqual(["t1/JOB1/0.png", "t1/JOB1/1.png"]);
    expect(await store.list("t1/JOB1/", 1)).toEqual(["t1/JOB1/0.png"]);
    expect(await store.list("t1/NONE/", 100)).toEqual([]);
  });

  it("deletes one object; deleting a missing key is not an error", async () => {
    await store.put("t1/JOB1/0.png", body("a"), png);
    await store.delete("t1/JOB1/0.png");
    expect(await store.head("t1/JOB1/0.png")).toBeNull();
    await expect(store.delete("t1/JOB1/0.png")).resolves.toBeUndefined();
  });

  it("discards a job's folder and nothing beside it", async () => {
    const ours = ["tenant-a/01JOBA/0.png", "tenant-a/01JOBA/1.jpg", "tenant-a/01JOBA/2.webp"];
    const theirs = ["tenant-a/01JOBA0/0.png", "tenant-a/01JOBB/0.png", "tenant-ab/01JOBA/0.png"];
    for (const key of [...ours, ...theirs]) await store.put(key, body(key), png);

    expect(await discardJobOutputs(store, { tenantId: "tenant-a", id: "01JOBA" })).toBe(3);

    for (const key of ours) expect(await store.head(key), key).toBeNull();
    for (const key of theirs) expect(await store.head(key), key).not.toBeNull();
    expect(await discardJobOutputs(store, { tenantId: "tenant-a", id: "01JOBA" })).toBe(0);
  });

  it("empties a folder holding more than one page of keys", async () => {
    const keys = Array.from({ length: 130 }, (_, i) => `tenant-a/01JOBC/${String(i).padStart(3, "0")}.png`);
    await Promise.all(keys.map((key) => store.put(key, body(key), png)));
    expect(await discardJobOutputs(store, { tenantId: "tenant-a", id: "01JOBC" })).toBe(130);
    expect(await store.list("tenant-a/01JOBC/", 1_000)).toEqual([]);
  });

  it("refuses to discard a folder that would reach beyond one job", async () => {
    for (const job of [
      { tenantId: "tenant-a", id: "" },
      { tenantId: "", id: "01JOBA" },
      { tenantId: "tenant-a", id: "01JOBA/.." },
      { tenantId: "tenant-a/01JOBA", id: "x" },
    ]) {
      await expect(discardJobOutputs(store, job), JSON.stringify(job)).rejects.toThrow(/No outputs folder/);
    }
  });
});
