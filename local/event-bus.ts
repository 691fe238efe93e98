import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface BusEvent {
  busName: string;
  source: string;
  detailType: string;
  detail: unknown;
  time: string;
}

/**
 * EventBridge, locally: a PutEvents endpoint the functions' real EventBridge SDK client talks to
 * (AWS_ENDPOINT_URL_EVENTBRIDGE). Events are kept in memory (tests read them) and logged.
 */
export class LocalEventBus {
  readonly events: BusEvent[] = [];
  private server: Server | undefined;

  constructor(private readonly log: (line: string) => void = () => undefined) {}

  async listen(): Promise<string> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const target = String(req.headers["x-amz-target"] ?? "");
        if (!target.endsWith(".PutEvents")) {
          res.writeHead(400, { "content-type": "application/x-amz-json-1.1" });
          res.end(
            JSON.stringify({ __type: "UnknownOperationException", message: `${target} is not emulated` }),
          );
          return;
        }
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
          Entries?: {
            EventBusName?: string;
            Source?: string;
            DetailType?: string;
            Detail?: string;
            Time?: number;
          }[];
        };
        const entries = (body.Entries ?? []).map((entry) => {
          const event: BusEvent = {
            busName: entry.EventBusName ?? "default",
            source: entry.Source ?? "",
            detailType: entry.DetailType ?? "",
            detail: JSON.parse(entry.Detail ?? "null"),
            time: new Date(entry.Time ? entry.Time * 1000 : Date.now()).toISOString(),
          };
          this.events.push(event);
          this.log(`event ${event.detailType} ${JSON.stringify(event.detail).slice(0, 160)}`);
          return { EventId: `local-${this.events.length}` };
        });
        res.writeHead(200, { "content-type": "application/x-amz-json-1.1" });
        res.end(JSON.stringify({ FailedEntryCount: 0, Entries: entries }));
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(0, "127.0.0.1", () => resolve()));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
