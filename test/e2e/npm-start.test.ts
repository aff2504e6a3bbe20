// `npm start` as a newcomer runs it: the sandbox comes up, curl-level HTTPS reaches the Redfish service root,
// and Ctrl-C leaves no process behind.
import { spawn } from "node:child_process";
import fs from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { freePort } from "../../sandbox/ports";
import { ensureBuild } from "../../scripts/ensure-build";

const root = path.resolve(__dirname, "../..");

function descendants(pid: number): number[] {
  // /proc is the source of truth for "no process left behind"; no shell involved.
  const children: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) children.push(Number(entry), ...descendants(Number(entry)));
    } catch {
      // process ended while we looked
    }
  }
  return children;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** POSTs a CSI-style DataVolume (name `pvc-…`) into the demo's policed namespace through the sandbox API server. */
async function createDataVolume(apiPort: number, name: string, labels: Record<string, string>): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://127.0.0.1:${apiPort}/apis/cdi.kubevirt.io/v1beta1/namespaces/tenant1-vms/datavolumes`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      apiVersion: "cdi.kubevirt.io/v1beta1",
      kind: "DataVolume",
      metadata: { name, namespace: "tenant1-vms", labels },
      spec: { source: { blank: {} }, storage: { resources: { requests: { storage: "1Gi" } } } },
    }),
  });
  return { status: res.status, text: await res.text() };
}

describe("npm start", () => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "kvi-npm-start-"));
  afterAll(() => fs.rmSync(stateDir, { recursive: true, force: true }));

  it("serves the Redfish service root over HTTPS and stops everything on Ctrl-C", async () => {
    await ensureBuild(() => undefined);
    const redfishPort = await freePort();
    const apiPort = await freePort();
    const child = spawn("npm", ["start", "--silent"], {
      cwd: root,
      env: { ...process.env, REDFISH_PORT: String(redfishPort), SANDBOX_API_PORT: String(apiPort), SANDBOX_STATE_DIR: stateDir },
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group, like a terminal's foreground job: Ctrl-C signals the whole group.
      detached: true,
    });
    let output = "";
    child.stdout.on("data", d => (output += d));
    child.stderr.on("data", d => (output += d));
    try {
      await vi.waitFor(
        () => {
          if (!output.includes("Ctrl-C stops everything")) throw new Error(`npm start did not come up (exit code ${child.exitCode}):\n${output}`);
        },
        { timeout: 90_000, interval: 200 },
      );
      // The banner means everything it announces is in force: an unlabelled CSI DataVolume created at once is
      // denied by the DataVolume policy (it used to be admitted for 1-2 s after the banner), and the same
      // volume with the tenant label is admitted.
      const unlabelled = await createDataVolume(apiPort, "pvc-right-after-banner", {});
      expect(unlabelled.status, unlabelled.text).toBeGreaterThanOrEqual(400);
      expect(unlabelled.status, unlabelled.text).toBeLessThan(500);
      expect(unlabelled.text).toContain("csi-driver/cluster");
      const labelled = await createDataVolume(apiPort, "pvc-labelled", { "csi-driver/cluster": "tenant1" });
      expect(labelled.status, labelled.text).toBe(201);

      expect(output).toContain(`https://localhost:${redfishPort}/redfish/v1/`);
      expect(output).toContain(`http://127.0.0.1:${apiPort}`);
      expect(fs.existsSync(path.join(stateDir, "kubeconfig"))).toBe(true);

      const ca = fs.readFileSync(path.join(stateDir, "ca.crt"), "utf8");
      const root = await new Promise<{ status: number; body: any }>((resolve, reject) => {
        https
          .get({ host: "127.0.0.1", servername: "localhost", port: redfishPort, path: "/redfish/v1/", ca }, res => {
            let text = "";
            res.on("data", c => (text += c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
          })
          .on("error", reject);
      });
      expect(root.status).toBe(200);
      expect(root.body["@odata.id"]).toBe("/redfish/v1/");
      expect(root.body.RedfishVersion).toMatch(/^1\.\d+\.\d+$/);

      const tree = [child.pid!, ...descendants(child.pid!)];
      expect(tree.length).toBeGreaterThanOrEqual(3); // npm, the start script, and the module processes
      // What Ctrl-C does in a terminal: SIGINT to every process of the foreground process group.
      process.kill(-child.pid!, "SIGINT");
      await new Promise(r => child.once("exit", r));
      await expect.poll(() => tree.filter(alive), { timeout: 10_000, interval: 100, message: "processes of npm start still alive" }).toEqual([]);
    } finally {
      if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, "SIGKILL");
    }
  }, 150_000);
});
