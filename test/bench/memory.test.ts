// scripts/bench/memory.ts against a real Node process that preloads heap-report.cjs, as bench:watcher runs the watcher.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { heapReport, heapReportEnv, rssBytes } from "../../scripts/bench/memory";

const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill("SIGKILL");
});

/** A Node process that holds ~20 MiB of Buffers and a few MiB of objects, and prints "ready". */
async function startHolder(env: Record<string, string>): Promise<ChildProcess> {
  const script = `globalThis.kept = [Buffer.alloc(20 * 1024 * 1024, 1), Array.from({ length: 100000 }, (_, i) => ({ i }))]; console.log("ready"); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ["-e", script], { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "pipe", "inherit"] });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (chunk: Buffer) => chunk.toString().includes("ready") && resolve());
    child.once("exit", code => reject(new Error(`the process exited (${code})`)));
  });
  return child;
}

describe("heapReport", () => {
  it("tells how a process's memory divides between V8's heap, its young generation, external memory and the rest", async () => {
    const file = path.join(os.tmpdir(), `heap-report-test-${process.pid}.json`);
    const child = await startHolder(heapReportEnv(file));
    const report = await heapReport(child.pid!, file);
    fs.rmSync(file, { force: true });

    expect(report.externalMiB).toBeGreaterThanOrEqual(20);
    expect(report.heapUsedMiB).toBeGreaterThan(2);
    expect(report.heapCommittedMiB).toBeGreaterThanOrEqual(report.heapUsedMiB);
    expect(report.youngGenerationMiB).toBeGreaterThan(0);
    expect(report.youngGenerationMiB).toBeLessThan(report.heapCommittedMiB);
    expect(report.fileBackedMiB).toBeGreaterThan(5);
    expect(report.outsideHeapMiB).toBeGreaterThan(0);
    // The parts add up to the RSS the process measured.
    expect(report.heapCommittedMiB + report.externalMiB + report.outsideHeapMiB).toBeCloseTo(report.rssMiB, 0);
    // ... which is the RSS /proc shows for it.
    expect(Math.abs(report.rssMiB - rssBytes(child.pid!).rss / 1024 / 1024)).toBeLessThan(5);
  }, 30_000);

  it("passes Node options on (the young generation of a 1 MiB semi-space)", async () => {
    const file = path.join(os.tmpdir(), `heap-report-test-small-${process.pid}.json`);
    const env = heapReportEnv(file);
    const child = await startHolder({ ...env, NODE_OPTIONS: `${env.NODE_OPTIONS} --max-semi-space-size=1` });
    const report = await heapReport(child.pid!, file);
    fs.rmSync(file, { force: true });
    expect(report.youngGenerationMiB).toBeLessThanOrEqual(2);
  }, 30_000);

  it("fails with a clear error when the process does not answer (it was started without heap-report.cjs)", async () => {
    const child = await startHolder({});
    await expect(heapReport(child.pid!, path.join(os.tmpdir(), `never-${process.pid}.json`), 500)).rejects.toThrow(
      `no heap report from process ${child.pid} within 500 ms`,
    );
  });
});
