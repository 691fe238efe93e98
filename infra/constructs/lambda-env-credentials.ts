/**
 * Stands in for `@aws-sdk/credential-provider-node` in Lambda bundles (esbuild alias, see
 * `house-bundling.ts`): the SDK's default credential chain reduced to its first link, the environment
 * variables in which Lambda gives a function its execution role's credentials. Like the SDK's own
 * `fromEnv`. The SDK caches what this returns and asks again only if it expires.
 */

interface EnvCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
  credentialScope?: string;
  accountId?: string;
}

export class MissingLambdaCredentials extends Error {
  /** The SDK's chains read this: there is no other link to try. */
  readonly tryNextLink = false;

  constructor() {
    super(
      "AWS credentials not found in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. This bundle replaces the SDK's " +
        "default credential chain with the environment only (LAMBDA_ALIASES in infra/constructs/house-bundling.ts), " +
        "which is where Lambda puts them.",
    );
    this.name = "CredentialsProviderError";
  }
}

/** The default chain's signature: `defaultProvider(init)` returns the credentials provider. */
export const defaultProvider =
  (_init: unknown = {}) =>
  async (): Promise<EnvCredentials> => {
    const env = process.env;
    const accessKeyId = env.AWS_ACCESS_KEY_ID;
    const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
    if (!accessKeyId || !secretAccessKey) throw new MissingLambdaCredentials();
    return {
      accessKeyId,
      secretAccessKey,
      ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
      ...(env.AWS_CREDENTIAL_EXPIRATION ? { expiration: new Date(env.AWS_CREDENTIAL_EXPIRATION) } : {}),
      ...(env.AWS_CREDENTIAL_SCOPE ? { credentialScope: env.AWS_CREDENTIAL_SCOPE } : {}),
      ...(env.AWS_ACCOUNT_ID ? { accountId: env.AWS_ACCOUNT_ID } : {}),
    };
  };

/** The package's other exports, as it defines them (nothing bundled imports them today). */
export const credentialsWillNeedRefresh = (credentials: { expiration?: Date } | undefined): boolean =>
  credentials?.expiration !== undefined;

export const credentialsTreatedAsExpired = (credentials: { expiration?: Date } | undefined): boolean =>
  credentials?.expiration !== undefined && credentials.expiration.getTime() - Date.now() < 300_000;
