// A request body, read once with a size limit before anything else looks at the request. Under @hono/node-server
// it is read from the IncomingMessage itself: going through the Web Request (`c.req.text()`) builds an undici
// Request and a web stream per POST, which cost more than the Reset behind it. Tests that call app.request()
// without a socket get the Web Request's body instead.
import type { IncomingMessage } from "node:http";
import type { Context } from "hono";
import { baseError, type RedfishError } from "./errors";
import { incomingMessage, requestHeader } from "./odata";

export interface BodyLimits {
  /** Bodies above this are refused with 413. */
  maxBytes: number;
  /**
   * Oversized bodies up to this size are read and dropped before the 413: a server that answers and closes while
   * the client is still sending makes the kernel reset the connection, and the client never sees the 413 (the
   * HTTP/1.1 lingering-close problem). Larger ones are refused unread.
   */
  drainBytes: number;
}

type Outcome = { text: string } | { tooLarge: true };

function tooLarge(maxBytes: number): RedfishError {
  return baseError(413, "GeneralError", [], { resolution: `Send a request body of at most ${maxBytes} bytes.` });
}

/** The client went away before its body was complete: its doing, a 400 (nobody will read it). */
function incomplete(): RedfishError {
  return baseError(400, "GeneralError", [], { resolution: "Send the complete request body; the connection ended before it was read." });
}

/**
 * Reads `source` to its end, keeping at most `limits.maxBytes`; past `limits.drainBytes` it stops reading (the
 * socket is left paused, not destroyed, so the 413 can still be written).
 */
function readIncoming(source: IncomingMessage, limits: BodyLimits): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (outcome: Outcome | Error) => {
      source.off("data", onData);
      source.off("end", onEnd);
      source.off("error", onFailure);
      source.off("close", onFailure);
      if (outcome instanceof Error) reject(outcome);
      else resolve(outcome);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limits.maxBytes) chunks.push(chunk);
      else if (size > limits.drainBytes) {
        source.pause();
        settle({ tooLarge: true });
      }
    };
    const onEnd = () => settle(size > limits.maxBytes ? { tooLarge: true } : { text: Buffer.concat(chunks, size).toString("utf8") });
    const onFailure = () => settle(new Error("request body incomplete"));
    source.on("data", onData);
    source.once("end", onEnd);
    source.once("error", onFailure);
    source.once("close", onFailure);
  });
}

/** The same over a Web Request body (app.request in tests). */
async function readWeb(source: ReadableStream<Uint8Array>, limits: BodyLimits): Promise<Outcome> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of source) {
    size += chunk.length;
    if (size > limits.drainBytes) return { tooLarge: true };
    if (size <= limits.maxBytes) chunks.push(chunk);
  }
  return size > limits.maxBytes ? { tooLarge: true } : { text: Buffer.concat(chunks, size).toString("utf8") };
}

/** The request body as text: 413 above the limit (announced or counted), 400 when the client went away mid-body. */
export async function readBody(c: Context, limits: BodyLimits): Promise<string> {
  const announced = Number(requestHeader(c, "content-length"));
  if (announced > limits.drainBytes) throw tooLarge(limits.maxBytes);
  const incoming = incomingMessage(c);
  let outcome: Outcome;
  try {
    if (incoming && typeof incoming.read === "function") {
      outcome = incoming.readableEnded ? { text: "" } : await readIncoming(incoming, limits);
    } else {
      const body = c.req.raw.body;
      outcome = body ? await readWeb(body, limits) : { text: "" };
    }
  } catch {
    throw incomplete();
  }
  if ("tooLarge" in outcome) throw tooLarge(limits.maxBytes);
  return outcome.text;
}
