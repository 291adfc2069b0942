// heartline's benchmark: heartline against the Discord gateway clients
// people use today (@discordjs/ws, simple and worker strategy, and
// OpenClaw's own), all against the fake Discord on loopback, and a
// report in bench/results/ (latest.md, latest.json, lateness plots).
//
//   node bench/run.mjs            the full run (make bench), ~25 minutes
//   node bench/run.mjs --smoke    seconds-long: small N, short phases;
//                                 exits non-zero if any contender or
//                                 scenario fails to run (make bench-smoke)
//   --out DIR                     where the report goes (default
//                                 bench/results, or build/bench-smoke)
//
// The machine may be shared: a full run first waits up to
// BENCH_QUIET_WAIT_S seconds (default 180) for the 1-minute load average
// to fall below BENCH_QUIET_LOAD (default 1.5), and every run records the
// load average it saw.
//
// Scenarios, in order: heartbeat punctuality and memory at each N, the
// engine's own memory, dispatch forwarding, REST forwarding, the reconnect
// storm, the reply journal. Progress goes to stdout as it runs.

import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { BENCH_DIR, ROOT, sleep } from "./lib/proc.mjs";
import * as report from "./lib/report.mjs";
import { engineMemoryScenario } from "./scenarios/engine-memory.mjs";
import { forwardScenario } from "./scenarios/forward.mjs";
import { heartbeatScenario, stallPlan } from "./scenarios/heartbeat.mjs";
import { journalScenario } from "./scenarios/journal.mjs";
import { restScenario } from "./scenarios/rest.mjs";
import { stormScenario } from "./scenarios/storm.mjs";

const JITTER_MIN_MS = 1000; // heartline's default reconnect_jitter_min_ms
const JITTER_MAX_MS = 15000; // and reconnect_jitter_max_ms

const CLASSIC_GROUPS = "X25519:P-256";
const MEMORY_VARIANTS = [{ replay_buffer: 2000 }, { replay_buffer: 16 },
  { replay_buffer: 16, tls_groups: CLASSIC_GROUPS }];

const FULL = {
  smoke: false,
  heartbeat: [
    { n: 100, contenders: ["heartline", "djs-simple", "djs-worker", "openclaw"], repeats: 3 },
    { n: 1000, contenders: ["heartline", "djs-simple", "openclaw"], repeats: 2 },
  ],
  intervalMs: 5000, measurePeriods: 4, trafficMs: 8000, settleMs: 2000,
  targetN: 1000,
  engineMemory: [100, 1000].map((n) => ({ n, variants: MEMORY_VARIANTS })),
  forward: { shardsPerSide: 8, repeats: 3, latencyMs: 5000, gapMs: 2, blastMs: 5000 },
  rest: { bots: 200, requests: 2000, blastMs: 4000, parallel: 16, repeats: 3 },
  storm: { n: 1000, repeats: 2, timeoutMs: 60000, settleMs: 2000,
    contenders: ["heartline", "heartline (plain)", "djs-simple", "openclaw"] },
  journal: { bots: 100, requests: 1000, blastMs: 4000, parallel: 32, repeats: 3 },
};

const SMOKE = {
  smoke: true,
  heartbeat: [{ n: 4, contenders: ["heartline", "djs-simple", "djs-worker", "openclaw"], repeats: 1 }],
  intervalMs: 1000, measurePeriods: 2, trafficMs: 1000, settleMs: 300,
  targetN: 4,
  engineMemory: [{ n: 4, variants: MEMORY_VARIANTS }],
  forward: { shardsPerSide: 2, repeats: 1, latencyMs: 800, gapMs: 2, blastMs: 800 },
  rest: { bots: 10, requests: 100, blastMs: 500, parallel: 4, repeats: 1 },
  storm: { n: 4, repeats: 1, timeoutMs: 15000, settleMs: 300,
    contenders: ["heartline", "djs-simple"], jitterMaxMs: 1500 },
  journal: { bots: 5, requests: 50, blastMs: 500, parallel: 4, repeats: 1 },
};

const STORM_CONTENDERS = {
  "heartline": { kind: "heartline" },
  "heartline (plain)": { kind: "heartline", engine: { plain: true } },
  "djs-simple": { kind: "djs-simple" },
  "djs-worker": { kind: "djs-worker" },
  "openclaw": { kind: "openclaw" },
};

const HEARTBEAT_NOTES = [
  "djs-worker (@discordjs/ws's WorkerShardingStrategy) runs at N = 100 only: a manager holds one token, " +
    "so every bot is a manager with a worker thread of its own, about 20 MB each (20 GB for 1000 bots). " +
    "Its heartbeats still wait for the main thread: WebSocketShard.heartbeat() awaits " +
    "strategy.retrieveSessionInfo(), which in a worker is a message answered by the main thread.",
  "openclaw is the GatewayPlugin from @openclaw/discord 2026.9.6, built by its createDiscordGatewayPlugin " +
    "and driven standalone (one plugin per bot, a stand-in for its Carbon client). Its IDENTIFY limiter is " +
    "one per process keyed by shard id only, so N bots of one process come up one per 5 s; the bench lets " +
    "each bot's first IDENTIFY skip that queue (later ones go through it) so that 1000 bots can start.",
  "The stock clients reach the fake over plain http/ws (its http origin, as OpenClaw reaches heartline); " +
    "heartline's engine reaches it over TLS, as it reaches Discord, so heartline's figures include TLS.",
];

function elapsed(t0) {
  const s = Math.round((Date.now() - t0) / 1000);
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

// Waits (up to maxS) until the machine is not busy with other work.
async function waitForQuiet(log, maxS, below) {
  const end = Date.now() + maxS * 1000;
  let said = 0;
  while (loadavg()[0] >= below && Date.now() < end) {
    if (Date.now() - said > 30000) {
      log(`waiting for the machine to quieten: load ${loadavg()[0].toFixed(1)} (until < ${below}, ` +
        `at most ${Math.round((end - Date.now()) / 1000)} s more)`);
      said = Date.now();
    }
    await sleep(2000);
  }
  return loadavg()[0];
}

async function main() {
  const { values } = parseArgs({ options: { smoke: { type: "boolean" }, out: { type: "string" } } });
  const config = values.smoke ? SMOKE : FULL;
  const outDir = values.out ?? (config.smoke ? join(ROOT, "build", "bench-smoke") : join(BENCH_DIR, "results"));
  mkdirSync(outDir, { recursive: true });
  const t0 = Date.now();
  const log = (line) => console.log(`[bench ${elapsed(t0)}] ${line}`);
  const machineInfo = report.machine();
  log(`${config.smoke ? "smoke run" : "full run"} on ${machineInfo.nproc} CPUs, ${machineInfo.cpu_model}; report in ${outDir}`);

  if (!config.smoke) {
    machineInfo.load_average_when_started = await waitForQuiet(log,
      Number(process.env.BENCH_QUIET_WAIT_S ?? 180), Number(process.env.BENCH_QUIET_LOAD ?? 1.5));
  }
  const raw = {};
  const summary = { heartbeat: {} };
  const failures = [];
  const samples = {};
  const guard = async (scenario, run) => {
    try {
      return await run();
    } catch (err) {
      log(`${scenario} FAILED: ${err.message.split("\n")[0]}`);
      failures.push({ scenario, error: err.stack ?? String(err) });
      return null;
    }
  };

  for (const hb of config.heartbeat) {
    const result = await guard("heartbeat", () => heartbeatScenario({
      n: hb.n, contenders: hb.contenders, repeats: hb.repeats, intervalMs: config.intervalMs,
      measurePeriods: config.measurePeriods, trafficMs: config.trafficMs, settleMs: config.settleMs, log,
    }));
    if (!result) continue;
    raw[`heartbeat_${hb.n}`] = { plan: result.plan, runs: result.runs, failures: result.failures };
    summary.heartbeat[hb.n] = report.summarizeHeartbeat(result);
    samples[hb.n] = result.samples;
    failures.push(...result.failures.map((f) => ({ scenario: "heartbeat", ...f })));
    for (const name of hb.contenders) {
      if (!summary.heartbeat[hb.n][name]) {
        failures.push({ scenario: "heartbeat", contender: name, n: hb.n, error: "no run finished" });
      }
    }
  }

  const memRuns = [];
  for (const em of config.engineMemory) {
    log(`engine memory: N=${em.n}, ${em.variants.length} configurations`);
    const runs = await guard("engine memory", () => engineMemoryScenario({
      n: em.n, variants: em.variants, settleMs: config.settleMs, log }));
    if (runs) memRuns.push(...runs);
  }
  if (memRuns.length) {
    const at = (n, replay, groups = null) => memRuns.find((r) => r.n === n && r.replay_buffer === replay &&
      r.tls_groups === groups)?.idle_kib_per_bot;
    const n = Math.max(...memRuns.map((r) => r.n));
    summary.engine_memory = { runs: memRuns, n, classic_groups: CLASSIC_GROUPS,
      beyond_replay_kib_per_bot: at(n, 16), default_kib_per_bot: at(n, 2000),
      classic_kib_per_bot: at(n, 16, CLASSIC_GROUPS) };
    raw.engine_memory = memRuns;
  }

  const fw = await guard("forward", () => forwardScenario({ ...config.forward, log }));
  if (fw) {
    raw.forward = { shards_per_side: fw.shards_per_side, runs: fw.runs };
    summary.forward = report.summarizeForward(fw);
  }

  const rest = await guard("rest", () => restScenario({ ...config.rest, log }));
  if (rest) {
    raw.rest = { runs: rest.runs };
    summary.rest = report.summarizeRest(rest);
  }

  const jitterMaxMs = config.storm.jitterMaxMs ?? JITTER_MAX_MS;
  const stormContenders = config.storm.contenders.map((name) => {
    const c = STORM_CONTENDERS[name];
    const engine = c.kind === "heartline" && config.storm.jitterMaxMs
      ? { ...c.engine, reconnect_jitter_min_ms: 100, reconnect_jitter_max_ms: jitterMaxMs } : c.engine;
    return { name, ...c, engine };
  });
  const storm = await guard("storm", () => stormScenario({ ...config.storm, contenders: stormContenders, log }));
  if (storm) {
    raw.storm = storm;
    summary.storm = report.summarizeStorm(storm);
    failures.push(...storm.failures.map((f) => ({ scenario: "storm", ...f })));
  }

  const journal = await guard("journal", () => journalScenario({ ...config.journal, log }));
  if (journal) {
    raw.journal = journal;
    summary.journal = report.summarizeJournal(journal);
  }

  const reportConfig = {
    smoke: config.smoke, targetN: config.targetN, stormN: config.storm.n,
    jitterMinMs: config.storm.jitterMaxMs ? 100 : JITTER_MIN_MS, jitterMaxMs,
    heartbeatPlan: stallPlan(config.intervalMs), measurePeriods: config.measurePeriods,
    measureMs: stallPlan(config.intervalMs).periodMs * config.measurePeriods,
    restBots: config.rest.bots, restParallel: config.rest.parallel,
    journalBots: config.journal.bots, journalParallel: config.journal.parallel,
    heartbeatNotes: HEARTBEAT_NOTES,
  };
  summary.targets = report.targets(summary, reportConfig);

  log("plotting");
  const plots = {};
  for (const [n, bySample] of Object.entries(samples)) {
    plots[n] = report.plotLateness(outDir, n, bySample,
      `Heartbeat lateness, ${n} bots, host stalled ${reportConfig.heartbeatPlan.stallMs} ms of every ` +
      `${reportConfig.heartbeatPlan.periodMs} ms, CPU loaded`);
    if (!plots[n].png) failures.push({ scenario: "plot", n: Number(n), error: plots[n].error });
  }

  const command = config.smoke ? "make bench-smoke" : "make bench";
  const durationS = (Date.now() - t0) / 1000;
  const name = config.smoke ? "smoke" : "latest";
  writeFileSync(join(outDir, `${name}.json`), `${JSON.stringify({
    command, machine: machineInfo, duration_s: durationS, config: { ...config, report: reportConfig },
    summary, failures, raw,
  }, null, 1)}\n`);
  writeFileSync(join(outDir, `${name}.md`), `${report.markdown({
    summary, config: reportConfig, machineInfo, command, plots, failures, durationS,
    notes: config.smoke ? "" : report.readNotes(),
  })}\n`);

  log(`done in ${elapsed(t0)}: ${join(outDir, `${name}.md`)}`);
  for (const t of summary.targets) log(`  ${t.met ? "met   " : "MISSED"} ${t.target}: ${t.measured}`);
  if (failures.length) {
    log(`${failures.length} failure(s):`);
    for (const f of failures) log(`  ${f.scenario} ${f.contender ?? ""}: ${f.error.split("\n")[0]}`);
  }
  if (config.smoke) process.exitCode = failures.length || !figuresPresent(summary) ? 1 : 0;
}

// Every scenario produced its numbers (smoke: the code still works).
function figuresPresent(summary) {
  const hb = Object.values(summary.heartbeat ?? {});
  return hb.length > 0 && hb.every((rows) => Object.values(rows).every((r) => r.late_p99_ms !== null &&
      Number.isFinite(r.idle_kib_per_bot))) &&
    Number.isFinite(summary.engine_memory?.default_kib_per_bot) &&
    Number.isFinite(summary.forward?.added_p50_ms) && Number.isFinite(summary.forward?.via_per_s) &&
    Number.isFinite(summary.rest?.added_p50_ms) && Number.isFinite(summary.rest?.via_per_s) &&
    Object.values(summary.storm ?? {}).length > 0 &&
    Object.values(summary.storm).every((r) => r.all_back) &&
    Number.isFinite(summary.journal?.journal_per_s);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
