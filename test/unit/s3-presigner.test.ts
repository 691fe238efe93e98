/**
 * S3UrlPresigner against the S3 client's presigner: for the same bucket, key, expiry, signing time,
 * region, endpoint settings and credentials, both give the same URL, character for character.
 */
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createS3Client } from "../../shared/adapters/s3/object-store.ts";
import { S3UrlPresigner } from "../../shared/adapters/s3/presigner.ts";
import { bundledInputs } from "../support/bundle.ts";

const AT = new Date("2024-05-06T07:08:09Z");
const CREDENTIALS = {
  accessKeyId: "AKIDEXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
  sessionToken: "session/token+with=odd chars",
};

/** What the functions did before: the S3 client's presigner, with the client as `createS3Client` builds it. */
async function viaClient(
  bucket: string,
  key: string,
  expiresIn: number,
  credentials: typeof CREDENTIALS | { accessKeyId: string; secretAccessKey: string } = CREDENTIALS,
): Promise<string> {
  const client = createS3Client({ credentials });
  try {
    return await getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: key }), {
      expiresIn,
      signingDate: AT,
    });
  } finally {
    client.destroy();
  }
}

function viaPresigner(
  bucket: string,
  key: string,
  expiresIn: number,
  credentials: typeof CREDENTIALS | { accessKeyId: string; secretAccessKey: string } = CREDENTIALS,
): Promise<string> {
  return new S3UrlPresigner(bucket, { credentials, now: () => AT }).presignGet(key, expiresIn);
}

/** Only what the tests set: no endpoint, FIPS, dual-stack or checksum settings from the machine. */
function environment(vars: Record<string, string>): void {
  for (const name of [
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_RESPONSE_CHECKSUM_VALIDATION",
    "AWS_PROFILE",
  ]) {
    vi.stubEnv(name, undefined);
  }
  vi.stubEnv("AWS_REGION", "us-east-1");
  for (const [name, value] of Object.entries(vars)) vi.stubEnv(name, value);
}

afterEach(() => {
  vi.unstubAllEnvs();
});

const KEYS = [
  "tenant-1/01J0ABCDEF/input-0.png",
  "t/a b/ü+é!'()*~.png",
  "t/100%/x&y=z?#[]@$,;:.jpg",
  "t//double//slash/",
  "t/./dots/../x",
  "日本語/キー",
];

describe("S3UrlPresigner gives the S3 client's presigned GET URL", () => {
  const cases: Array<{ name: string; env: Record<string, string>; bucket: string; starts: string }> = [
    {
      name: "AWS, us-east-1: virtual-hosted",
      env: {},
      bucket: "outputs-bucket-123",
      starts: "https://outputs-bucket-123.s3.us-east-1.amazonaws.com/",
    },
    {
      name: "AWS, another region",
      env: { AWS_REGION: "eu-west-1" },
      bucket: "inputs-bucket",
      starts: "https://inputs-bucket.s3.eu-west-1.amazonaws.com/",
    },
    {
      name: "AWS, China partition",
      env: { AWS_REGION: "cn-north-1" },
      bucket: "inputs-bucket",
      starts: "https://inputs-bucket.s3.cn-north-1.amazonaws.com.cn/",
    },
    {
      name: "AWS, GovCloud",
      env: { AWS_REGION: "us-gov-west-1" },
      bucket: "inputs-bucket",
      starts: "https://inputs-bucket.s3.us-gov-west-1.amazonaws.com/",
    },
    {
      name: "AWS, a bucket with dots: path style",
      env: { AWS_REGION: "eu-central-1" },
      bucket: "my.dotted.bucket",
      starts: "https://s3.eu-central-1.amazonaws.com/my.dotted.bucket/",
    },
    {
      name: "local emulator (AWS_ENDPOINT_URL_S3): path style",
      env: { AWS_ENDPOINT_URL_S3: "http://127.0.0.1:4566" },
      bucket: "local-inputs",
      starts: "http://127.0.0.1:4566/local-inputs/",
    },
    {
      name: "AWS_ENDPOINT_URL_S3 with a host name and a base path: still path style",
      env: { AWS_ENDPOINT_URL_S3: "http://localhost:9000/s3" },
      bucket: "local-inputs",
      starts: "http://localhost:9000/s3/local-inputs/",
    },
    {
      name: "AWS_ENDPOINT_URL (all services), host name: virtual-hosted on it",
      env: { AWS_ENDPOINT_URL: "https://storage.example.com" },
      bucket: "b-1",
      starts: "https://b-1.storage.example.com/",
    },
    {
      name: "AWS_ENDPOINT_URL (all services), IP address: path style",
      env: { AWS_ENDPOINT_URL: "http://10.0.0.5:8080" },
      bucket: "b-1",
      starts: "http://10.0.0.5:8080/b-1/",
    },
    {
      name: "configured endpoints ignored",
      env: { AWS_ENDPOINT_URL: "http://10.0.0.5:8080", AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: "true" },
      bucket: "b-1",
      starts: "https://b-1.s3.us-east-1.amazonaws.com/",
    },
    {
      name: "response checksum validation set to its default",
      env: { AWS_RESPONSE_CHECKSUM_VALIDATION: "when_supported" },
      bucket: "outputs-bucket-123",
      starts: "https://outputs-bucket-123.s3.us-east-1.amazonaws.com/",
    },
  ];

  for (const { name, env, bucket, starts } of cases) {
    it(name, async () => {
      environment(env);
      for (const key of KEYS) {
        const expected = await viaClient(bucket, key, 6 * 3_600);
        expect(expected.startsWith(starts)).toBe(true);
        expect(await viaPresigner(bucket, key, 6 * 3_600)).toBe(expected);
      }
    });
  }

  it("has the query the presigner gives (x-id, unsigned payload, checksum mode, only host signed)", async () => {
    environment({});
    const url = new URL(await viaPresigner("outputs-bucket-123", "t/j/0.png", 3_600));
    expect(Object.fromEntries(url.searchParams)).toEqual({
      "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
      "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD",
      "X-Amz-Credential": "AKIDEXAMPLE/20240506/us-east-1/s3/aws4_request",
      "X-Amz-Date": "20240506T070809Z",
      "X-Amz-Expires": "3600",
      "X-Amz-Security-Token": CREDENTIALS.sessionToken,
      "X-Amz-Signature": expect.stringMatching(/^[0-9a-f]{64}$/),
      "X-Amz-SignedHeaders": "host",
      "x-amz-checksum-mode": "ENABLED",
      "x-id": "GetObject",
    });
  });

  it("without a session token, and for other expiries", async () => {
    environment({});
    const credentials = {
      accessKeyId: CREDENTIALS.accessKeyId,
      secretAccessKey: CREDENTIALS.secretAccessKey,
    };
    for (const expires of [60, 900, 3_600, 7 * 86_400]) {
      const expected = await viaClient("outputs-bucket-123", "t/j/0.png", expires, credentials);
      expect(await viaPresigner("outputs-bucket-123", "t/j/0.png", expires, credentials)).toBe(expected);
    }
  });

  it("any key: the same URL (property)", async () => {
    environment({});
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.string({ unit: "binary", minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 4 }),
        async (segments) => {
          const key = segments.join("/");
          expect(await viaPresigner("outputs-bucket-123", key, 900)).toBe(
            await viaClient("outputs-bucket-123", key, 900),
          );
        },
      ),
      { numRuns: 150 },
    );
  });

  it("credentials and region from the environment, as the client takes them", async () => {
    environment({
      AWS_REGION: "ap-southeast-2",
      AWS_ACCESS_KEY_ID: "AKIDFROMENV",
      AWS_SECRET_ACCESS_KEY: "secret-from-env",
      AWS_SESSION_TOKEN: "token-from-env",
    });
    const client = createS3Client();
    try {
      const expected = await getSignedUrl(
        client,
        new GetObjectCommand({ Bucket: "inputs-bucket", Key: "t/j/input-0.png" }),
        { expiresIn: 900, signingDate: AT },
      );
      const url = await new S3UrlPresigner("inputs-bucket", { now: () => AT }).presignGet(
        "t/j/input-0.png",
        900,
      );
      expect(url).toBe(expected);
      expect(url).toContain("X-Amz-Credential=AKIDFROMENV%2F20240506%2Fap-southeast-2%2Fs3%2Faws4_request");
      expect(url).toContain("X-Amz-Security-Token=token-from-env");
    } finally {
      client.destroy();
    }
  });

  it("refuses the settings it does not cover rather than signing another URL", () => {
    environment({ AWS_USE_FIPS_ENDPOINT: "true" });
    expect(() => new S3UrlPresigner("b-1")).toThrow(/AWS_USE_FIPS_ENDPOINT/);
    environment({ AWS_USE_DUALSTACK_ENDPOINT: "true" });
    expect(() => new S3UrlPresigner("b-1")).toThrow(/AWS_USE_DUALSTACK_ENDPOINT/);
    environment({ AWS_RESPONSE_CHECKSUM_VALIDATION: "WHEN_REQUIRED" });
    expect(() => new S3UrlPresigner("b-1")).toThrow(/AWS_RESPONSE_CHECKSUM_VALIDATION/);
  });

  it("rejects an expiry over a week, as SigV4 does", async () => {
    environment({});
    await expect(viaPresigner("b-1", "k", 7 * 86_400 + 1)).rejects.toMatch(/one week/);
  });
});

describe("the functions that only presign GETs", () => {
  it.each(["dispatch", "reconcile", "notify"])("keep the S3 client out of the %s bundle", async (name) => {
    const inputs = await bundledInputs(`functions/${name}.ts`);
    expect(inputs).toContain("shared/adapters/s3/presigner.ts");
    expect(
      inputs.filter(
        (input) =>
          /node_modules\/@aws-sdk\/(client-s3|s3-request-presigner|lib-storage|middleware-sdk-s3)\//.test(
            input,
          ) || input === "shared/adapters/s3/object-store.ts",
      ),
    ).toEqual([]);
  });
});
