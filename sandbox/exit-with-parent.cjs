// Preloaded (node --require) into the module processes the sandbox starts: when the process that started
// them disappears (Ctrl-C, a killed test runner), they exit too, so no module process is ever left behind.
"use strict";
const parent = process.ppid;
setInterval(() => {
  try {
    process.kill(parent, 0);
  } catch {
    process.exit(0);
  }
  if (process.ppid !== parent) process.exit(0);
}, 500).unref();
