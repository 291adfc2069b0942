// The benchmark report: the summary of every scenario (medians over the
// repeated runs, ratios to heartline), the targets met or missed, the
// machine it ran on, written as JSON and Markdown, and the heartbeat
// lateness plots drawn with gnuplot (bench/plot.gp).

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, freemem, loadavg, release, totalmem } from "node:os";
import { join } from "node:path";
import { BENCH_DIR } from "./proc.mjs";
import { median, ratio, round } from "./stats.mjs";

export function machine() {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? "unknown";
  let nproc = cpus().length;
  try {
    nproc = Number(execFileSync("nproc", { encoding: "utf8" }).trim());
  } catch {
    // os.cpus() is close enough.
  }
  let kernel = release();
  try {
    kernel = execFileSync("uname", ["-srvm"], { encoding: "utf8" }).trim();
  } catch {
    // release() alone then.
  }
  return {
    nproc, cpu_model: model, kernel, node: process.version,
    memory_gib: round(totalmem() / 2 ** 30, 1), free_gib_at_start: round(freemem() / 2 ** 30, 1),
    load_average_at_start: loadavg().map((v) => round(v, 2)),
    date: new Date().toISOString(),
  };
}

// ---- summaries ----

const pick = (runs, f) => median(runs.map(f));

export function summarizeHeartbeat(scenario) {
  const byContender = {};
  for (const run of scenario.runs) (byContender[run.contender] ??= []).push(run);
  const rows = {};
  for (const [name, runs] of Object.entries(byContender)) {
    rows[name] = {
      runs: runs.length,
      late_p50_ms: pick(runs, (r) => r.lateness.p50),
      late_p99_ms: pick(runs, (r) => r.lateness.p99),
      late_max_ms: pick(runs, (r) => r.lateness.max),
      late_max_worst_ms: Math.max(...runs.map((r) => r.lateness.max ?? -Infinity)),
      beats: pick(runs, (r) => r.lateness.n),
      drops: pick(runs, (r) => r.drops),
      drops_total: runs.reduce((s, r) => s + r.drops, 0),
      would_drop: pick(runs, (r) => r.would_drop_discord_grace),
      connect_ms: pick(runs, (r) => r.connect_ms),
      load_1m: pick(runs, (r) => r.load_1m),
      stalls: pick(runs, (r) => r.stalls),
      idle_kib_per_bot: pick(runs, (r) => r.idle_kib_per_bot),
      traffic_kib_per_bot: pick(runs, (r) => r.traffic_kib_per_bot),
      rss_base_mib: pick(runs, (r) => r.rss_base_kib / 1024),
      events_delivered: pick(runs, (r) => ratio(r.events_received, r.events_sent)),
      engine_late_max_ms: runs[0].engine_late_max_ms === null ? null
        : Math.max(...runs.map((r) => r.engine_late_max_ms)),
    };
  }
  const base = rows.heartline;
  for (const row of Object.values(rows)) {
    row.p99_vs_heartline = base ? ratio(row.late_p99_ms, base.late_p99_ms) : null;
    row.idle_memory_vs_heartline = base ? ratio(row.idle_kib_per_bot, base.idle_kib_per_bot) : null;
  }
  return rows;
}

export function summarizeStorm(scenario) {
  const byContender = {};
  for (const run of scenario.runs) (byContender[run.contender] ??= []).push(run);
  return Object.fromEntries(Object.entries(byContender).map(([name, runs]) => [name, {
    runs: runs.length,
    load_1m: pick(runs, (r) => r.load_1m),
    all_back: runs.every((r) => r.back === r.n),
    all_back_ms: pick(runs, (r) => r.all_back_ms),
    all_back_worst_ms: Math.max(...runs.map((r) => r.all_back_ms ?? Infinity)),
    p50_back_ms: pick(runs, (r) => r.p50_back_ms),
    last_connect_ms: pick(runs, (r) => r.last_connect_ms),
    identifies: pick(runs, (r) => r.identifies),
    identifies_total: runs.reduce((s, r) => s + r.identifies, 0),
    resumes_ok: pick(runs, (r) => r.resumes_ok),
    resumes_failed: pick(runs, (r) => r.resumes_failed),
    cpu_ms: pick(runs, (r) => r.cpu_ms),
    downstream_disturbed: runs.reduce((s, r) => s + r.downstream_closed + r.downstream_invalid_sessions, 0),
  }]));
}

export function summarizeForward(scenario) {
  const runs = scenario.runs;
  return {
    runs: runs.length,
    load_1m: pick(runs, (r) => r.load_1m),
    shards_per_side: scenario.shards_per_side,
    added_p50_ms: pick(runs, (r) => r.latency_added_ms.p50),
    added_p99_ms: pick(runs, (r) => r.latency_added_ms.p99),
    direct_per_s: pick(runs, (r) => r.direct_per_s),
    via_per_s: pick(runs, (r) => r.via_per_s),
    via_vs_direct: pick(runs, (r) => ratio(r.via_per_s, r.direct_per_s)),
    engine_events_per_cpu_s: pick(runs, (r) => r.engine_events_per_cpu_s),
    events_lost: runs.reduce((s, r) => s + r.events_lost + (r.events_per_side - r.via_events), 0),
  };
}

export function summarizeRest(scenario) {
  const runs = scenario.runs;
  return {
    runs: runs.length,
    load_1m: pick(runs, (r) => r.load_1m),
    direct_p50_ms: pick(runs, (r) => r.direct_ms.p50),
    via_p50_ms: pick(runs, (r) => r.via_ms.p50),
    direct_p99_ms: pick(runs, (r) => r.direct_ms.p99),
    via_p99_ms: pick(runs, (r) => r.via_ms.p99),
    added_p50_ms: pick(runs, (r) => r.added_p50_ms),
    added_p99_ms: pick(runs, (r) => r.added_p99_ms),
    direct_per_s: pick(runs, (r) => r.direct_per_s),
    via_per_s: pick(runs, (r) => r.via_per_s),
    via_vs_direct: pick(runs, (r) => ratio(r.via_per_s, r.direct_per_s)),
    errors: runs.reduce((s, r) => s + r.errors, 0),
  };
}

export function summarizeJournal(scenario) {
  const runs = scenario.runs;
  return {
    runs: runs.length,
    load_1m: pick(runs, (r) => r.load_1m),
    plain_p50_ms: pick(runs, (r) => r.plain_ms.p50),
    journal_p50_ms: pick(runs, (r) => r.journal_ms.p50),
    added_p50_ms: pick(runs, (r) => r.added_p50_ms),
    added_p99_ms: pick(runs, (r) => r.added_p99_ms),
    plain_per_s: pick(runs, (r) => r.plain_per_s),
    journal_per_s: pick(runs, (r) => r.journal_per_s),
    journal_vs_plain: pick(runs, (r) => ratio(r.journal_per_s, r.plain_per_s)),
    errors: runs.reduce((s, r) => s + r.errors, 0),
    messages_at_fake: scenario.messages_at_fake,
    replies_answered: scenario.replies_answered,
    nonce_dedups: scenario.nonce_dedups,
  };
}

// ---- targets ----

function target(name, measured, met, note = "") {
  return { target: name, measured, met, note };
}

export function targets(summary, config) {
  const list = [];
  const hb = summary.heartbeat?.[config.targetN]?.heartline;
  if (hb) {
    list.push(target(`heartbeat lateness, host stalled, ${config.targetN} bots: p99 <= 5 ms`,
      `${fmt(hb.late_p99_ms, 0)} ms`, hb.late_p99_ms !== null && hb.late_p99_ms <= 5));
    list.push(target(`heartbeat lateness, host stalled, ${config.targetN} bots: max <= 50 ms`,
      `${fmt(hb.late_max_worst_ms, 0)} ms (worst run)`, hb.late_max_worst_ms <= 50));
    list.push(target(`heartbeat, host stalled, ${config.targetN} bots: zero drops`,
      `${hb.drops_total} drops`, hb.drops_total === 0));
  }
  const mem = summary.engine_memory;
  if (mem?.beyond_replay_kib_per_bot !== undefined) {
    list.push(target(`memory <= 64 KiB per idle bot beyond the replay buffers (${mem.n} bots)`,
      `${fmt(mem.beyond_replay_kib_per_bot, 1)} KiB (engine alone, replay_buffer 16); ` +
      `${fmt(mem.default_kib_per_bot, 1)} KiB with the default 2000; ` +
      `${fmt(mem.classic_kib_per_bot, 1)} KiB with tls_groups ${mem.classic_groups}`,
      mem.beyond_replay_kib_per_bot <= 64));
  }
  const fw = summary.forward;
  if (fw) {
    list.push(target("forwarding >= 100,000 dispatches/s per core",
      `${fmt(fw.engine_events_per_cpu_s, 0)} per CPU-second of the engine ` +
      `(${fmt(fw.via_per_s, 0)}/s reached, fake-bound)`, fw.engine_events_per_cpu_s >= 100000));
    list.push(target("forwarding added latency p50 <= 0.2 ms", `${fmt(fw.added_p50_ms, 3)} ms`,
      fw.added_p50_ms !== null && fw.added_p50_ms <= 0.2));
    list.push(target("forwarding added latency p99 <= 2 ms", `${fmt(fw.added_p99_ms, 3)} ms`,
      fw.added_p99_ms !== null && fw.added_p99_ms <= 2));
  }
  const rest = summary.rest;
  if (rest) {
    list.push(target("REST added latency p50 <= 0.5 ms", `${fmt(rest.added_p50_ms, 3)} ms`,
      rest.added_p50_ms !== null && rest.added_p50_ms <= 0.5));
  }
  const storm = summary.storm?.heartline;
  if (storm) {
    const window = config.jitterMaxMs;
    list.push(target(`storm: ${config.stormN} resumable sessions back within the jitter window ` +
      `(${window / 1000} s) with zero IDENTIFYs`,
      `all back after ${fmt(storm.all_back_worst_ms / 1000, 2)} s (worst run; last connection opened ` +
      `at ${fmt(storm.last_connect_ms / 1000, 2)} s), ${storm.identifies_total} IDENTIFYs`,
      storm.all_back && storm.all_back_worst_ms <= window && storm.identifies_total === 0));
  }
  return list;
}

// ---- plots ----

// Writes one "x lateness" file per contender and draws them; returns the
// PNG's file name, or null when gnuplot is missing.
export function plotLateness(outDir, n, samples, heading) {
  const files = [];
  const names = [];
  for (const [name, values] of Object.entries(samples)) {
    if (values.length === 0) continue;
    const sorted = Float64Array.from(values).sort();
    const lines = [];
    const step = Math.max(1, Math.floor(sorted.length / 2000));
    for (let i = 0; i < sorted.length; i++) {
      // Every point of the top 1 %, a sample of the rest.
      if (i % step !== 0 && i < sorted.length * 0.99) continue;
      const share = (i + 0.5) / sorted.length;
      lines.push(`${1 / (1 - share)} ${Math.max(0.5, sorted[i])}`);
    }
    const file = join(outDir, `hb-${n}-${name}.dat.tmp`);
    writeFileSync(file, `${lines.join("\n")}\n`);
    files.push(file);
    names.push(name);
  }
  const png = `heartbeat-lateness-${n}.png`;
  try {
    execFileSync("gnuplot", ["-e",
      `out='${join(outDir, png)}'; heading='${heading}'; files='${files.join(" ")}'; names='${names.join(" ")}'`,
      join(BENCH_DIR, "plot.gp")], { stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    return { png: null, error: String(err.stderr ?? err.message).slice(0, 500) };
  } finally {
    for (const f of files) rmSync(f, { force: true });
  }
  return { png };
}

// ---- Markdown ----

export function fmt(value, digits = 1) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function table(head, rows) {
  return [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

const times = (v) => (v === null ? "–" : `${fmt(v, v < 10 ? 2 : 0)}×`);

export function markdown({ summary, config, machineInfo, command, plots, failures, durationS, notes }) {
  const out = [];
  // Each argument is a block (paragraph, table, heading) of its own.
  const say = (...blocks) => {
    for (const block of blocks) out.push(block, "");
  };
  say(`# heartline benchmark${config.smoke ? " (smoke run: small N, short phases; figures are not meaningful)" : ""}`);
  say(`Reproduce with \`${command}\` from the repository root ` +
    `(it installs bench/package.json's packages into bench/node_modules first).`);
  say(`Machine: ${machineInfo.nproc} CPUs (nproc), ${machineInfo.cpu_model}, ${machineInfo.memory_gib} GiB; ` +
    `kernel ${machineInfo.kernel}; Node ${machineInfo.node}; run on ${machineInfo.date}, ` +
    `${fmt(durationS / 60, 1)} minutes; load average at start ${machineInfo.load_average_at_start.join(" ")}` +
    (machineInfo.load_average_when_started === undefined ? "" :
      `, ${fmt(machineInfo.load_average_when_started, 2)} when the first scenario began`) +
    " (the machine is shared: other work may have run alongside; each table gives the load it saw).");

  say("## Targets", table(["target", "measured", "met"], summary.targets.map((t) =>
    [t.target, t.measured, t.met ? "**met**" : "**missed**"])));

  const plan = config.heartbeatPlan;
  say("## 1. Heartbeat punctuality under a stalled host",
    `Heartbeat interval ${plan.intervalMs} ms instead of Discord's 41.25 s, so the stall is scaled ` +
    `with it: the host's main thread is blocked ${plan.stallMs} ms of every ${plan.periodMs} ms ` +
    "(15 s of every 60 s at 41.25 s; tests/e2e/stall-preload.cjs) while a busy-loop process keeps a core busy, " +
    `for ${fmt(config.measureMs / 1000, 1)} s (${config.measurePeriods} stalls) per run. ` +
    `Lateness = gap between two heartbeats at the fake minus the interval. The fake's grace is ${plan.benchGraceMs} ms ` +
    `so late heartbeats are measured, not cut off; "Discord would drop" counts the gaps over interval + ` +
    `${plan.discordGraceMs} ms (the fake's default 5 s grace at 41.25 s, scaled). Each run first measures memory ` +
    `(below). Medians over the runs; "max worst" is the worst run. Bots connect in the host process ` +
    `(heartline: the engine via koffi plus one minimal downstream gateway client per bot, all in the stalled process). ` +
    "\"load\" is the 1-minute load average at the end of the stalled phase: the bench's own busy loop, stalled " +
    "host and fake make about 3 of it; more means other work shared the 2 cores.");
  for (const [n, rows] of Object.entries(summary.heartbeat ?? {})) {
    say(`### N = ${n} bots`, table(
      ["contender", "runs", "lateness p50 ms", "p99 ms", "max ms", "max worst ms", "drops", "Discord would drop",
        "p99 vs heartline", "connect s", "load"],
      Object.entries(rows).map(([name, r]) => [name, r.runs, fmt(r.late_p50_ms, 0), fmt(r.late_p99_ms, 0),
        fmt(r.late_max_ms, 0), fmt(r.late_max_worst_ms, 0), fmt(r.drops, 0), fmt(r.would_drop, 0),
        times(r.p99_vs_heartline), fmt(r.connect_ms / 1000, 1), fmt(r.load_1m, 1)])));
    if (rows.heartline?.engine_late_max_ms !== null && rows.heartline) {
      say(`The engine's own status reports its heartbeats at most ${fmt(rows.heartline.engine_late_max_ms, 0)} ms ` +
        "late over the whole run (heartbeat_late_ms_max, connect phase included).");
    }
    const plot = plots[n];
    if (plot?.png) say(`![heartbeat lateness, ${n} bots](${plot.png})`);
    else if (plot) say(`(no plot: ${plot.error})`);
  }
  for (const note of config.heartbeatNotes) say(note);

  say("## 2. Memory per connection",
    "Resident memory (VmRSS) of the contender's host process minus its RSS once loaded and before any bot " +
    "connected, divided by the bots. Idle: after a full GC, bots connected and quiet. Under traffic: the " +
    "highest RSS while every bot receives one 1 KB MESSAGE_CREATE a second. The heartline row is the " +
    "engine plus its minimal downstream clients in one process.");
  const memRows = [];
  for (const [n, rows] of Object.entries(summary.heartbeat ?? {})) {
    for (const [name, r] of Object.entries(rows)) {
      memRows.push([name, n, fmt(r.idle_kib_per_bot, 1), fmt(r.traffic_kib_per_bot, 1),
        times(r.idle_memory_vs_heartline), fmt(r.rss_base_mib, 0), fmt((r.events_delivered ?? 0) * 100, 0) + " %"]);
    }
  }
  say(table(["contender", "N", "idle KiB/bot", "traffic KiB/bot", "idle vs heartline", "RSS loaded MiB",
    "traffic events delivered"], memRows));
  const em = summary.engine_memory;
  if (em) {
    say("heartline's engine alone (host process with no clients; the clients in another process):",
      table(["N", "replay_buffer", "tls_groups", "idle KiB/bot"], em.runs.map((r) =>
        [r.n, r.replay_buffer, r.tls_groups ?? "(the TLS library's default)", fmt(r.idle_kib_per_bot, 1)])));
  }

  const fw = summary.forward;
  if (fw) {
    say("## 3. Dispatch forwarding",
      `One bot, ${fw.shards_per_side} sessions straight to the fake (wss) and ${fw.shards_per_side} through ` +
      "heartline (engine alone in its host process); the same client code on both sides in one process. " +
      "Added latency: paced events, per event the receive time through heartline minus the direct client's. " +
      "The fake writes an event to its sessions one after another in the order they connected, about 0.1 ms " +
      "apart, so two pairs are timed, one connected direct first and one through heartline first, and each " +
      "event's figure is the mean of their two differences. " +
      "Throughput: dispatch requests to the fake as fast as it takes them; the fake is the bottleneck, so " +
      "the per-core figure is events forwarded per CPU-second of the engine's process.",
      table(["", "direct", "through heartline", "ratio"], [
        ["events/s received (fake-bound)", fmt(fw.direct_per_s, 0), fmt(fw.via_per_s, 0), times(fw.via_vs_direct)],
        ["events per CPU-second of the engine", "", fmt(fw.engine_events_per_cpu_s, 0), ""],
        ["added latency p50 / p99 ms", "", `${fmt(fw.added_p50_ms, 3)} / ${fmt(fw.added_p99_ms, 3)}`, ""],
        ["events lost", "", fmt(fw.events_lost, 0), ""],
      ]), `1-minute load average during these runs: ${fmt(fw.load_1m, 1)}.`);
  }

  const rest = summary.rest;
  if (rest) {
    say("## 4. REST forwarding",
      "GET /api/v10/users/@me, keep-alive on both sides: straight to the fake over https, and through " +
      "heartline's loopback http endpoint (heartline to the fake over https). Latency: sequential requests, " +
      `the sides alternating in batches, spread over ${config.restBots} bots; throughput: ${config.restParallel} ` +
      "requests in flight.",
      table(["", "direct", "through heartline", "added / ratio"], [
        ["latency p50 ms", fmt(rest.direct_p50_ms, 3), fmt(rest.via_p50_ms, 3), fmt(rest.added_p50_ms, 3)],
        ["latency p99 ms", fmt(rest.direct_p99_ms, 3), fmt(rest.via_p99_ms, 3), fmt(rest.added_p99_ms, 3)],
        ["requests/s", fmt(rest.direct_per_s, 0), fmt(rest.via_per_s, 0), times(rest.via_vs_direct)],
        ["non-2xx answers", "", fmt(rest.errors, 0), ""],
      ]), `1-minute load average during these runs: ${fmt(rest.load_1m, 1)}.`);
  }

  const storm = summary.storm;
  if (storm) {
    say("## 5. Reconnect storm",
      `${config.stormN} sessions per contender dropped at once by the fake (no close frame, all resumable). ` +
      "Back = the bot's first RESUMED or READY after the drop, at the fake. CPU = the host process's " +
      "user + system time from the drop until all are back (heartline: the engine alone in its process). " +
      `heartline spreads reconnects over its jitter window (${config.jitterMinMs / 1000}–${config.jitterMaxMs / 1000} s` +
      `${config.smoke ? " in this smoke run; 1–15 s by default" : ", its default"}) on purpose; ` +
      "the stock clients reconnect at once. \"heartline (plain)\" talks to the fake over ws/http like " +
      "the stock clients here, \"heartline\" over TLS as it talks to Discord.",
      table(["contender", "runs", "all back s", "p50 back s", "last connection opened s", "IDENTIFY", "RESUME ok",
        "RESUME failed", "CPU s", "downstream disturbed", "load"],
      Object.entries(storm).map(([name, r]) => [name, r.runs, fmt(r.all_back_ms / 1000, 2),
        fmt(r.p50_back_ms / 1000, 2), fmt(r.last_connect_ms / 1000, 2), fmt(r.identifies, 0),
        fmt(r.resumes_ok, 0), fmt(r.resumes_failed, 0), fmt(r.cpu_ms / 1000, 2),
        name.startsWith("heartline") ? fmt(r.downstream_disturbed, 0) : "–", fmt(r.load_1m, 1)])));
  }

  const j = summary.journal;
  if (j) {
    say("## 6. Reply journal",
      "POST /api/v10/channels/ID/messages through two engines in one host process, one with state_dir " +
      "(a temporary directory on the machine's disk: every reply is written and fsynced before it goes " +
      `upstream) and one without. Latency: sequential, alternating, over ${config.journalBots} bots' DM channels; ` +
      `throughput: ${config.journalParallel} in flight.`,
      table(["", "without state_dir", "with state_dir (durable)", "added / ratio"], [
        ["latency p50 ms", fmt(j.plain_p50_ms, 3), fmt(j.journal_p50_ms, 3), fmt(j.added_p50_ms, 3)],
        ["latency p99 added ms", "", "", fmt(j.added_p99_ms, 3)],
        ["replies/s", fmt(j.plain_per_s, 0), fmt(j.journal_per_s, 0), times(j.journal_vs_plain)],
        ["non-2xx answers", "", fmt(j.errors, 0), ""],
      ]),
      `1-minute load average during these runs: ${fmt(j.load_1m, 1)}.`,
      `The fake created ${fmt(j.messages_at_fake, 0)} messages for ${fmt(j.replies_answered, 0)} answered ` +
      `creates (${fmt(j.nonce_dedups, 0)} de-duplicated by nonce).`);
  }

  if (failures.length) {
    say("## Runs that failed", ...failures.map((f) =>
      `- ${f.scenario} ${f.contender ?? ""} ${f.n ? `N=${f.n}` : ""}: ${f.error.split("\n")[0]}`));
  }
  if (notes) say(notes.trim());
  return out.join("\n");
}

export function readNotes() {
  const file = join(BENCH_DIR, "notes.md");
  return existsSync(file) ? readFileSync(file, "utf8") : "";
}
