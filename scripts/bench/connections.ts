// Established TCP connections from one process to one local port, read from /proc (Linux): the sockets the
// process holds (/proc/<pid>/fd → socket:[inode]) matched with its network namespace's TCP table. No tooling
// and no change to the server: the bench and the reliability suite count the watcher's connections to the
// sandbox API server with it.
import fs from "node:fs";

const ESTABLISHED = "01";

function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      if (inode) inodes.add(inode);
    } catch {
      // the descriptor was closed meanwhile
    }
  }
  return inodes;
}

/** Connections in state ESTABLISHED from process `pid` to `remotePort` (IPv4 and IPv6 tables). */
export function establishedConnections(pid: number, remotePort: number): number {
  const inodes = socketInodes(pid);
  let count = 0;
  for (const table of ["tcp", "tcp6"]) {
    let text: string;
    try {
      text = fs.readFileSync(`/proc/${pid}/net/${table}`, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10) continue;
      const port = parseInt(fields[2].split(":")[1], 16);
      if (port === remotePort && fields[3] === ESTABLISHED && inodes.has(fields[9])) count++;
    }
  }
  return count;
}
