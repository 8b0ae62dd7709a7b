/**
 * Process accounting from /proc (Linux): CPU seconds (utime + stime of the process and its
 * threads, /proc/<pid>/stat fields 14-15, in clock ticks) and resident memory. Reading /proc costs
 * the measured process nothing, so the gateway is measured from outside, exactly like haproxy.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let ticksPerSecond = 100;
try {
  ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
} catch {
  // getconf is part of libc-bin on Debian; 100 is the Linux default (USER_HZ) when it is missing.
}

/** CPU seconds (user + system) consumed so far by `pid`, or NaN when it is gone. */
export function cpuSeconds(pid: number): number {
  const t = cpuTimes(pid);
  return t.user + t.system;
}

/** User and system CPU seconds consumed so far by `pid` (NaN when it is gone). */
export function cpuTimes(pid: number): { user: number; system: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces: split after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the name, field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
    return { user: Number(fields[11]) / ticksPerSecond, system: Number(fields[12]) / ticksPerSecond };
  } catch {
    return { user: Number.NaN, system: Number.NaN };
  }
}

/**
 * CPU seconds (user + system) so far of `pid`'s main thread (the thread whose id is the pid: a
 * Node process's event loop) and of all its other threads together (for Node: V8's platform
 * workers, which mark and compile concurrently, and libuv's pool), from /proc/<pid>/task/<tid>/stat.
 * Node 20 names every thread `node`, so the id is what tells them apart. The CPU of a thread that
 * exited in between is missing from `others`.
 */
export function threadCpuSeconds(pid: number): { main: number; others: number } {
  const out = { main: 0, others: 0 };
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return { main: Number.NaN, others: Number.NaN };
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const seconds = (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
      if (Number(tid) === pid) out.main += seconds;
      else out.others += seconds;
    } catch {
      // the thread exited between the listing and the read
    }
  }
  return out;
}

/** Resident set size of `pid` in bytes (VmRSS), or NaN when it is gone. */
export function rssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Whether `taskset` can pin processes here (util-linux; absent on some images). */
export function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-c', '0', 'true']);
    return true;
  } catch {
    return false;
  }
}

/** Machine facts recorded beside every result so numbers are never quoted without their machine. */
export function machineInfo(): Record<string, unknown> {
  let cpuModel = 'unknown';
  try {
    cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpuModel;
  } catch {
    // not Linux
  }
  return {
    node: process.version,
    openssl: process.versions.openssl,
    platform: `${process.platform}-${process.arch}`,
    cpuModel,
    cpus: (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? null,
  };
}
