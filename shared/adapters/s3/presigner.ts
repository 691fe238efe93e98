/**
 * Presigned S3 GET URLs without the S3 client. `S3ObjectStore.presignGet` runs a `GetObjectCommand`
 * through the client's middleware stack (`@aws-sdk/s3-request-presigner`), which costs a function the
 * whole `@aws-sdk/client-s3` bundle (its S3 middleware, checksums and XML codec: a large share of a
 * bundle and of a cold start's import). A function that never calls S3
 * and only hands out GET URLs (dispatch and reconcile presign stored inputs for the provider and the
 * worker; notify presigns outputs for the webhook payload) signs them here with the SDK's own SigV4
 * signer instead, and gets the same URL, character for character (test/unit/s3-presigner.test.ts
 * compares the two):
 *
 * - the object URL the client's endpoint rules give a plain bucket: virtual-hosted
 *   `https://<bucket>.s3.<region>.<partition's DNS suffix>/<key>`, or path style
 *   `https://s3.<region>.<suffix>/<bucket>/<key>` for a bucket that cannot be a host name (dots,
 *   capitals); with a configured endpoint (`AWS_ENDPOINT_URL_S3`, as `createS3Client` has it: path style,
 *   which the local emulators need; or `AWS_ENDPOINT_URL`) the bucket goes in front of its host or, for
 *   an IP address or path style, at the start of its path;
 * - the key URI-encoded segment by segment, '/' kept (S3's greedy `{Key+}` label);
 * - the query the presigner produces: `x-id=GetObject`, `X-Amz-Content-Sha256=UNSIGNED-PAYLOAD`,
 *   `x-amz-checksum-mode=ENABLED` (the client's default response checksum validation), then the SigV4
 *   query parameters (only `host` signed), sorted as the SDK's `formatUrl` sorts them;
 * - region and credentials from the same providers the client uses: the SDK's region loader
 *   (`AWS_REGION`, then the shared config file) and `@aws-sdk/credential-provider-node`'s default chain,
 *   which the Lambda bundles replace with the environment credentials (`LAMBDA_ALIASES` in
 *   `infra/constructs/house-bundling.ts`).
 *
 * Not covered, and refused at construction rather than signed differently: FIPS and dual-stack endpoints
 * (`AWS_USE_FIPS_ENDPOINT`, `AWS_USE_DUALSTACK_ENDPOINT`), and response checksum validation other than the
 * default (`AWS_RESPONSE_CHECKSUM_VALIDATION=WHEN_REQUIRED`, with which the client's query varies with
 * `AWS_REQUEST_CHECKSUM_CALCULATION`). Not covered either, and not used by this project:
 * endpoints from the shared config file's `services` section, access point ARNs, S3 Express directory
 * buckets (`--x-s3`), transfer acceleration. Anything beyond GET URLs needs `S3ObjectStore`.
 */
import { isIpAddress, isVirtualHostableS3Bucket, partition } from "@aws-sdk/core/client";
import { defaultProvider } from "@aws-sdk/credential-provider-node";
import { loadConfig, NODE_REGION_CONFIG_FILE_OPTIONS, NODE_REGION_CONFIG_OPTIONS } from "@smithy/core/config";
import { buildQueryString, escapeUri, HttpRequest } from "@smithy/core/protocols";
import { Hash } from "@smithy/core/serde";
import { SignatureV4 } from "@smithy/signature-v4";
import type { ObjectStore } from "../../ports/index.ts";
import type { Environment } from "../aws-client.ts";

export interface S3UrlPresignerOptions {
  /** The region; by default the environment's `AWS_REGION`, else the SDK's region chain (the shared config file). */
  region?: string;
  /**
   * The S3 endpoint; by default `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` (unless
   * `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`), else AWS's own for the region.
   */
  endpoint?: string;
  /** Path-style URLs; by default as `createS3Client` decides: when an endpoint is given or `AWS_ENDPOINT_URL_S3` is set. */
  forcePathStyle?: boolean;
  /** By default the SDK's default chain (in Lambda bundles: the environment, see the module comment). */
  credentials?: ConstructorParameters<typeof SignatureV4>[0]["credentials"];
  /** The signing time (tests); by default now. */
  now?: () => Date;
}

const isTrue = (value: string | undefined) => value?.toLowerCase() === "true";

/** Presigns GET URLs of one bucket's objects, as `S3ObjectStore.presignGet` does with the S3 client. */
export class S3UrlPresigner implements Pick<ObjectStore, "presignGet"> {
  private readonly signer: SignatureV4;
  private readonly region: () => Promise<string>;
  private readonly endpoint: URL | null;
  private readonly forcePathStyle: boolean;
  private readonly now: () => Date;

  constructor(
    readonly bucket: string,
    options: S3UrlPresignerOptions = {},
    env: Environment = process.env,
  ) {
    for (const name of ["AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT"]) {
      if (isTrue(env[name])) {
        throw new Error(`S3UrlPresigner does not build ${name} URLs; presign with S3ObjectStore instead`);
      }
    }
    const validation = env.AWS_RESPONSE_CHECKSUM_VALIDATION;
    if (validation !== undefined && validation.toUpperCase() !== "WHEN_SUPPORTED") {
      throw new Error(
        `S3UrlPresigner signs only the default AWS_RESPONSE_CHECKSUM_VALIDATION (WHEN_SUPPORTED), not ${validation}; ` +
          "presign with S3ObjectStore instead",
      );
    }
    const configured = isTrue(env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS)
      ? undefined
      : env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
    const endpoint = options.endpoint ?? configured;
    this.endpoint = endpoint === undefined ? null : new URL(endpoint);
    this.forcePathStyle =
      options.forcePathStyle ?? (options.endpoint !== undefined || Boolean(env.AWS_ENDPOINT_URL_S3));
    // As the S3 client's region under `serviceLocation`: `env`'s AWS_REGION, else the SDK's chain.
    const region = options.region ?? (env.AWS_REGION || undefined);
    this.region =
      region !== undefined
        ? async () => region
        : loadConfig(NODE_REGION_CONFIG_OPTIONS, { ...NODE_REGION_CONFIG_FILE_OPTIONS });
    this.now = options.now ?? (() => new Date());
    this.signer = new SignatureV4({
      service: "s3",
      region: this.region,
      credentials: options.credentials ?? defaultProvider(),
      sha256: Hash.bind(null, "sha256"),
      // The path is already encoded, as S3 wants it: encoding it again would break keys with '%'.
      uriEscapePath: false,
      applyChecksum: false,
    });
  }

  async presignGet(key: string, expiresSeconds: number): Promise<string> {
    const region = await this.region();
    const { protocol, hostname, port, path } = this.locate(key, region);
    const request = new HttpRequest({
      method: "GET",
      protocol,
      hostname,
      ...(port === undefined ? {} : { port }),
      path,
      query: { "x-id": "GetObject" },
      headers: {
        host: port === undefined ? hostname : `${hostname}:${port}`,
        "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD",
        "x-amz-checksum-mode": "ENABLED",
      },
    });
    const signed = await this.signer.presign(request, {
      expiresIn: expiresSeconds,
      signingDate: this.now(),
      unsignableHeaders: new Set(["content-type"]),
    });
    const query = buildQueryString(signed.query ?? {});
    return `${protocol}//${hostname}${port === undefined ? "" : `:${port}`}${path}?${query}`;
  }

  /** Where the object is, as the S3 endpoint rules place a plain bucket (see the module comment). */
  private locate(
    key: string,
    region: string,
  ): { protocol: string; hostname: string; port?: number; path: string } {
    const encodedKey = key.split("/").map(escapeUri).join("/");
    if (this.endpoint === null) {
      const host = `s3.${region}.${partition(region).dnsSuffix}`;
      return this.forcePathStyle || !isVirtualHostableS3Bucket(this.bucket, false)
        ? { protocol: "https:", hostname: host, path: `/${escapeUri(this.bucket)}/${encodedKey}` }
        : { protocol: "https:", hostname: `${this.bucket}.${host}`, path: `/${encodedKey}` };
    }
    const url = this.endpoint;
    const protocol = url.protocol;
    const port = url.port === "" ? undefined : Number(url.port);
    const basePath = url.pathname === "/" ? "" : url.pathname.replace(/\/$/, "");
    const hostIsIp = isIpAddress(url.hostname.replace(/^\[|\]$/g, ""));
    const virtual =
      !this.forcePathStyle && !hostIsIp && isVirtualHostableS3Bucket(this.bucket, protocol === "http:");
    return virtual
      ? { protocol, hostname: `${this.bucket}.${url.hostname}`, port, path: `${basePath}/${encodedKey}` }
      : {
          protocol,
          hostname: url.hostname,
          port,
          path: `${basePath}/${escapeUri(this.bucket)}/${encodedKey}`,
        };
  }
}
