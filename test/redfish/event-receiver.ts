// An http subscriber on loopback for EventService deliveries: records what it accepted, answers what `answer`
// says for each attempt (1, 2, ...), and is closed by `close()`.
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";

export interface Received {
  headers: IncomingMessage["headers"];
  body: any;
}

export interface EventReceiver {
  url: string;
  /** Deliveries answered with a 2xx, in order. */
  received: Received[];
  attempts(): number;
  close(): Promise<void>;
}

export async function eventReceiver(answer: (attempt: number) => number = () => 204, path = "/events"): Promise<EventReceiver> {
  const received: Received[] = [];
  let attempts = 0;
  const server = createServer((req, res) => {
    let text = "";
    req.on("data", chunk => (text += chunk));
    req.on("end", () => {
      const status = answer(++attempts);
      if (status < 300) received.push({ headers: req.headers, body: JSON.parse(text) });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`,
    received,
    attempts: () => attempts,
    close: () => new Promise<void>(resolve => server.close(() => resolve())),
  };
}
