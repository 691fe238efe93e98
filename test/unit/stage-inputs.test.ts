import sharp from "sharp";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { ValidationError } from "../../shared/domain/errors.ts";
import type { ControlNetRequest } from "../../shared/schemas/controlnet.ts";
import {
  providerParams,
  type StageInputsDeps,
  stageInputs,
  uploadKey,
} from "../../shared/usecases/stage-inputs.ts";
import { InMemoryObjectStore } from "../support/fakes.ts";

const BUCKET = "inputs-bucket";
const TENANT = "tenant-a";
const JOB = "01JOBSTAGE0000000000000000";
const UPLOAD_ID = "0b7c6f1e-2a3d-4e5f-8a9b-0c1d2e3f4a5b";

const images: Record<"png" | "jpg" | "webp", Buffer> = {} as never;
const b64 = (format: keyof typeof images) => images[format].toString("base64");

beforeAll(async () => {
  const base = () => sharp({ create: { width: 8, height: 6, channels: 3, background: "#3366cc" } });
  images.png = await base().png().toBuffer();
  images.jpg = await base().jpeg().toBuffer();
  images.webp = await base().webp().toBuffer();
});

const request = (fields: Partial<ControlNetRequest>): ControlNetRequest =>
  ({
    model_id: "sd15",
    controlnet_model: "canny",
    controlnet_type: "canny",
    prompt: "a lighthouse at dusk",
    ...fields,
  }) as ControlNetRequest;

function setup(mode: "aws" | "local" = "aws", resolve?: StageInputsDeps["resolve"]) {
  const inputs = new InMemoryObjectStore(BUCKET);
  const deps: StageInputsDeps = {
    inputs,
    inputsBucket: BUCKET,
    policy: { mode },
    resolve: resolve ?? (async () => ["93.184.216.34"]),
  };
  return { inputs, deps };
}

async function validationError(promise: Promise<unknown>): Promise<ValidationError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ValidationError);
  return error as ValidationError;
}

const paths = (error: ValidationError) => error.details.map((d) => d.path).sort();

describe("stageInputs: base64 images", () => {
  it.each([
    ["png", "image/png"],
    ["jpg", "image/jpeg"],
    ["webp", "image/webp"],
  ] as const)(
    "stores a %s under <tenant>/<job>/<field>.<ext> and refers to it by s3 ref",
    async (ext, type) => {
      const { inputs, deps } = setup();

      const staged = await stageInputs(
        deps,
        TENANT,
        JOB,
        request({ control_image: b64(ext), base64: "yes" }),
      );

      const key = `${TENANT}/${JOB}/control_image.${ext}`;
      expect(staged.control_image).toBe(`s3://${BUCKET}/${key}`);
      expect([...inputs.objects.keys()]).toEqual([key]);
      expect(inputs.objects.get(key)?.contentType).toBe(type);
      expect(inputs.objects.get(key)?.body.equals(images[ext])).toBe(true);
      // The rest of the request is untouched.
      expect(staged).toMatchObject({ prompt: "a lighthouse at dusk", base64: "yes" });
    },
  );

  it("accepts data URIs and stages several fields at once", async () => {
    const { inputs, deps } = setup();
    const staged = await stageInputs(
      deps,
      TENANT,
      JOB,
      request({
        init_image: `data:image/jpeg;base64,${b64("jpg")}`,
        control_image: b64("png"),
        mask_image: b64("webp"),
        base64: "yes",
      }),
    );
    expect(staged.init_image).toBe(`s3://${BUCKET}/${TENANT}/${JOB}/init_image.jpg`);
    expect(staged.control_image).toBe(`s3://${BUCKET}/${TENANT}/${JOB}/control_image.png`);
    expect(staged.mask_image).toBe(`s3://${BUCKET}/${TENANT}/${JOB}/mask_image.webp`);
    expect(inputs.objects.size).toBe(3);
    expect(inputs.objects.get(`${TENANT}/${JOB}/init_image.jpg`)?.body.equals(images.jpg)).toBe(true);
  });

  it("garbage base64 is a ValidationError naming the field, and nothing is stored", async () => {
    const { inputs, deps } = setup();
    const error = await validationError(
      stageInputs(
        deps,
        TENANT,
        JOB,
        request({ control_image: Buffer.from("definitely not an image").toString("base64"), base64: "yes" }),
      ),
    );
    expect(paths(error)).toEqual(["control_image"]);
    expect(error.message).toContain("control_image");
    expect(error.details[0]?.message).toMatch(/PNG, JPEG or WebP/);
    expect(inputs.objects.size).toBe(0);
  });

  it("a valid image next to garbage is not stored either", async () => {
    const { inputs, deps } = setup();
    const error = await validationError(
      stageInputs(deps, TENANT, JOB, request({ init_image: b64("png"), mask_image: "AAAAAAAAAAAAAAAA" })),
    );
    expect(paths(error)).toEqual(["mask_image"]);
    expect(inputs.objects.size).toBe(0);
  });
});

describe("stageInputs: uploads", () => {
  it("an upload that exists becomes an s3 ref to the tenant's upload key", async () => {
    const { inputs, deps } = setup();
    await inputs.put(uploadKey(TENANT, UPLOAD_ID), images.png, { contentType: "image/png" });

    const staged = await stageInputs(deps, TENANT, JOB, request({ control_image: `upload:${UPLOAD_ID}` }));

    expect(staged.control_image).toBe(`s3://${BUCKET}/uploads/${TENANT}/${UPLOAD_ID}`);
    expect(inputs.objects.size).toBe(1);
  });

  it("a missing upload is a ValidationError naming the field", async () => {
    const { deps } = setup();
    const error = await validationError(
      stageInputs(deps, TENANT, JOB, request({ init_image: `upload:${UPLOAD_ID}` })),
    );
    expect(paths(error)).toEqual(["init_image"]);
    expect(error.details[0]?.message).toMatch(/no upload/);
  });

  it("another tenant's upload is not found", async () => {
    const { inputs, deps } = setup();
    await inputs.put(uploadKey("tenant-b", UPLOAD_ID), images.png, { contentType: "image/png" });
    const error = await validationError(
      stageInputs(deps, TENANT, JOB, request({ control_image: `upload:${UPLOAD_ID}` })),
    );
    expect(paths(error)).toEqual(["control_image"]);
  });
});

describe("stageInputs: URLs (aws mode)", () => {
  it("a public https URL is kept as it is", async () => {
    const resolve = vi.fn(async () => ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]);
    const { inputs, deps } = setup("aws", resolve);
    const staged = await stageInputs(
      deps,
      TENANT,
      JOB,
      request({ control_image: "https://example.com/x.png" }),
    );
    expect(staged.control_image).toBe("https://example.com/x.png");
    expect(resolve).toHaveBeenCalledWith("example.com");
    expect(inputs.objects.size).toBe(0);
  });

  it.each([
    ["a private address literal", "https://10.0.0.1/x.png", /10\.0\.0\.1/],
    ["plain http", "http://example.com/x.png", /scheme/i],
    ["credentials", "https://user:pw@example.com/x.png", /credentials/i],
    ["a port other than https's", "https://example.com:8443/x.png", /port/i],
    ["the metadata address", "https://169.254.169.254/latest/meta-data", /169\.254\.169\.254/],
    ["an IPv4-mapped loopback literal", "https://[::ffff:127.0.0.1]/x.png", /forbidden/],
  ])("refuses %s, naming the field", async (_name, url, reason) => {
    const { deps } = setup();
    const error = await validationError(stageInputs(deps, TENANT, JOB, request({ control_image: url })));
    expect(paths(error)).toEqual(["control_image"]);
    expect(error.details[0]?.message).toMatch(reason);
  });

  it.each([["169.254.169.254"], ["::ffff:127.0.0.1"], ["10.1.2.3"]])(
    "refuses a host that resolves to %s",
    async (address) => {
      const { deps } = setup("aws", async () => ["93.184.216.34", address]);
      const error = await validationError(
        stageInputs(deps, TENANT, JOB, request({ init_image: "https://evil.example/x.png" })),
      );
      expect(paths(error)).toEqual(["init_image"]);
      expect(error.details[0]?.message).toContain(address);
    },
  );

  it("refuses a host that does not resolve", async () => {
    const { deps } = setup("aws", async () => {
      throw new Error("ENOTFOUND");
    });
    const error = await validationError(
      stageInputs(deps, TENANT, JOB, request({ init_image: "https://nowhere.example/x.png" })),
    );
    expect(error.details).toEqual([
      { path: "init_image", message: expect.stringMatching(/does not resolve/) },
    ]);
  });

  it("names every bad field and stores nothing, even the valid base64 one", async () => {
    const { inputs, deps } = setup("aws", async (host) =>
      host === "meta.example" ? ["169.254.169.254"] : [],
    );
    const error = await validationError(
      stageInputs(
        deps,
        TENANT,
        JOB,
        request({
          init_image: b64("png"),
          control_image: "http://example.com/x.png",
          ip_adapter_image: "https://meta.example/x.png",
          base64: "yes",
        }),
      ),
    );
    expect(paths(error)).toEqual(["control_image", "ip_adapter_image"]);
    expect(error.message).toContain("control_image");
    expect(error.message).toContain("ip_adapter_image");
    expect(inputs.objects.size).toBe(0);
  });
});

describe("stageInputs: URLs (local mode)", () => {
  it("allows http on loopback with a port, without resolving", async () => {
    const resolve = vi.fn(async () => ["127.0.0.1"]);
    const { deps } = setup("local", resolve);
    const staged = await stageInputs(
      deps,
      TENANT,
      JOB,
      request({ control_image: "http://127.0.0.1:9000/x.png", init_image: "http://localhost:9000/y.png" }),
    );
    expect(staged.control_image).toBe("http://127.0.0.1:9000/x.png");
    expect(staged.init_image).toBe("http://localhost:9000/y.png");
    expect(resolve).not.toHaveBeenCalled();
  });

  it("still refuses private addresses and credentials", async () => {
    const { deps } = setup("local");
    const error = await validationError(
      stageInputs(
        deps,
        TENANT,
        JOB,
        request({ control_image: "http://10.0.0.1/x.png", init_image: "http://a:b@127.0.0.1/x.png" }),
      ),
    );
    expect(paths(error)).toEqual(["control_image", "init_image"]);
  });
});

describe("providerParams", () => {
  it("presigns our s3 refs, keeps other URLs and sets base64 to no", async () => {
    const presign = vi.fn(async (bucket: string, key: string) => `https://${bucket}.s3.example/${key}?sig=1`);
    const params = await providerParams(
      request({
        init_image: `s3://${BUCKET}/${TENANT}/${JOB}/init_image.png`,
        control_image: "https://example.com/edges.png",
        mask_image: `s3://${BUCKET}/uploads/${TENANT}/${UPLOAD_ID}`,
        base64: "yes",
      }),
      presign,
    );
    expect(params).toMatchObject({
      init_image: `https://${BUCKET}.s3.example/${TENANT}/${JOB}/init_image.png?sig=1`,
      control_image: "https://example.com/edges.png",
      mask_image: `https://${BUCKET}.s3.example/uploads/${TENANT}/${UPLOAD_ID}?sig=1`,
      base64: "no",
      prompt: "a lighthouse at dusk",
    });
    expect(presign.mock.calls).toEqual([
      [BUCKET, `${TENANT}/${JOB}/init_image.png`],
      [BUCKET, `uploads/${TENANT}/${UPLOAD_ID}`],
    ]);
  });

  it("gives other URLs on as the WHATWG parser reads them, the host the address rules checked", async () => {
    const params = await providerParams(
      request({
        control_image: "https://cdn.example.com\\@169.254.169.254/edges.png",
        init_image: "https://:@Images.Example.com:443/a/../caf\u00e9.png",
        mask_image: "https://example.com/m.png",
      }),
      async () => "x",
    );
    expect(params).toMatchObject({
      control_image: "https://cdn.example.com/@169.254.169.254/edges.png",
      init_image: "https://images.example.com/caf%C3%A9.png",
      mask_image: "https://example.com/m.png",
    });
  });

  it("leaves base64 absent when the request had none", async () => {
    const params = await providerParams(
      request({ control_image: "https://example.com/e.png" }),
      async () => "x",
    );
    expect("base64" in params).toBe(false);
  });

  it("staged output feeds straight into providerParams", async () => {
    const { inputs, deps } = setup();
    const staged = await stageInputs(
      deps,
      TENANT,
      JOB,
      request({ control_image: b64("png"), base64: "yes" }),
    );
    const params = await providerParams(staged, async (_bucket, key) => inputs.presignGet(key, 600));
    expect(params.control_image).toBe(
      `https://${BUCKET}.s3.example/${TENANT}/${JOB}/control_image.png?X-Amz-Expires=600`,
    );
    expect(params.base64).toBe("no");
  });
});
