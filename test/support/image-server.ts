import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import sharp from "sharp";

/** A loopback server with one control image (a white square on black), as a client's CDN would serve it. */
export async function startImageServer(): Promise<{ url: string; stop(): Promise<void> }> {
  const png = await sharp({ create: { width: 96, height: 96, channels: 3, background: "#000" } })
    .composite([
      {
        input: await sharp({ create: { width: 48, height: 48, channels: 3, background: "#fff" } })
          .png()
          .toBuffer(),
        top: 24,
        left: 24,
      },
    ])
    .png()
    .toBuffer();
  const server: Server = createServer((req, res) => {
    if (req.url === "/control.png") {
      res.writeHead(200, { "content-type": "image/png", "content-length": png.byteLength });
      res.end(png);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/control.png`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
