// Preloaded (NODE_OPTIONS=--require) into the module processes when `npm run bench -- --cpu-prof DIR` runs: the
// first SIGUSR2 starts V8's CPU profiler through the inspector API, the next one stops it and writes
// DIR/cpu-<pid>-<n>.cpuprofile. (node --cpu-prof is not allowed in NODE_OPTIONS and would profile the whole
// life of the process, start-up included, not just the load of the bench phases.)
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const inspector = require("node:inspector");

const dir = process.env.BENCH_CPU_PROFILE_DIR;
if (dir) {
  const session = new inspector.Session();
  session.connect();
  let running = false;
  let written = 0;
  process.on("SIGUSR2", () => {
    if (!running) {
      running = true;
      session.post("Profiler.enable", () => session.post("Profiler.start"));
      return;
    }
    running = false;
    session.post("Profiler.stop", (err, result) => {
      if (err) return;
      fs.writeFileSync(path.join(dir, `cpu-${process.pid}-${++written}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
