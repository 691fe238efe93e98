import net from "node:net";
import tls from "node:tls";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type ConnectPolicy, createGuardedConnector } from "../../shared/adapters/http/guarded-connection.ts";
import { DownloadRefused } from "../../shared/domain/downloads.ts";

const aws: ConnectPolicy = { mode: "aws", timeoutMs: 1_000 };

describe("createGuardedConnector", () => {
  afterEach(() => vi.restoreAllMocks());

  const connectWith = (
    policy: ConnectPolicy,
    hostname: string,
    resolve?: (host: string) => Promise<Array<{ address: string; family: number }>>,
  ) =>
    new Promise<Error | null>((done) => {
      const connector = createGuardedConnector(policy, resolve ? { resolve } : {});
      connector({ hostname, protocol: "https:", port: "443" }, (error, socket) => {
        socket?.destroy();
        done(error);
      });
    });

  it.each(["10.0.0.1", "169.254.169.254", "127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "[fd00:ec2::254]"])(
    "refuses IP literal %s before any socket exists",
    async (hostname) => {
      const netConnect = vi.spyOn(net, "connect");
      const tlsConnect = vi.spyOn(tls, "connect");
      const error = await connectWith(aws, hostname);
      expect(error).toBeInstanceOf(DownloadRefused);
      expect((error as DownloadRefused).code).toBe("ADDRESS_NOT_ALLOWED");
      expect(netConnect).not.toHaveBeenCalled();
      expect(tlsConnect).not.toHaveBeenCalled();
    },
  );

  it("refuses a name when any of its addresses is forbidden (DNS rebinding), before any socket exists", async () => {
    const netConnect = vi.spyOn(net, "connect");
    const tlsConnect = vi.spyOn(tls, "connect");
    const resolve = vi.fn(async () => [
      { address: "93.184.216.34", family: 4 },
      { address: "169.254.169.254", family: 4 },
    ]);
    const error = await connectWith(aws, "cdn.example.com", resolve);
    expect((error as DownloadRefused).code).toBe("ADDRESS_NOT_ALLOWED");
    expect((error as Error).message).toMatch(/cdn.example.com resolves to 169.254.169.254/);
    expect(resolve).toHaveBeenCalledWith("cdn.example.com");
    expect(netConnect).not.toHaveBeenCalled();
    expect(tlsConnect).not.toHaveBeenCalled();
  });

  it("turns a failed resolution into a retryable NETWORK refusal", async () => {
    const error = await connectWith(aws, "nowhere.invalid", async () => {
      throw Object.assign(new Error("getaddrinfo ENOTFOUND"), { code: "ENOTFOUND" });
    });
    expect(error).toMatchObject({ code: "NETWORK", retryable: true });
  });
});
