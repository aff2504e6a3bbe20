// Fuzzing of every Redfish endpoint (paths, methods, headers, bodies) against the app backed by the sandbox
// cluster, so that valid actions really reach KubeVirt: zero 5xx, zero crashes; the count is printed.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUTH } from "./fixtures";
import { startSandboxService, type SandboxService } from "./sandbox-service";

const SYSTEM = "/redfish/v1/Systems/tenant1-vms.vm-a";
const RESET = `${SYSTEM}/Actions/ComputerSystem.Reset`;

let s: SandboxService;
beforeAll(async () => {
  s = await startSandboxService();
});
afterAll(async () => {
  await s?.stop();
});

describe("fuzzing", () => {
  it("answers every mutated request without a 5xx", async () => {
    const paths = [
      "/redfish",
      "/redfish/v1/",
      "/redfish/v1/$metadata",
      "/redfish/v1/odata",
      "/redfish/v1/Systems",
      SYSTEM,
      RESET,
      `${SYSTEM}/EthernetInterfaces`,
      `${SYSTEM}/EthernetInterfaces/default`,
      "/redfish/v1/Chassis/tenant1",
      "/redfish/v1/Managers/tenant1-vms.vm-a",
      "/redfish/v1/SessionService",
      "/redfish/v1/SessionService/Sessions",
      "/redfish/v1/SessionService/Sessions/abc",
      "/redfish/v1/AccountService/Accounts/alice",
      "/redfish/v1/TaskService/Tasks/1",
    ];
    const pathMutations = (p: string) => [p, `${p}/`, `${p}//`, `${p}/%00`, `${p}/%ZZ`, `${p}/..%2F..`, `${p}/${"é".repeat(300)}`, `${p}?$top=1`, `${p}?%%`, p.toLowerCase()];
    const bodies = [
      undefined,
      "",
      "{",
      "null",
      "0",
      "[]",
      '"str"',
      "{}",
      '{"ResetType":"On"}',
      '{"ResetType":{"x":1}}',
      '{"Boot":null}',
      '{"Boot":{"BootSourceOverrideTarget":["Pxe"]}}',
      '{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Sometimes"}}',
      '{"UserName":"alice","Password":{}}',
      '{"UserName":"' + "u".repeat(10_000) + '","Password":"p"}',
      '{"__proto__":{"admin":true},"Boot":{}}',
      '{"constructor":{"prototype":{"x":1}}}',
      "\u0000\u0001\u0002",
      '{"a":' + "[".repeat(5000) + "]".repeat(5000) + "}",
    ];
    const headerSets: Record<string, string>[] = [
      { Authorization: AUTH.alice, "Content-Type": "application/json" },
      { Authorization: "Basic" },
      { Authorization: "Basic =====" },
      { Authorization: `Basic ${Buffer.from("alice").toString("base64")}` },
      { "X-Auth-Token": "" },
      { "X-Auth-Token": "x".repeat(4096) },
      { Authorization: AUTH.alice, "If-Match": "garbage" },
      { Authorization: AUTH.alice, "If-None-Match": "*" },
      { Authorization: AUTH.alice, "Content-Type": "text/plain" },
      { Authorization: AUTH.alice, "OData-Version": "" },
      { Authorization: AUTH.alice, "X-Forwarded-For": "not-an-ip, ::1, 999.1.1.1" },
    ];
    const methods = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"];
    let considered = 0;
    let sent = 0;
    const failures: string[] = [];
    const statuses = new Map<number, number>();
    for (const base of paths) {
      for (const path of pathMutations(base)) {
        for (const method of methods) {
          for (const headers of headerSets) {
            const bodyChoices = method === "GET" || method === "HEAD" ? [undefined] : bodies;
            for (const body of bodyChoices) {
              considered++;
              // keep the run short: a deterministic sample of the combinations
              if (considered % (headers === headerSets[0] ? 5 : 60) !== 0) continue;
              sent++;
              // one client address per header set: failed logins of one set must not lock out the others
              const address = `192.0.2.${headerSets.indexOf(headers) + 1}`;
              const res = await s.app.request(path, { method, headers, ...(body !== undefined ? { body } : {}) }, { incoming: { socket: { remoteAddress: address } } });
              statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
              if (res.status >= 500 && res.status !== 501) failures.push(`${res.status} ${method} ${path} ${JSON.stringify(headers)} ${body?.slice(0, 40)} ${await res.clone().text()}`);
              await res.arrayBuffer();
            }
          }
        }
      }
    }
    console.log(`fuzzing: ${sent} requests sent (sampled from ${considered} combinations), statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
    expect(sent).toBeGreaterThan(4000);
    // the sample reaches the handlers (and the cluster), not just authentication and routing
    const handled = [200, 204, 304, 400, 412].reduce((n, status) => n + (statuses.get(status) ?? 0), 0);
    expect(handled).toBeGreaterThan(300);
    expect(failures).toEqual([]);
  }, 120_000);
});
