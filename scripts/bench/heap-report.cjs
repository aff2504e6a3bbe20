// Preloaded (NODE_OPTIONS=--require) into the watcher by the benches: on SIGUSR2 it collects garbage fully, then
// writes where the process's memory is (process.memoryUsage() and V8's heap spaces, in bytes) as JSON to
// BENCH_HEAP_REPORT_FILE, so the bench can say how much of the RSS is JS heap, how much of that is the young
// generation, and what is outside; the heap used after a full collection is the live heap, which RSS cannot show
// within a few MiB (V8 returns memory to the system on its own schedule).
"use strict";
const fs = require("node:fs");
const v8 = require("node:v8");
const vm = require("node:vm");

const file = process.env.BENCH_HEAP_REPORT_FILE;
if (file) {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc");
  process.on("SIGUSR2", () => {
    gc();
    gc(); // the second one frees what finalizers of the first released
    const spaces = {};
    for (const space of v8.getHeapSpaceStatistics()) {
      spaces[space.space_name] = { committed: space.space_size, used: space.space_used_size };
    }
    const report = { memoryUsage: process.memoryUsage(), heapSizeLimit: v8.getHeapStatistics().heap_size_limit, spaces };
    // Written whole, then renamed: the bench never reads half a report.
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(report));
    fs.renameSync(`${file}.tmp`, file);
  });
}
