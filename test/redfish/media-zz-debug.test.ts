import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { it } from "vitest";
import { startTestCluster } from "../helpers/cluster";
it("ssl", async () => {
  const c = await startTestCluster({ demo: true });
  try {
    await c.waitFor(async () => (await c.redfish("GET", "/redfish/v1/", {})).status === 200, { timeoutMs: 60000 });
    fs.writeFileSync("/tmp/mt/ca.pem", c.caPem);
    console.log(c.redfishUrl, fs.readdirSync(c.stateDir));
    try { console.log(execFileSync("openssl", ["s_client", "-connect", `127.0.0.1:${c.redfishPort}`, "-servername", "localhost", "-CAfile", "/tmp/mt/ca.pem", "-showcerts"], { input: "", encoding: "utf8" }).slice(0, 3000)); } catch (e: any) { console.log(String(e.stdout).slice(0,3000), e.stderr); }
    try { console.log(execFileSync("/usr/bin/python3", ["-c", "import requests,sys; print(requests.get(sys.argv[1], verify='/tmp/mt/ca.pem').status_code)", c.redfishUrl + "/redfish/v1/"], { encoding: "utf8" })); } catch (e: any) { console.log(e.stderr?.slice(-800)); }
    fs.copyFileSync(c.stateDir + "/ca.crt", "/tmp/mt/ca.crt");
  } finally { await c.stop(); }
});
