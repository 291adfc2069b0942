// Process plumbing for the benchmark: starting a contender's host process
// and talking to it over JSON lines, reading a process's resident memory
// and CPU time from /proc, and the busy-loop child that loads the CPU.

import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const BENCH_DIR = join(dirname(fileURLToPath(import.meta.url)), "..");
export const ROOT = join(BENCH_DIR, "..");
const NODE = process.env.NODE24 || process.execPath;
const CLOCK_TICKS_PER_S = 100; // USER_HZ on Linux

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Resident memory of a process in KiB (VmRSS), or null once it is gone.
export function rssKiB(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

// CPU time (user + system) a process has used so far, in ms.
export function cpuMs(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which is in parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1000) / CLOCK_TICKS_PER_S;
  } catch {
    return null;
  }
}

// A host process: bench/host.mjs running one contender. It prints one
// JSON object per line; `next(pred)` waits for a line that matches.
export class Host {
  constructor(kind, args, { env = {}, label = kind } = {}) {
    this.label = label;
    this.lines = [];
    this.waiters = [];
    this.stderr = "";
    this.proc = spawn(NODE, ["--expose-gc", join(BENCH_DIR, "host.mjs"), kind], {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, ...env },
    });
    this.proc.stdin.write(`${JSON.stringify(args)}\n`);
    this.pid = this.proc.pid;
    let buffered = "";
    this.proc.stdout.on("data", (chunk) => {
      buffered += chunk;
      for (let end; (end = buffered.indexOf("\n")) >= 0;) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 1);
        if (line.trim()) this.take(JSON.parse(line));
      }
    });
    this.proc.stderr.on("data", (chunk) => {
      this.stderr = (this.stderr + chunk).slice(-6000);
      if (process.env.BENCH_HOST_LOG) process.stderr.write(chunk);
    });
    this.exited = new Promise((resolve) => this.proc.once("exit", (code, signal) => {
      this.exitCode = code;
      this.exitSignal = signal;
      resolve();
      for (const w of this.waiters.splice(0)) {
        w.reject(new Error(`${this.label} host exited (${code ?? signal}) while waiting\n${this.stderr}`));
      }
    }));
  }

  take(message) {
    this.last = message;
    this.lines.push(message);
    if (this.lines.length > 200) this.lines.shift();
    if (message.error) this.error = message.error;
    for (const w of [...this.waiters]) {
      if (w.pred(message)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(message);
      }
    }
  }

  next(pred, timeoutMs, what = "a message") {
    const seen = this.lines.find(pred);
    if (seen) {
      this.lines.splice(this.lines.indexOf(seen), 1);
      return Promise.resolve(seen);
    }
    if (this.exitCode !== undefined) {
      return Promise.reject(new Error(`${this.label} host has exited\n${this.stderr}`));
    }
    return new Promise((resolve, reject) => {
      const waiter = { pred, resolve, reject };
      waiter.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`${this.label}: timed out after ${timeoutMs} ms waiting for ${what}` +
          (this.error ? `; host said: ${this.error}` : "") + `\n${this.stderr}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  // Like next(), but only for a message printed from now on.
  fresh(pred, timeoutMs, what) {
    this.lines = [];
    return this.next(pred, timeoutMs, what);
  }

  send(command) {
    if (this.exitCode === undefined) this.proc.stdin.write(`${JSON.stringify(command)}\n`);
  }

  rss() {
    return rssKiB(this.pid);
  }

  cpu() {
    return cpuMs(this.pid);
  }

  // Asks the host to stop (SIGTERM), then kills it if it does not exit.
  async stop(graceMs = 10000) {
    if (this.exitCode !== undefined) return;
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

// A child process that spins one core for as long as it lives.
export function startBusyLoop() {
  const proc = spawn(NODE, [join(BENCH_DIR, "busy-loop.mjs")], { stdio: "ignore" });
  return {
    pid: proc.pid,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const gone = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGKILL");
      await gone;
    },
  };
}
