// Malformed `Authorization: Bearer` headers against the BUILT module (the watcher serving Redfish over HTTPS, Kubernetes
// identities on, the sandbox API server reviewing tokens), sent as raw bytes so that nothing between the test and the
// server tidies them: each is refused with a Redfish error body, never a 5xx, and no token reaches a log. What the
// app sees answers 401; what Node's HTTP parser refuses first (a control byte, a head over its 16 KiB) answers the
// parser's 400 / 431, with the Redfish body of redfish/server.ts.
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { demoConfig } from "../../sandbox/demo";
import { startTestCluster, type TestCluster } from "../helpers/cluster";
import { encodeRequest, exchange, type RawResponse } from "../security/raw-client";

const VALID_TOKEN = "sandbox-sa-token-bearer-test-5e8a1c";
const VALID_USER = { username: "system:serviceaccount:tenant1-vms:bmc", uid: "sa-uid-bmc", groups: ["system:serviceaccounts", "system:authenticated"] };
/** In every malformed token: no log line may contain it. */
const MARK = "MALFORMED7q3";
/** A string of these UTF-8 bytes, one latin1 character a byte (the raw client writes the head as latin1). */
const utf8Bytes = (text: string) => Buffer.from(text, "utf8").toString("latin1");

let c: TestCluster;

beforeAll(async () => {
  c = await startTestCluster({
    demo: true,
    config: { redfish: { ...demoConfig.redfish, kubernetesIdentities: { enabled: true } } },
    tokens: [{ token: VALID_TOKEN, user: VALID_USER }],
  });
  await vi.waitFor(async () => expect((await c.redfish("GET", "/redfish/v1/Systems", { user: "admin:admin123" })).status).toBe(200), { timeout: 60_000, interval: 200 });
}, 180_000);

afterAll(async () => {
  await c?.stop();
});

let nextAddress = 100;
/** GET /redfish/v1/Systems with this Authorization value, from an address of its own (failed reviews back off per address). */
function getSystems(authorization: string): Promise<RawResponse> {
  const bytes = encodeRequest({ method: "GET", target: "/redfish/v1/Systems", headers: [["Authorization", authorization]] });
  return exchange({ port: c.redfishPort, ca: c.caPem, localAddress: `127.0.0.${nextAddress++}`, bytes });
}

/** The MessageId of a Redfish error body (throws when the body is not one). */
function messageId(res: RawResponse): string {
  const body = JSON.parse(res.body) as { error: { code: string; "@Message.ExtendedInfo": { MessageId: string }[] } };
  expect(body.error.code).toMatch(/^Base\.1\.[\d.]+\.\w+$/);
  return body.error["@Message.ExtendedInfo"][0].MessageId;
}

const CASES: [string, string, number][] = [
  ["an empty token", "Bearer ", 401],
  ["the scheme alone", "Bearer", 401],
  ["two spaces before the token", `Bearer  ${MARK}-two-spaces`, 401],
  ["a token with a comma", `Bearer ${MARK}-a,b`, 401],
  ["a comma and a space", `Bearer ${MARK}-a, b`, 401],
  ["non-ASCII bytes (UTF-8)", utf8Bytes(`Bearer ${MARK}-tøken-µ-☃`), 401],
  ["a 12 KiB token (kept under a digest, not as itself)", `Bearer ${MARK}${"x".repeat(12 * 1024)}`, 401],
  ["a control byte", `Bearer ${MARK}-\u0001-ctl`, 400],
  ["a DEL byte", `Bearer ${MARK}-\u007f-del`, 400],
  ["a 20 KiB token (over the HTTP parser's head limit)", `Bearer ${MARK}${"y".repeat(20 * 1024)}`, 431],
];

describe("malformed Bearer headers, over HTTPS against the built module", () => {
  it("a well-formed Bearer token is accepted (the 401s below are the headers', not the scheme's)", async () => {
    const res = await getSystems(`Bearer ${VALID_TOKEN}`);
    expect(res.status, res.body).toBe(200);
  });

  it.each(CASES)("%s: refused with a Redfish error body", async (_name, authorization, status) => {
    const res = await getSystems(authorization);
    expect(res.error).toBeUndefined();
    expect(res.status, res.body.slice(0, 300)).toBe(status);
    expect(res.headers["content-type"]).toMatch(/^application\/json/);
    expect(messageId(res)).toMatch(status === 401 ? /\.NoValidSession$/ : /\.GeneralError$/);
    expect(res.headers["x-auth-token"]).toBeUndefined();
  });

  it("logs none of the tokens", async () => {
    // A failed Basic login is logged with its user name, in order: once it is there, every earlier line is too.
    expect((await c.redfish("GET", "/redfish/v1/Systems", { user: "bearer-log-barrier:wrong" })).status).toBe(401);
    await c.watcher!.waitForLog(/"username":"bearer-log-barrier"/);
    const logs = [...c.watcher!.logs, ...(c.admission?.logs ?? [])];
    expect(logs.filter(line => line.includes("Kubernetes token")).length, "the failed reviews were logged, without their tokens").toBeGreaterThan(0);
    expect(logs.filter(line => line.includes(MARK) || line.includes(VALID_TOKEN))).toEqual([]);
  });
});
