/**
 * The house Lambda bundle, for real: one HouseFunction synthesized with bundling on (CDK runs esbuild),
 * compared with what `npm run bench:cold` builds from the same options, and the credential alias
 * (`LAMBDA_ALIASES`) exercised in a fresh node process.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { App, Duration, RemovalPolicy, Stack } from "aws-cdk-lib";
import { SnsAction } from "aws-cdk-lib/aws-cloudwatch-actions";
import { RetentionDays } from "aws-cdk-lib/aws-logs";
import { Topic } from "aws-cdk-lib/aws-sns";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundleLikeHouse } from "../../bench/lib/bundle.ts";
import { ESM_REQUIRE_BANNER, LAMBDA_ALIASES } from "../../infra/constructs/house-bundling.ts";
import { HouseFunction, REPO_ROOT } from "../../infra/constructs/house-function.ts";
import {
  credentialsTreatedAsExpired,
  defaultProvider,
  MissingLambdaCredentials,
} from "../../infra/constructs/lambda-env-credentials.ts";

const run = promisify(execFile);
const ENTRY = "functions/authorizer.ts";

let dir: string;
let assetCode: string;
let assetMap: { sourcesContent?: unknown; sources: string[] };

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "house-bundling-"));
  const app = new App({ outdir: path.join(dir, "cdk.out") });
  const stack = new Stack(app, "Bundled");
  new HouseFunction(stack, "Authorizer", {
    entry: ENTRY,
    memoryMb: 256,
    timeout: Duration.seconds(5),
    logRetention: RetentionDays.ONE_WEEK,
    logRemovalPolicy: RemovalPolicy.DESTROY,
    alarmAction: new SnsAction(new Topic(stack, "Alarms")),
  });
  const assembly = app.synth();
  const assets = (await readdir(assembly.directory)).filter((name) => name.startsWith("asset."));
  expect(assets).toHaveLength(1);
  const asset = path.join(assembly.directory, assets[0] as string);
  assetCode = await readFile(path.join(asset, "index.mjs"), "utf8");
  assetMap = JSON.parse(await readFile(path.join(asset, "index.mjs.map"), "utf8"));
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const withoutMapUrl = (code: string) => code.replace(/\n\/\/# sourceMappingURL=\S+\n?$/, "\n");

describe("the house bundle (CDK's esbuild run)", () => {
  it("is byte for byte what bench:cold builds with the shared options, but for the map's name", async () => {
    const bench = await bundleLikeHouse(path.join(REPO_ROOT, ENTRY), path.join(dir, "bench.mjs"), REPO_ROOT);
    const benchCode = await readFile(bench.outfile, "utf8");
    expect(withoutMapUrl(assetCode)).toBe(withoutMapUrl(benchCode));
  });

  it("is an ESM bundle with the require banner and a source map without the sources' text", () => {
    expect(assetCode.startsWith(ESM_REQUIRE_BANNER)).toBe(true);
    expect(assetCode).toMatch(/\/\/# sourceMappingURL=index\.mjs\.map\n?$/);
    expect(assetMap.sourcesContent).toBeUndefined();
    expect(assetMap.sources.some((source) => source.endsWith(ENTRY))).toBe(true);
  });

  it("takes credentials from the environment only: no SSO, ini, process or STS code", () => {
    expect(
      assetMap.sources.some((source) => source.endsWith("infra/constructs/lambda-env-credentials.ts")),
    ).toBe(true);
    for (const gone of [
      "credential-provider-node",
      "credential-provider-ini",
      "credential-provider-sso",
      "nested-clients",
    ]) {
      expect(assetMap.sources.filter((source) => source.includes(`@aws-sdk/${gone}/`))).toEqual([]);
    }
  });
});

describe("a bundled SDK client's credentials (LAMBDA_ALIASES)", () => {
  const aliased = Object.keys(LAMBDA_ALIASES);
  let bundle: string;
  let home: string;

  beforeAll(async () => {
    expect(aliased).toEqual(["@aws-sdk/credential-provider-node"]);
    const contents = [
      'import { DynamoDBClient } from "@aws-sdk/client-dynamodb";',
      'const client = new DynamoDBClient({ region: "us-east-1" });',
      "try { console.log(JSON.stringify(await client.config.credentials())); }",
      "catch (error) { console.log(JSON.stringify({ error: error.name, message: error.message })); }",
    ].join("\n");
    bundle = (await bundleLikeHouse({ contents }, path.join(dir, "credentials.mjs"), REPO_ROOT)).outfile;
    // A profile the SDK's default chain would have found (fromIni), to prove the bundle does not look.
    home = path.join(dir, "home");
    await run("mkdir", ["-p", path.join(home, ".aws")]);
    await writeFile(
      path.join(home, ".aws", "credentials"),
      "[default]\naws_access_key_id = AKIAFROMINIFILE\naws_secret_access_key = from-ini-file\n",
    );
  });

  const credentialsWith = async (env: Record<string, string>) => {
    const { stdout } = await run(process.execPath, [bundle], {
      env: { PATH: process.env.PATH ?? "", HOME: home, ...env },
    });
    return JSON.parse(stdout.trim().split("\n").at(-1) as string) as Record<string, unknown>;
  };

  it("are the role credentials Lambda puts in the environment", async () => {
    expect(
      await credentialsWith({
        AWS_ACCESS_KEY_ID: "ASIAFROMLAMBDA",
        AWS_SECRET_ACCESS_KEY: "secret",
        AWS_SESSION_TOKEN: "token",
      }),
    ).toMatchObject({ accessKeyId: "ASIAFROMLAMBDA", secretAccessKey: "secret", sessionToken: "token" });
  });

  it("fail loudly, naming the alias, without environment credentials (no other source is tried)", async () => {
    const result = await credentialsWith({});
    expect(result).toMatchObject({ error: "CredentialsProviderError" });
    expect(result.message).toMatch(/LAMBDA_ALIASES/);
  });
});

describe("lambda-env-credentials", () => {
  const names = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
  ];
  const saved = Object.fromEntries(names.map((name) => [name, process.env[name]]));
  afterAll(() => {
    for (const name of names) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  });

  it("reads the variables when asked, not when built", async () => {
    const provider = defaultProvider();
    process.env.AWS_ACCESS_KEY_ID = "AKIDLATE";
    process.env.AWS_SECRET_ACCESS_KEY = "late";
    delete process.env.AWS_SESSION_TOKEN;
    process.env.AWS_CREDENTIAL_EXPIRATION = "2030-01-01T00:00:00Z";
    const credentials = await provider();
    expect(credentials).toEqual({
      accessKeyId: "AKIDLATE",
      secretAccessKey: "late",
      expiration: new Date("2030-01-01T00:00:00Z"),
    });
    expect(credentialsTreatedAsExpired(credentials)).toBe(false);
    delete process.env.AWS_SECRET_ACCESS_KEY;
    await expect(provider()).rejects.toBeInstanceOf(MissingLambdaCredentials);
  });
});
