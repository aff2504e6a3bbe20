// The baseline of the benchmark: a bare Hono app on the same @hono/node-server adaptor, with the same TLS
// certificate, as its own Node process like the watcher. GET answers a fixed body of the size of the measured
// Redfish response; POST reads the request body and answers a fixed body of the size of an AdmissionReview
// response. No authentication, no routing beyond that, no cache lookup: what the machine can do at best.
//
// Started by scripts/bench/index.ts: env BENCH_TLS_KEY, BENCH_TLS_CERT (paths), BENCH_GET_BODY,
// BENCH_POST_BODY (paths of the bodies to serve); prints {"port": N} on stdout once listening.
import fs from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createAdaptorServer } from "@hono/node-server";
import { Hono } from "hono";

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const getBody = fs.readFileSync(required("BENCH_GET_BODY"));
const postBody = fs.readFileSync(required("BENCH_POST_BODY"));

const app = new Hono();
app.get("*", () => new Response(getBody, { headers: { "Content-Type": "application/json" } }));
app.post("*", async c => {
  await c.req.text();
  return new Response(postBody, { headers: { "Content-Type": "application/json" } });
});

const server = createAdaptorServer({
  fetch: app.fetch,
  createServer: createHttpsServer,
  serverOptions: { cert: fs.readFileSync(required("BENCH_TLS_CERT")), key: fs.readFileSync(required("BENCH_TLS_KEY")), minVersion: "TLSv1.2" },
}) as Server;
server.on("error", err => {
  console.error(`baseline server: ${err.message}`);
  process.exit(1);
});
server.listen(0, () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
