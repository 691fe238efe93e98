/**
 * A small CloudFormation intrinsic-function resolver for the local stack: enough of `Ref`,
 * `Fn::GetAtt`, `Fn::Join`, `Fn::Sub`, `Fn::Select`, `Fn::Split`, `Fn::ImportValue` and the pseudo
 * parameters to turn the synthesized templates into local names, URLs and ARNs. Resources the
 * emulators do not provide (secrets, the HTTP API...) cannot be resolved; what to do then is the
 * caller's choice (`markers`).
 */

export interface CfnResource {
  Type: string;
  Properties?: Record<string, unknown>;
  Metadata?: Record<string, unknown>;
  DependsOn?: string | string[];
  Condition?: string;
  DeletionPolicy?: string;
  UpdateReplacePolicy?: string;
}

export interface CfnOutput {
  Value: unknown;
  Export?: { Name: unknown };
  Description?: string;
  Condition?: string;
}

export interface CfnParameter {
  Type: string;
  Default?: unknown;
  Description?: string;
}

/** A synthesized CloudFormation template (the parts the local stack reads; the rest passes through). */
export interface CfnTemplate {
  Resources?: Record<string, CfnResource>;
  Outputs?: Record<string, CfnOutput>;
  Parameters?: Record<string, CfnParameter>;
  [section: string]: unknown;
}

/** The account id the emulators use in ARNs. */
export const LOCAL_ACCOUNT_ID = "000000000000";

/** A value that has no local equivalent (a secret's ARN, the API's URL, a condition...). */
export class UnresolvableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnresolvableError";
  }
}

/** A reference to an emulated resource that has not been created yet; resolvable later. */
export class PendingError extends UnresolvableError {
  constructor(
    readonly stackName: string,
    readonly logicalId: string,
  ) {
    super(`${stackName}/${logicalId} is not provisioned yet`);
    this.name = "PendingError";
  }
}

/** What a provisioned (or otherwise locally known) resource resolves to. */
export interface LocalResource {
  /** The value of `Ref`. */
  ref: string;
  /** The values of `Fn::GetAtt`, by attribute name. */
  attributes: Record<string, string>;
}

/** Resource types the local stack provides; a reference to one that is not known yet is pending. */
export const EMULATED_TYPES: ReadonlySet<string> = new Set([
  "AWS::DynamoDB::Table",
  "AWS::SQS::Queue",
  "AWS::S3::Bucket",
  "AWS::Events::EventBus",
  "AWS::Lambda::Function",
]);

export interface ResolverOptions {
  templates: Record<string, CfnTemplate>;
  region: string;
  /** Locally known resources, by stack name then logical id; the caller fills it in as it provisions. */
  resources: Map<string, Map<string, LocalResource>>;
}

export interface ResolveOptions {
  /**
   * `true`: a `Ref` to a resource with no local equivalent yields its logical id, and a `Fn::GetAtt`
   * yields `<logicalId>.<attribute>` (enough to follow references between API Gateway resources).
   * `false` (default): such a reference throws UnresolvableError.
   */
  markers?: boolean;
}

const NO_VALUE = Symbol("AWS::NoValue");

const PSEUDO_PARAMETERS = (region: string, stackName: string): Record<string, string> => ({
  "AWS::Region": region,
  "AWS::AccountId": LOCAL_ACCOUNT_ID,
  "AWS::Partition": "aws",
  "AWS::URLSuffix": "amazonaws.com",
  "AWS::StackName": stackName,
  "AWS::StackId": `arn:aws:cloudformation:${region}:${LOCAL_ACCOUNT_ID}:stack/${stackName}/local`,
});

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

export class TemplateResolver {
  private readonly exports = new Map<string, { stackName: string; value: unknown }>();

  constructor(private readonly options: ResolverOptions) {
    for (const [stackName, template] of Object.entries(options.templates)) {
      for (const [outputId, output] of Object.entries(template.Outputs ?? {})) {
        if (output.Export === undefined) continue;
        const name = this.resolve(stackName, output.Export.Name);
        if (typeof name !== "string")
          throw new Error(`${stackName} output ${outputId} has a non-string export name`);
        this.exports.set(name, { stackName, value: output.Value });
      }
    }
  }

  /** Resolves every intrinsic in `value`, in the context of stack `stackName`. */
  resolve(stackName: string, value: unknown, options: ResolveOptions = {}): unknown {
    const resolved = this.walk(stackName, value, options.markers ?? false);
    if (resolved === NO_VALUE) return undefined;
    return resolved;
  }

  /** Resolves `value` to a string (numbers and booleans are stringified, as Lambda environment values are). */
  resolveString(stackName: string, value: unknown, options: ResolveOptions = {}): string {
    const resolved = this.resolve(stackName, value, options);
    if (typeof resolved === "string") return resolved;
    if (typeof resolved === "number" || typeof resolved === "boolean") return String(resolved);
    throw new UnresolvableError(`expected a string, got ${JSON.stringify(resolved)}`);
  }

  private walk(stackName: string, value: unknown, markers: boolean): unknown {
    if (Array.isArray(value)) {
      return value.map((item) => this.walk(stackName, item, markers)).filter((item) => item !== NO_VALUE);
    }
    if (!isRecord(value)) return value;
    const keys = Object.keys(value);
    const [key] = keys;
    if (keys.length === 1 && key !== undefined && (key === "Ref" || key.startsWith("Fn::"))) {
      return this.intrinsic(stackName, key, value[key], markers);
    }
    const out: Record<string, unknown> = {};
    for (const [name, item] of Object.entries(value)) {
      const resolved = this.walk(stackName, item, markers);
      if (resolved !== NO_VALUE) out[name] = resolved;
    }
    return out;
  }

  private intrinsic(stackName: string, fn: string, arg: unknown, markers: boolean): unknown {
    switch (fn) {
      case "Ref":
        if (typeof arg !== "string") throw new UnresolvableError(`Ref of ${JSON.stringify(arg)}`);
        return this.ref(stackName, arg, markers);
      case "Fn::GetAtt": {
        const [logicalId, attribute] = this.getAttArgs(stackName, arg, markers);
        return this.getAtt(stackName, logicalId, attribute, markers);
      }
      case "Fn::Join": {
        const [delimiter, items] = this.walk(stackName, arg, markers) as [unknown, unknown];
        if (typeof delimiter !== "string" || !Array.isArray(items))
          throw new UnresolvableError("bad Fn::Join");
        return items.map((item) => this.scalar(item, "Fn::Join")).join(delimiter);
      }
      case "Fn::Sub":
        return this.sub(stackName, arg, markers);
      case "Fn::Select": {
        const [index, list] = this.walk(stackName, arg, markers) as [unknown, unknown];
        if (!Array.isArray(list)) throw new UnresolvableError("bad Fn::Select");
        const item = list[Number(index)];
        if (item === undefined) throw new UnresolvableError(`Fn::Select index ${String(index)} out of range`);
        return item;
      }
      case "Fn::Split": {
        const [delimiter, source] = this.walk(stackName, arg, markers) as [unknown, unknown];
        if (typeof delimiter !== "string" || typeof source !== "string")
          throw new UnresolvableError("bad Fn::Split");
        return source.split(delimiter);
      }
      case "Fn::ImportValue": {
        const name = this.walk(stackName, arg, markers);
        if (typeof name !== "string") throw new UnresolvableError("bad Fn::ImportValue");
        const exported = this.exports.get(name);
        if (!exported) throw new UnresolvableError(`no stack exports ${name}`);
        return this.walk(exported.stackName, exported.value, markers);
      }
      default:
        throw new UnresolvableError(`${fn} is not supported locally`);
    }
  }

  private scalar(value: unknown, where: string): string {
    if (typeof value === "string") return value;
    if (typeof value === "number" || typeof value === "boolean") return String(value);
    throw new UnresolvableError(`${where} of a non-scalar ${JSON.stringify(value)}`);
  }

  private getAttArgs(stackName: string, arg: unknown, markers: boolean): [string, string] {
    if (typeof arg === "string") {
      const dot = arg.indexOf(".");
      if (dot > 0) return [arg.slice(0, dot), arg.slice(dot + 1)];
    } else if (Array.isArray(arg) && typeof arg[0] === "string") {
      const attribute = this.walk(stackName, arg[1], markers);
      if (typeof attribute === "string") return [arg[0], attribute];
    }
    throw new UnresolvableError(`bad Fn::GetAtt ${JSON.stringify(arg)}`);
  }

  private ref(stackName: string, name: string, markers: boolean): unknown {
    if (name === "AWS::NoValue") return NO_VALUE;
    const pseudo = PSEUDO_PARAMETERS(this.options.region, stackName)[name];
    if (pseudo !== undefined) return pseudo;
    if (name.startsWith("AWS::")) throw new UnresolvableError(`pseudo parameter ${name}`);
    const template = this.template(stackName);
    const parameter = template.Parameters?.[name];
    if (parameter) {
      if (parameter.Default === undefined) throw new UnresolvableError(`parameter ${name} has no default`);
      return parameter.Default;
    }
    const known = this.options.resources.get(stackName)?.get(name);
    if (known) return known.ref;
    return this.unknown(stackName, name, undefined, markers);
  }

  private getAtt(stackName: string, logicalId: string, attribute: string, markers: boolean): unknown {
    const known = this.options.resources.get(stackName)?.get(logicalId);
    if (known) {
      const value = known.attributes[attribute];
      if (value === undefined) throw new UnresolvableError(`${logicalId}.${attribute} has no local value`);
      return value;
    }
    return this.unknown(stackName, logicalId, attribute, markers);
  }

  private unknown(
    stackName: string,
    logicalId: string,
    attribute: string | undefined,
    markers: boolean,
  ): string {
    const resource = this.template(stackName).Resources?.[logicalId];
    if (!resource) throw new UnresolvableError(`${stackName} has no resource or parameter ${logicalId}`);
    if (EMULATED_TYPES.has(resource.Type)) throw new PendingError(stackName, logicalId);
    if (markers) return attribute === undefined ? logicalId : `${logicalId}.${attribute}`;
    const what = attribute === undefined ? `Ref ${logicalId}` : `${logicalId}.${attribute}`;
    throw new UnresolvableError(`${what} (${resource.Type}) has no local equivalent`);
  }

  private sub(stackName: string, arg: unknown, markers: boolean): string {
    let source: unknown = arg;
    let variables: Record<string, unknown> = {};
    if (Array.isArray(arg)) {
      source = arg[0];
      const resolved = this.walk(stackName, arg[1] ?? {}, markers);
      if (!isRecord(resolved)) throw new UnresolvableError("bad Fn::Sub variables");
      variables = resolved;
    }
    if (typeof source !== "string") throw new UnresolvableError("bad Fn::Sub");
    return source.replace(/\$\{([^}]*)\}/g, (_whole, name: string) => {
      if (name.startsWith("!")) return `\${${name.slice(1)}}`;
      if (name in variables) return this.scalar(variables[name], "Fn::Sub");
      const dot = name.indexOf(".");
      const value =
        dot > 0 && !name.startsWith("AWS::")
          ? this.getAtt(stackName, name.slice(0, dot), name.slice(dot + 1), markers)
          : this.ref(stackName, name, markers);
      return this.scalar(value, "Fn::Sub");
    });
  }

  private template(stackName: string): CfnTemplate {
    const template = this.options.templates[stackName];
    if (!template) throw new UnresolvableError(`no template ${stackName}`);
    return template;
  }
}
