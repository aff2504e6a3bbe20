import { execFile } from "node:child_process";
import fs from "node:fs";
import { it } from "vitest";
import { startTestCluster } from "../helpers/cluster";
const run = (cmd: string, args: string[]) => new Promise<string>(r => { const p = execFile(cmd, args, { timeout: 10000 }, (e, so, se) => r(`${e ? e.message : ""}\n${so}\n${se}`.slice(-1500))); p.stdin?.end(); });
it("ssl", async () => {
  const c = await startTestCluster({ demo: true });
  try {
    console.log("started");
    await c.waitFor(async () => (await c.redfish("GET", "/redfish/v1/", {})).status === 200, { timeoutMs: 60000 });
    fs.writeFileSync("/tmp/mt/ca.pem", c.caPem);
    console.log(c.redfishUrl, fs.readdirSync(c.stateDir));
    console.log(await run("openssl", ["s_client", "-connect", `127.0.0.1:${c.redfishPort}`, "-servername", "localhost", "-CAfile", "/tmp/mt/ca.pem"]));
    console.log(await run("/usr/bin/python3", ["-c", "import requests,sys; print(requests.get(sys.argv[1], verify='/tmp/mt/ca.pem').status_code)", c.redfishUrl + "/redfish/v1/"]));
    fs.copyFileSync(c.stateDir + "/ca.crt", "/tmp/mt/ca.crt");
  } finally { await c.stop(); }
}, 180000);
