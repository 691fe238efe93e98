import { describe, expect, it } from "vitest";
import { main } from "../../packages/client/src/cli.ts";
import { EXIT, helpText, parseCli, UsageError } from "../../packages/client/src/cli-args.ts";

const ENV = { CONTROLNET_API_URL: "http://127.0.0.1:3000", CONTROLNET_API_KEY: "cnk_test" };
const RUN = ["run", "--control-image", "./sketch.png", "--controlnet", "canny", "--out", "./out"];

const usageError = (argv: string[], env: Record<string, string> = ENV): string => {
  try {
    parseCli(argv, env);
  } catch (error) {
    if (error instanceof UsageError) return error.message;
    throw error;
  }
  throw new Error(`no usage error for ${argv.join(" ")}`);
};

describe("cnctl's command line", () => {
  it("reads the command, its flags and the API from the environment", () => {
    const parsed = parseCli([...RUN, "--prompt", "a lighthouse", "--json", "--wait-timeout", "90"], ENV);
    expect(parsed).toMatchObject({
      kind: "command",
      command: "run",
      globals: { apiUrl: ENV.CONTROLNET_API_URL, apiKey: "cnk_test", json: true, quiet: false },
      values: { "control-image": "./sketch.png", prompt: "a lighthouse", "wait-timeout": "90" },
    });
  });

  it("lets the flags win over the environment, and takes global flags before the command", () => {
    const parsed = parseCli(
      ["--api-url", "https://api.example.test", "--api-key=cnk_flag", "--timeout", "2.5", "get", "01ID"],
      ENV,
    );
    expect(parsed).toMatchObject({
      command: "get",
      positionals: ["01ID"],
      globals: { apiUrl: "https://api.example.test", apiKey: "cnk_flag", timeoutMs: 2_500 },
    });
  });

  it("answers help for --help, -h, no arguments and `help`, globally or per command", () => {
    expect(parseCli([], {})).toEqual({ kind: "help", command: null });
    expect(parseCli(["--help"], {})).toEqual({ kind: "help", command: null });
    expect(parseCli(["help"], {})).toEqual({ kind: "help", command: null });
    expect(parseCli(["run", "-h"], {})).toEqual({ kind: "help", command: "run" });
    expect(helpText("run")).toContain("--control-image");
    expect(helpText(null)).toMatch(/Exit codes: 0 success; 1 job failed or cancelled; 2 usage error; 3 API/);
  });

  it("refuses unknown flags, missing values, stray or missing arguments and bad numbers", () => {
    expect(usageError([...RUN, "--colour", "red"])).toBe("Unknown option '--colour'.");
    expect(usageError(["get", "01ID", "--status", "queued"])).toBe("Unknown option '--status'.");
    expect(usageError(["run", "--out"])).toMatch(/--out <value>' argument missing/);
    expect(usageError(["get"])).toBe("get takes <job id>; got none.");
    expect(usageError(["get", "a", "b"])).toBe('get takes <job id>; got "a" "b".');
    expect(usageError(["list", "extra"])).toBe('list takes no arguments; got "extra".');
    expect(usageError(["frobnicate"])).toBe('Unknown command "frobnicate".');
    expect(usageError(["--json"])).toBe("No command given.");
    expect(usageError(["run", "--control-image", "x.png", "--controlnet", "canny"])).toBe("run needs --out.");
    expect(usageError(["get", "x", "--timeout", "0"])).toMatch(
      /--timeout must be a number of seconds above 0/,
    );
    expect(usageError(["get", "x"], { CONTROLNET_API_URL: ENV.CONTROLNET_API_URL })).toMatch(
      /CONTROLNET_API_KEY or pass --api-key/,
    );
    expect(usageError(["get", "x"], { CONTROLNET_API_KEY: "k" })).toMatch(
      /CONTROLNET_API_URL or pass --api-url/,
    );
    expect(usageError(["get", "x", "--api-url", "ftp://host"])).toMatch(/must be an http\(s\) URL/);
  });
});

describe("cnctl's exit codes for usage errors", () => {
  const io = (env: Record<string, string> = ENV) => {
    const stdout: string[] = [];
    const stderr: string[] = [];
    return {
      stdout,
      stderr,
      io: {
        stdout: { write: (text: string) => stdout.push(text) },
        stderr: { write: (text: string) => stderr.push(text), isTTY: false },
        env,
        signal: new AbortController().signal,
      },
    };
  };

  it("exits 2 with the reason on stderr and nothing on stdout, --json or not", async () => {
    for (const argv of [
      [...RUN, "--bogus"],
      ["list", "--limit", "0", "--json"],
      ["list", "--status", "done", "--json"],
      [...RUN, "--samples", "two", "--json"],
    ]) {
      const run = io();
      expect(await main(argv, run.io)).toBe(EXIT.usage);
      expect(run.stdout).toEqual([]);
      expect(run.stderr.join("")).toMatch(/^cnctl: .+\nRun 'cnctl (run |list )?--help' for usage\.\n$/);
    }
  });

  it("exits 0 and prints help on stdout for --help", async () => {
    const run = io({});
    expect(await main(["--help"], run.io)).toBe(EXIT.ok);
    expect(run.stdout.join("")).toContain("Usage: cnctl <command> [options]");
  });
});
