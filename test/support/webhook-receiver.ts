import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface Delivery {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  answered: number;
}

/**
 * A client's webhook endpoint inside the test: records every delivery and answers with the status
 * `answer` picks (200 unless told otherwise per path).
 */
export async function startWebhookReceiver(): Promise<{
  url: string;
  deliveries: Delivery[];
  answer: (path: string, statuses: number[]) => void;
  stop(): Promise<void>;
}> {
  const deliveries: Delivery[] = [];
  const scripted = new Map<string, number[]>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const path = req.url ?? "/";
      const status = scripted.get(path)?.shift() ?? 200;
      deliveries.push({
        path,
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
        answered: status,
      });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    deliveries,
    answer: (path, statuses) => scripted.set(path, [...statuses]),
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
