// A host process for one benchmark contender, started by bench/run.mjs so
// that its memory, CPU and stalls are its own. It loads the contender,
// says so, connects every bot when told, and reports how many are READY
// once a second, as JSON lines on stdout:
//
//   node bench/host.mjs KIND, then one line of JSON on stdin:
//     KIND: heartline | djs-simple | djs-worker | openclaw | engine
//     { fake: <fake-discord info>, tokens: [...], engine: {...},
//       engines: [{...}, ...] (kind "engine" only) }
//
//   out: {"loaded":true,...}  {"connected":N,"ms":T}  {"tick":..,"ready":N,
//        "dispatches":D}  {"status":...}  {"error":"..."}
//   in:  {"cmd":"connect"}  {"cmd":"status"}  {"cmd":"gc"} (a full GC, for
//        memory samples that count live data rather than garbage)
//   SIGTERM: disconnect everything and exit.
//
// Kind "engine" runs engines only (no clients), one per entry of
// `engines`, each with that extra configuration; the clients then live
// in another process.

import { createInterface } from "node:readline";

const say = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);

async function loadContender(kind, args) {
  switch (kind) {
    case "heartline":
      return (await import("./contenders/heartline.mjs")).load(args);
    case "djs-simple":
      return (await import("./contenders/discordjs.mjs")).loader(false)(args);
    case "djs-worker":
      return (await import("./contenders/discordjs.mjs")).loader(true)(args);
    case "openclaw":
      return (await import("./contenders/openclaw.mjs")).load(args);
    case "engine":
      return loadEngines(args);
    default:
      throw new Error(`unknown contender ${kind}`);
  }
}

async function loadEngines({ fake, engines = [{}] }) {
  const { engineConfig } = await import("./contenders/heartline.mjs");
  const { startEngine } = await import("../tests/integration/engine.mjs");
  const running = engines.map((extra) => startEngine(engineConfig(fake, extra)));
  const drain = setInterval(() => running.forEach((e) => e.logs().splice(0)), 1000);
  return {
    origins: running.map((e) => e.origin),
    async connect() {},
    ready: () => 0,
    dispatches: () => 0,
    status: () => running.map((e) => e.status()),
    async stop() {
      clearInterval(drain);
      running.forEach((e) => e.stop());
    },
  };
}

async function run(contender, cmd) {
  try {
    if (cmd === "connect") {
      const started = Date.now();
      await contender.connect();
      say({ connected: contender.ready(), ms: Date.now() - started });
    } else if (cmd === "gc") {
      globalThis.gc?.();
      say({ gc: true });
    } else if (cmd === "status") {
      say({ status: contender.status?.() ?? null });
    }
  } catch (err) {
    say({ error: `${cmd}: ${err.message}` });
  }
}

async function main() {
  const [kind] = process.argv.slice(2);
  // The first line on stdin is the arguments, every later one a command.
  let loading = null;
  createInterface({ input: process.stdin }).on("line", (line) => {
    if (!loading) {
      loading = start(kind, JSON.parse(line));
      return;
    }
    const { cmd } = JSON.parse(line);
    loading.then((contender) => run(contender, cmd));
  });
}

async function start(kind, args) {
  const contender = await loadContender(kind, args).catch((err) => {
    say({ error: err.stack ?? String(err) });
    process.exit(1);
  });
  say({ loaded: true, origin: contender.origin, origins: contender.origins });

  const tick = setInterval(() => say({
    tick: Date.now(), ready: contender.ready(), dispatches: contender.dispatches(),
  }), 1000);

  let stopping = false;
  process.on("SIGTERM", async () => {
    if (stopping) return;
    stopping = true;
    clearInterval(tick);
    const force = setTimeout(() => process.exit(0), 5000);
    try {
      await contender.stop();
    } finally {
      clearTimeout(force);
      process.exit(0);
    }
  });
  return contender;
}

process.on("unhandledRejection", (err) => say({ error: `unhandled: ${err?.message ?? err}` }));
main().catch((err) => {
  say({ error: err.stack ?? String(err) });
  process.exit(1);
});
