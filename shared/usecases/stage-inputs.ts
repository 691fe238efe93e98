import {
  type AddressPolicy,
  checkUrl,
  ipFamily,
  isAddressAllowed,
  urlHost,
} from "../domain/address-policy.ts";
import { type ErrorDetail, ValidationError } from "../domain/errors.ts";
import { normaliseHttpUrl } from "../domain/http-url.ts";
import { NotAnImageError, sniffImage } from "../domain/image-sniff.ts";
import { IMAGE_FIELDS, S3_REF, UPLOAD_REF } from "../domain/uploads.ts";
import type { ObjectStore } from "../ports/index.ts";
import type { HostResolver } from "../ports/network.ts";
import type { ControlNetRequest } from "../schemas/controlnet.ts";

type ImageField = (typeof IMAGE_FIELDS)[number];

export interface StageInputsDeps {
  inputs: ObjectStore;
  inputsBucket: string;
  /** Address rules for URL inputs (the provider fetches them; we refuse what points inside a network). */
  policy: Pick<AddressPolicy, "mode">;
  /** Resolves the host of a URL input, whose every address must be allowed (aws mode). */
  resolve: HostResolver;
}

export const uploadKey = (tenantId: string, uploadId: string) => `uploads/${tenantId}/${uploadId}`;

/**
 * Makes a job's images safe to hand to the provider, before anything is written: base64 images are
 * checked to be PNG/JPEG/WebP and stored in the inputs bucket (so rows and queue messages stay small);
 * `upload:<id>` references must exist under the tenant's own prefix; URLs must be http(s) without
 * credentials and must not resolve to private, loopback, link-local or metadata addresses.
 * All checks run first, writes last: a rejected request stores nothing.
 */
export async function stageInputs(
  deps: StageInputsDeps,
  tenantId: string,
  jobId: string,
  request: ControlNetRequest,
): Promise<ControlNetRequest> {
  const problems: ErrorDetail[] = [];
  const writes: Array<() => Promise<void>> = [];
  const staged: Partial<Record<ImageField, string>> = {};
  const ref = (key: string) => `s3://${deps.inputsBucket}/${key}`;

  await Promise.all(
    IMAGE_FIELDS.map(async (field) => {
      const value = request[field as keyof ControlNetRequest] as string | undefined;
      if (value === undefined) return;
      const upload = UPLOAD_REF.exec(value);
      if (upload?.[1]) {
        const key = uploadKey(tenantId, upload[1]);
        const head = await deps.inputs.head(key);
        if (!head) problems.push({ path: field, message: "no upload with this id (or not yet uploaded)" });
        else staged[field] = ref(key);
        return;
      }
      if (/^https?:/i.test(value)) {
        const problem = await checkOutboundUrl(value, deps);
        if (problem) problems.push({ path: field, message: problem });
        return;
      }
      const bytes = Buffer.from(value.replace(/^data:[^,]*,/, ""), "base64");
      try {
        const image = sniffImage(bytes);
        const key = `${tenantId}/${jobId}/${field}.${image.extension}`;
        writes.push(() => deps.inputs.put(key, bytes, { contentType: image.contentType }));
        staged[field] = ref(key);
      } catch (error) {
        if (!(error instanceof NotAnImageError)) throw error;
        problems.push({ path: field, message: `not a PNG, JPEG or WebP image: ${error.message}` });
      }
    }),
  );
  if (problems.length > 0) {
    throw new ValidationError(
      `Image inputs are not usable: ${problems.map((p) => p.path).join(", ")}.`,
      problems,
    );
  }
  await Promise.all(writes.map((write) => write()));
  return { ...request, ...staged };
}

/**
 * The address rules every URL we (or the provider) will connect to must meet — image inputs here, and
 * webhook URLs at submit, which deliveries check again: a message saying what is wrong, or null.
 */
export async function checkOutboundUrl(
  value: string,
  deps: Pick<StageInputsDeps, "policy" | "resolve">,
): Promise<string | null> {
  let url: URL;
  try {
    // Any host may be named; the scheme, credential and address rules still apply to it.
    url = checkUrl(value, { mode: deps.policy.mode, allowedHosts: [urlHost(new URL(value))] });
  } catch (error) {
    return error instanceof Error ? error.message : "not an allowed URL";
  }
  const host = urlHost(url);
  // checkUrl already judged a literal address; locally (simulator, test servers) names are not resolved.
  if (ipFamily(host) !== 0 || deps.policy.mode === "local") return null;
  let addresses: string[];
  try {
    addresses = await deps.resolve(host);
  } catch {
    return `host ${host} does not resolve`;
  }
  const bad = addresses.find((address) => !isAddressAllowed(address, deps.policy));
  return bad ? `host ${host} resolves to ${bad}, which is in a forbidden range` : null;
}

/**
 * The request with its http(s) image URLs as the WHATWG parser reads them (`new URL(x).href`), the
 * reading whose host the address rules checked: the provider or worker, whatever parser it uses, is
 * sent that URL and no other spelling of it (a job stored before submit normalised URLs included).
 */
export function forwardedRequest(request: ControlNetRequest): Record<string, unknown> {
  const params: Record<string, unknown> = { ...request };
  for (const field of IMAGE_FIELDS) {
    const value = params[field];
    if (typeof value === "string" && /^https?:/i.test(value)) params[field] = normaliseHttpUrl(value);
  }
  return params;
}

/**
 * The provider's view of a request: our stored inputs become presigned GET URLs it can fetch, other
 * URLs are normalised (`forwardedRequest`), and `base64` is "no" (every image is now a URL; outputs
 * come back as URLs we copy).
 */
export async function providerParams(
  request: ControlNetRequest,
  presign: (bucket: string, key: string) => Promise<string>,
): Promise<Record<string, unknown>> {
  const params = forwardedRequest(request);
  for (const field of IMAGE_FIELDS) {
    const value = params[field];
    const match = typeof value === "string" ? S3_REF.exec(value) : null;
    if (match?.[1] && match[2]) params[field] = await presign(match[1], match[2]);
  }
  if (params.base64 !== undefined) params.base64 = "no";
  return params;
}

/** Deletes the images `stageInputs` stored for a job that was then not written (uploads stay the client's). */
export async function discardStagedInputs(
  deps: Pick<StageInputsDeps, "inputs" | "inputsBucket">,
  tenantId: string,
  jobId: string,
  request: ControlNetRequest,
): Promise<void> {
  const prefix = `${tenantId}/${jobId}/`;
  await Promise.all(
    IMAGE_FIELDS.map(async (field) => {
      const value = request[field as keyof ControlNetRequest];
      const match = typeof value === "string" ? S3_REF.exec(value) : null;
      if (match?.[1] === deps.inputsBucket && match[2]?.startsWith(prefix))
        await deps.inputs.delete(match[2]);
    }),
  );
}
