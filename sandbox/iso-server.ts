// A local HTTP server with boot images for the sandbox: what a ZTP pipeline's image server would be.
//   /images/<name>.iso        a deterministic image of `sizeBytes` (default 4 MiB), with Content-Length
//   /slow/<name>.iso          the same, sent in 64 KiB chunks every `slowChunkIntervalMs` (rising progress)
//   anything else             404
// Images are generated on the fly (a deterministic byte pattern), so nothing large is kept in memory or on disk.
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface IsoServerOptions {
  port?: number;
  sizeBytes?: number;
  slowChunkIntervalMs?: number;
}

export interface IsoServer {
  url: string;
  port: number;
  /** Number of image downloads started, by path: lets tests see that the importer really fetched. */
  downloads: Map<string, number>;
  close(): Promise<void>;
}

const CHUNK = 64 * 1024;

function chunkFor(index: number): Buffer {
  const buf = Buffer.alloc(CHUNK);
  // Cheap deterministic content: the chunk index repeated, so truncation shows up in a checksum.
  buf.fill(index % 251);
  if (index === 0) buf.write("CD001", 0x8001, "latin1"); // ISO 9660 volume descriptor magic, for `file`
  return buf;
}

export async function startIsoServer(opts: IsoServerOptions = {}): Promise<IsoServer> {
  const sizeBytes = opts.sizeBytes ?? 4 * 1024 * 1024;
  const slowInterval = opts.slowChunkIntervalMs ?? 50;
  const downloads = new Map<string, number>();

  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const match = /^\/(images|slow)\/[A-Za-z0-9._-]+\.iso$/.exec(path);
    if (!match || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    const slow = match[1] === "slow";
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(sizeBytes) });
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    downloads.set(path, (downloads.get(path) ?? 0) + 1);
    let sent = 0;
    let index = 0;
    const writeNext = (): void => {
      while (sent < sizeBytes) {
        const chunk = chunkFor(index++).subarray(0, Math.min(CHUNK, sizeBytes - sent));
        sent += chunk.length;
        const more = res.write(chunk);
        if (slow) {
          if (sent < sizeBytes) setTimeout(writeNext, slowInterval);
          else res.end();
          return;
        }
        if (!more) {
          res.once("drain", writeNext);
          return;
        }
      }
      res.end();
    };
    res.on("close", () => {
      sent = sizeBytes; // client went away: stop producing
    });
    writeNext();
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    downloads,
    close: () =>
      new Promise<void>(resolve => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
