// Test-side helper: starts fake-discord as its own Node process (tests
// block their own event loop on purpose, the fake must keep running),
// waits for its startup line and wraps the control API.
//
//   const fake = await startFake({ bots: 2, heartbeatInterval: 1000 });
//   fake.info.bots[0].token; await fake.dm(0, "hello");
//   const record = await fake.record(); await fake.stop();
//
// Options are the server's flags in camelCase (heartbeatInterval ->
// --heartbeat-interval). The server runs with $NODE24 when set, else with
// the Node running the test.

import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const SERVER = join(dirname(fileURLToPath(import.meta.url)), "server.mjs");
const START_TIMEOUT_MS = 30000;
const STOP_TIMEOUT_MS = 5000;

function flags(opts) {
  return Object.entries(opts).flatMap(([name, value]) => {
    const flag = `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    return [flag, String(value)];
  });
}

// Resolves with the startup JSON line; stderr is kept (its tail) for the
// error message, and echoed when FAKE_DISCORD_LOG is set.
function waitForInfo(proc) {
  let stderr = "";
  proc.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-8000);
    if (process.env.FAKE_DISCORD_LOG) process.stderr.write(chunk);
  });

  return new Promise((resolve, reject) => {
    let stdout = "";
    const onExit = (code) => fail(new Error(`fake-discord exited with ${code}`));
    const timer = setTimeout(() => fail(new Error("fake-discord did not start in time")),
      START_TIMEOUT_MS);
    const fail = (err) => {
      clearTimeout(timer);
      proc.kill("SIGKILL");
      reject(new Error(`${err.message}\n${stderr}`));
    };
    proc.once("exit", onExit);
    proc.stdout.on("data", (chunk) => {
      stdout += chunk;
      const end = stdout.indexOf("\n");
      if (end < 0) return;
      clearTimeout(timer);
      proc.off("exit", onExit);
      resolve(JSON.parse(stdout.slice(0, end)));
    });
  });
}

function waitForExit(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => process.kill(proc.pid, "SIGKILL"), STOP_TIMEOUT_MS);
    proc.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

// Fakes still running when this process exits (a test that failed before
// its cleanup ran) go with it rather than live on as orphans.
const running = new Set();
process.once("exit", () => {
  for (const proc of running) proc.kill("SIGKILL");
});

export async function startFake(opts = {}) {
  const node = process.env.NODE24 || process.execPath;
  const proc = spawn(node, [SERVER, ...flags(opts)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(proc);
  proc.once("exit", () => running.delete(proc));
  const info = await waitForInfo(proc);

  const control = async (method, path, body) => {
    const res = await fetch(`${info.http_origin}/_fake${path}`, {
      method,
      headers: body ? { "content-type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    const answer = await res.json();
    if (!res.ok) throw new Error(`fake-discord ${method} ${path}: ${answer.error}`);
    return answer;
  };

  return {
    proc,
    info,
    control,
    record: () => control("GET", "/record"),
    resetRecord: () => control("POST", "/reset-record"),
    bots: () => control("GET", "/bots"),
    state: () => control("GET", "/state"),
    dm: (i, content, attachments, user) =>
      control("POST", `/bots/${i}/dm`, { content, attachments, user }),
    dispatch: (i, t, d) => control("POST", `/bots/${i}/dispatch`, { t, d }),
    dispatchMany: (i, events) => control("POST", `/bots/${i}/dispatch`, { events }),
    op: (i, op, d) => control("POST", `/bots/${i}/op`, { op, d }),
    close: (i, code) => control("POST", `/bots/${i}/close`, { code }),
    zombie: (i, on = true) => control("POST", `/bots/${i}/zombie`, { on }),
    drop: (i) => control("POST", `/bots/${i}/drop`),
    dropAll: () => control("POST", "/drop-all"),
    rateLimit: (rule) => control("POST", "/ratelimit", rule),
    clearRateLimits: () => control("DELETE", "/ratelimit"),
    fault: (rule) => control("POST", "/fault", rule),
    clearFaults: () => control("DELETE", "/fault"),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        process.kill(proc.pid, "SIGTERM");
      }
      await waitForExit(proc);
    },
  };
}
