import { isIP } from "node:net";
import { describe, expect, it } from "vitest";
import {
  type AddressPolicy,
  checkUrl,
  ipFamily,
  isAddressAllowed,
  isForbiddenAddress,
  isLoopbackAddress,
} from "../../shared/domain/address-policy.ts";
import { DownloadRefused } from "../../shared/domain/downloads.ts";

const aws: AddressPolicy = {
  mode: "aws",
  allowedHosts: [
    "cdn2.stablediffusionapi.com",
    "*.r2.dev",
    "93.184.216.34",
    "2606:4700::1",
    "10.0.0.1",
    "127.0.0.1",
  ],
};
const local: AddressPolicy = { ...aws, mode: "local", allowedHosts: ["127.0.0.1", "localhost", "::1"] };

describe("isForbiddenAddress", () => {
  const forbidden: Array<[string, string]> = [
    ["0.0.0.0", "this network"],
    ["0.255.255.255", "this network (end)"],
    ["10.0.0.1", "private 10/8"],
    ["10.255.255.255", "private 10/8 (end)"],
    ["100.64.0.1", "CGNAT"],
    ["100.100.100.200", "Alibaba metadata (CGNAT)"],
    ["100.127.255.255", "CGNAT (end)"],
    ["127.0.0.1", "loopback"],
    ["127.255.255.254", "loopback (end)"],
    ["169.254.0.1", "link-local"],
    ["169.254.169.254", "cloud metadata"],
    ["169.254.170.2", "ECS task metadata"],
    ["172.16.0.1", "private 172.16/12"],
    ["172.31.255.255", "private 172.16/12 (end)"],
    ["192.0.0.1", "IETF protocol assignments"],
    ["192.0.0.192", "Oracle metadata"],
    ["192.0.2.1", "TEST-NET-1"],
    ["192.168.0.1", "private 192.168/16"],
    ["192.168.255.255", "private 192.168/16 (end)"],
    ["198.18.0.1", "benchmarking"],
    ["198.19.255.255", "benchmarking (end)"],
    ["198.51.100.7", "TEST-NET-2"],
    ["203.0.113.9", "TEST-NET-3"],
    ["224.0.0.1", "multicast"],
    ["239.255.255.250", "multicast (SSDP)"],
    ["240.0.0.1", "reserved"],
    ["255.255.255.255", "broadcast"],
    ["::", "IPv6 unspecified"],
    ["::1", "IPv6 loopback"],
    ["0:0:0:0:0:0:0:1", "IPv6 loopback, long form"],
    ["[::1]", "IPv6 loopback, bracketed"],
    ["fc00::1", "unique local"],
    ["fdff:ffff::1", "unique local (end)"],
    ["fd00:ec2::254", "AWS metadata over IPv6"],
    ["fe80::1", "link-local"],
    ["fe80::1%eth0", "link-local with a zone"],
    ["febf:ffff::1", "link-local (end)"],
    ["fec0::1", "site-local"],
    ["ff02::1", "multicast"],
    ["ff0e::1", "multicast (global)"],
    ["::ffff:127.0.0.1", "IPv4-mapped loopback"],
    ["::ffff:7f00:1", "IPv4-mapped loopback, hex"],
    ["::ffff:169.254.169.254", "IPv4-mapped metadata"],
    ["::ffff:10.0.0.1", "IPv4-mapped private"],
    ["::ffff:0.0.0.0", "IPv4-mapped this-network"],
    ["0:0:0:0:0:ffff:192.168.1.1", "IPv4-mapped private, long form"],
    ["::ffff:0:127.0.0.1", "IPv4-translated loopback"],
    ["::127.0.0.1", "IPv4-compatible (deprecated)"],
    ["64:ff9b::7f00:1", "NAT64 of loopback"],
    ["64:ff9b::169.254.169.254", "NAT64 of metadata"],
    ["64:ff9b::a00:1", "NAT64 of 10.0.0.1"],
    ["64:ff9b:1::1", "local-use NAT64"],
    ["2002:7f00:1::1", "6to4 of loopback"],
    ["2002:a9fe:a9fe::1", "6to4 of metadata"],
    ["2001:0:4136:e378::1", "Teredo"],
    ["2001:db8::1", "documentation"],
    ["100::1", "discard-only"],
    ["localhost", "not an IP (fail closed)"],
    ["", "empty (fail closed)"],
    ["1.2.3", "malformed (fail closed)"],
    ["999.1.1.1", "malformed (fail closed)"],
  ];
  it.each(forbidden)("forbids %s (%s)", (ip) => {
    expect(isForbiddenAddress(ip)).toBe(true);
  });

  const allowed: Array<[string, string]> = [
    ["93.184.216.34", "public IPv4"],
    ["8.8.8.8", "public resolver"],
    ["1.1.1.1", "public resolver"],
    ["100.63.255.255", "just below CGNAT"],
    ["100.128.0.0", "just above CGNAT"],
    ["172.15.255.255", "just below 172.16/12"],
    ["172.32.0.0", "just above 172.16/12"],
    ["169.253.255.255", "just below link-local"],
    ["192.167.255.255", "just below 192.168/16"],
    ["198.17.255.255", "just below 198.18/15"],
    ["198.20.0.0", "just above 198.18/15"],
    ["223.255.255.255", "just below multicast"],
    ["11.0.0.1", "just above 10/8"],
    ["2606:4700::1", "public IPv6"],
    ["2a00:1450:4001:80b::200e", "public IPv6"],
    ["::ffff:93.184.216.34", "IPv4-mapped public"],
    ["64:ff9b::5db8:d822", "NAT64 of a public address"],
    ["2002:5db8:d822::1", "6to4 of a public address"],
    ["fbff:ffff::1", "just below fc00::/7"],
  ];
  it.each(allowed)("allows %s (%s)", (ip) => {
    expect(isForbiddenAddress(ip)).toBe(false);
  });

  it("knows loopback apart, for local mode", () => {
    for (const ip of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "::ffff:127.0.0.1"]) {
      expect(isLoopbackAddress(ip)).toBe(true);
      expect(isAddressAllowed(ip, { mode: "local" })).toBe(true);
      expect(isAddressAllowed(ip, { mode: "aws" })).toBe(false);
    }
    for (const ip of ["10.0.0.1", "169.254.169.254", "fd00:ec2::254", "::", "0.0.0.0"]) {
      expect(isLoopbackAddress(ip)).toBe(false);
      expect(isAddressAllowed(ip, { mode: "local" })).toBe(false);
    }
  });
});

describe("checkUrl", () => {
  const refusal = (url: string, policy: AddressPolicy): DownloadRefused => {
    try {
      checkUrl(url, policy);
    } catch (error) {
      expect(error).toBeInstanceOf(DownloadRefused);
      return error as DownloadRefused;
    }
    throw new Error(`${url} was accepted`);
  };

  it("accepts https URLs on allow-listed hosts (exact and wildcard) in aws mode", () => {
    expect(checkUrl("https://cdn2.stablediffusionapi.com/generations/a.png", aws).hostname).toBe(
      "cdn2.stablediffusionapi.com",
    );
    expect(checkUrl("https://pub-3626123a908346a7a8be8d9295f44e26.r2.dev/x.png", aws).pathname).toBe(
      "/x.png",
    );
    expect(checkUrl("HTTPS://CDN2.StableDiffusionAPI.com:443/a.png", aws).port).toBe("");
    expect(checkUrl("https://93.184.216.34/a.png", aws).hostname).toBe("93.184.216.34");
    expect(checkUrl("https://[2606:4700::1]/a.png", aws).hostname).toBe("[2606:4700::1]");
  });

  it.each([
    ["file:///etc/passwd", /Scheme file:/],
    ["ftp://cdn2.stablediffusionapi.com/a.png", /Scheme ftp:/],
    ["gopher://cdn2.stablediffusionapi.com/", /Scheme gopher:/],
    ["data:image/png;base64,AAAA", /Scheme data:/],
    ["http://cdn2.stablediffusionapi.com/a.png", /Scheme http:/],
    ["https://user:pass@cdn2.stablediffusionapi.com/a.png", /credentials/],
    ["https://user@cdn2.stablediffusionapi.com/a.png", /credentials/],
    ["https://evil.example.com/a.png", /not an allowed/],
    ["https://cdn2.stablediffusionapi.com.evil.com/a.png", /not an allowed/],
    ["https://r2.dev/a.png", /not an allowed/],
    ["https://evilr2.dev/a.png", /not an allowed/],
    ["https://cdn2.stablediffusionapi.com:8443/a.png", /Port 8443/],
    ["https://169.254.169.254/latest/meta-data/", /not an allowed/],
    ["not a url", /not a valid/],
  ])("refuses %s in aws mode", (url, message) => {
    const error = refusal(url, aws);
    expect(error.code).toBe("URL_NOT_ALLOWED");
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(message);
  });

  it.each([
    "https://10.0.0.1/a.png",
    "https://127.0.0.1/a.png",
    "https://0x7f.1/a.png", // the URL parser normalises it to 127.0.0.1
    "https://2130706433/a.png",
  ])("refuses forbidden IP literals even when allow-listed: %s", (url) => {
    expect(refusal(url, aws).code).toBe("ADDRESS_NOT_ALLOWED");
  });

  it("allows http and loopback in local mode, but only for allow-listed hosts", () => {
    expect(checkUrl("http://127.0.0.1:4010/out/1.png", local).port).toBe("4010");
    expect(checkUrl("http://localhost:4010/out/1.png", local).hostname).toBe("localhost");
    expect(checkUrl("http://[::1]:4010/out/1.png", local).hostname).toBe("[::1]");
    expect(refusal("http://127.0.0.2:4010/a.png", local).code).toBe("URL_NOT_ALLOWED");
    expect(refusal("http://169.254.169.254/latest/meta-data/", local).code).toBe("URL_NOT_ALLOWED");
    expect(refusal("file:///etc/passwd", local).code).toBe("URL_NOT_ALLOWED");
    expect(refusal("http://user:pw@127.0.0.1:4010/a.png", local).code).toBe("URL_NOT_ALLOWED");
    const privateAllowListed = { ...local, allowedHosts: ["10.0.0.1"] };
    expect(refusal("http://10.0.0.1/a.png", privateAllowListed).code).toBe("ADDRESS_NOT_ALLOWED");
  });

  it("refuses everything when the allow-list is empty", () => {
    expect(refusal("https://cdn2.stablediffusionapi.com/a.png", { ...aws, allowedHosts: [] }).code).toBe(
      "URL_NOT_ALLOWED",
    );
  });
});

describe("ipFamily", () => {
  // The rules must read an address exactly as Node's socket layer would, without importing node:net
  // into the domain: every answer is compared with net.isIP.
  const written = [
    "0.0.0.0",
    "255.255.255.255",
    "256.1.1.1",
    "01.2.3.4",
    "1.2.3.04",
    "1.2.3",
    "1.2.3.4.5",
    "1..2.3",
    " 1.2.3.4",
    "::",
    "::1",
    ":::1",
    "1::",
    "1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7::",
    "::2:3:4:5:6:7:8",
    "1::2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8::",
    "1::2::3",
    ":1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:",
    "12345::1",
    "ABCD:ef01::1",
    "g::1",
    "::ffff:1.2.3.4",
    "::1.2.3.4",
    "1.2.3.4::",
    "1.2.3.4::1",
    "1:2:3:4:5:6:1.2.3.4",
    "1:2:3:4:5:6:7:1.2.3.4",
    "1:2:3:4:5::1.2.3.4",
    "1:2:3:4:5:6::1.2.3.4",
    "::ffff:1.2.3",
    "::ffff:01.2.3.4",
    "64:ff9b::169.254.169.254",
    "::1.2.3.4:5",
    "localhost",
    "",
  ];
  it.each(written)("reads %j as net.isIP does", (text) => {
    expect(ipFamily(text)).toBe(isIP(text));
  });

  it("agrees with net.isIP on 20,000 generated strings", () => {
    let seed = 0x2545f491;
    /** mulberry32: a seeded generator, so a failure names strings that fail again. */
    const random = (n: number) => {
      seed = (seed + 0x6d2b79f5) >>> 0;
      let t = Math.imul(seed ^ (seed >>> 15), seed | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4_294_967_296) * n);
    };
    const hex = () => (random(0x10000) >>> random(16)).toString(16);
    const dec = () => String(random(300));
    const generators = [
      // Noise over the characters addresses are made of.
      () => Array.from({ length: 1 + random(24) }, () => "0123456789abcdef:.:."[random(20)]).join(""),
      // Well-formed IPv6, often compressed, sometimes with a dotted tail, then perhaps broken.
      () => {
        const count = random(10);
        const groups = Array.from({ length: count }, hex);
        if (random(3) === 0) groups.push([dec(), dec(), dec(), dec()].join("."));
        let text = groups.join(":");
        if (random(2) === 0) {
          const at = random(groups.length + 1);
          text = `${groups.slice(0, at).join(":")}::${groups.slice(at).join(":")}`;
        }
        return text;
      },
      // Dotted quads with out-of-range and zero-padded parts.
      () => Array.from({ length: 3 + random(3) }, () => (random(5) === 0 ? `0${dec()}` : dec())).join("."),
    ];
    const disagreements: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      const text = (generators[random(generators.length)] as () => string)();
      if (ipFamily(text) !== isIP(text)) disagreements.push(text);
    }
    expect(disagreements).toEqual([]);
  });
});
