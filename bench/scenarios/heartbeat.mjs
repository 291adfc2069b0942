// Heartbeat punctuality under a stalled host, and memory per connection.
//
// For one bot count N, every contender runs in turn (the order rotates
// from one repeat to the next) against one fake Discord, each on its own
// slice of the fake's bots, in a host process of its own:
//
//   load        the contender is loaded: memory baseline
//   connect     N bots IDENTIFY and are READY
//   idle        after a full GC: resident memory per bot, idle
//   traffic     every bot gets one 1 KB MESSAGE_CREATE a second: the
//               highest resident memory per bot seen meanwhile
//   stalled     the host's main thread is blocked (tests/e2e/
//               stall-preload.cjs, 15 s of every 60 s scaled to the
//               heartbeat interval) and a busy-loop process loads a core;
//               the fake records every heartbeat's gap: lateness = gap -
//               interval, and every dropped connection.
//
// The fake's grace is generous (one interval) so that late heartbeats are
// measured rather than cut short; the drops that Discord would have made
// are counted from the same gaps with a Discord-like grace (the fake's
// default 5 s of 41.25 s, scaled).

import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Control, messageEvent, origins, startFake } from "../lib/fake.mjs";
import { Host, ROOT, sleep, startBusyLoop } from "../lib/proc.mjs";
import { median, summarize } from "../lib/stats.mjs";

const STALL_PRELOAD = join(ROOT, "tests/e2e/stall-preload.cjs");
const DISCORD_INTERVAL_MS = 41250;

// The stall and grace figures for a heartbeat interval, scaled from
// Discord's 41.25 s interval, 15 s of every 60 s and the fake's 5 s grace.
export function stallPlan(intervalMs) {
  const scale = intervalMs / DISCORD_INTERVAL_MS;
  return {
    intervalMs,
    stallMs: Math.round(15000 * scale),
    periodMs: Math.round(60000 * scale),
    discordGraceMs: Math.round(5000 * scale),
    benchGraceMs: intervalMs,
  };
}

async function sampleRss(host, ms, every = 200) {
  const samples = [];
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const kib = host.rss();
    if (kib) samples.push(kib);
    await sleep(every);
  }
  return samples;
}

// Sends one event to each bot every second for `ms`; returns how many.
async function traffic(control, bots, ms) {
  let sent = 0;
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const second = Date.now();
    await control.many(bots.length, async (k) => {
      await control.dispatch(bots[k], "MESSAGE_CREATE", messageEvent(sent + k));
    });
    sent += bots.length;
    await sleep(Math.max(0, 1000 - (Date.now() - second)));
  }
  return sent;
}

function heartbeatFigures(record, bots, from, to, plan) {
  const mine = new Set(bots);
  const firstOfConn = new Set();
  const late = [];
  let wouldDrop = 0;
  for (const beat of record.heartbeats) {
    if (!mine.has(beat.bot)) continue;
    // A connection's first heartbeat is timed from its HELLO, not from
    // a previous beat.
    if (!firstOfConn.has(beat.conn)) {
      firstOfConn.add(beat.conn);
      continue;
    }
    if (beat.t <= from || beat.t > to) continue;
    late.push(beat.late_ms);
    if (beat.gap_ms > plan.intervalMs + plan.discordGraceMs) wouldDrop += 1;
  }
  const drops = record.drops.filter((d) => mine.has(d.bot) && d.t > from && d.t <= to);
  return { late, wouldDrop, drops };
}

async function runOnce({ fake, control, kind, bots, plan, measureMs, trafficMs, settleMs, cpuLoad, log }) {
  const dir = mkdtempSync(join(tmpdir(), "heartline-bench-stall-"));
  const armFile = join(dir, "arm");
  const stallLog = join(dir, "stalls.jsonl");
  const tokens = bots.map((i) => fake.info.bots[i].token);
  const host = new Host(kind, { fake: origins(fake), tokens }, {
    label: kind,
    env: {
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --require ${STALL_PRELOAD}`.trim(),
      STALL_MS: String(plan.stallMs), STALL_PERIOD_MS: String(plan.periodMs),
      STALL_FIRST_MS: "1000", STALL_ARM_FILE: armFile, STALL_LOG: stallLog,
    },
  });
  let busy = null;
  try {
    await host.next((m) => m.loaded, 60000, "the contender to load");
    await sleep(300);
    const rssBase = median([host.rss(), await sleep(100).then(() => host.rss())]);

    await fake.resetRecord();
    host.send({ cmd: "connect" });
    const connected = await host.next((m) => m.connected !== undefined || m.error,
      30000 + bots.length * 200, `${bots.length} bots READY`);
    if (connected.error) throw new Error(`${kind}: ${connected.error}`);
    if (connected.connected < bots.length) {
      throw new Error(`${kind}: only ${connected.connected} of ${bots.length} bots READY`);
    }
    await sleep(settleMs);
    host.send({ cmd: "gc" });
    await host.next((m) => m.gc, 10000, "a GC");
    const rssIdle = median(await sampleRss(host, Math.min(1000, settleMs)));

    const before = await host.fresh((m) => m.tick, 5000, "a tick");
    const [sent, trafficRss] = await Promise.all([
      traffic(control, bots, trafficMs), sampleRss(host, trafficMs)]);
    const deadline = Date.now() + 5000;
    let received = 0;
    while (Date.now() < deadline) {
      const tick = await host.fresh((m) => m.tick, 5000, "a tick");
      received = tick.dispatches - before.dispatches;
      if (received >= sent) break;
    }

    if (cpuLoad) busy = startBusyLoop();
    writeFileSync(armFile, "");
    const from = Date.now();
    await sleep(measureMs);
    const to = Date.now();
    const load = loadavg()[0];
    await busy?.stop();
    busy = null;

    let engineLateMax = null;
    if (kind === "heartline") {
      host.send({ cmd: "status" });
      const { status } = await host.next((m) => m.status !== undefined, 30000, "engine status");
      engineLateMax = Math.max(...status.bots.map((b) => b.heartbeat_late_ms_max));
    }
    const record = await fake.record();
    const stalls = existsSync(stallLog)
      ? readFileSync(stallLog, "utf8").split("\n").filter((l) => l.includes("stall_end")).length : 0;
    const { late, wouldDrop, drops } = heartbeatFigures(record, bots, from, to, plan);
    const n = bots.length;
    const result = {
      contender: kind, n,
      connect_ms: connected.ms,
      stalls,
      load_1m: load,
      lateness: summarize(late),
      drops: drops.length,
      would_drop_discord_grace: wouldDrop,
      engine_late_max_ms: engineLateMax,
      rss_base_kib: rssBase,
      rss_idle_kib: rssIdle,
      rss_traffic_kib: Math.max(...trafficRss),
      idle_kib_per_bot: (rssIdle - rssBase) / n,
      traffic_kib_per_bot: (Math.max(...trafficRss) - rssBase) / n,
      events_sent: sent,
      events_received: received,
    };
    log(`  ${kind} N=${n}: connect ${connected.ms} ms, idle ${result.idle_kib_per_bot.toFixed(1)} KiB/bot, ` +
      `lateness p50 ${result.lateness.p50} p99 ${result.lateness.p99} max ${result.lateness.max} ms ` +
      `(${late.length} beats, ${stalls} stalls), drops ${drops.length}, ` +
      `would-drop ${wouldDrop}, events ${received}/${sent}, load ${load.toFixed(1)}`);
    return { result, late };
  } finally {
    await busy?.stop();
    await host.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

// Runs every contender `repeats` times at N bots. Returns per-run results
// and, per contender, every lateness sample (for the plots).
// cpuLoad: false leaves out the busy-loop process (for looking into
// where lateness comes from; the bench always loads the CPU).
export async function heartbeatScenario({ n, contenders, repeats, intervalMs, measurePeriods,
  trafficMs, settleMs = 1500, cpuLoad = true, log }) {
  const plan = stallPlan(intervalMs);
  const measureMs = plan.periodMs * measurePeriods;
  log(`heartbeat: N=${n}, ${contenders.join(", ")}; interval ${plan.intervalMs} ms, ` +
    `stall ${plan.stallMs} ms every ${plan.periodMs} ms, ${measureMs} ms measured, ${repeats} repeats`);
  const fake = await startFake({
    bots: n * contenders.length, heartbeatInterval: plan.intervalMs,
    heartbeatGrace: plan.benchGraceMs,
  });
  const control = new Control(fake);
  const runs = [];
  const samples = Object.fromEntries(contenders.map((c) => [c, []]));
  const failures = [];
  try {
    for (let rep = 0; rep < repeats; rep++) {
      const order = contenders.map((_, i) => contenders[(i + rep) % contenders.length]);
      for (const kind of order) {
        const slot = contenders.indexOf(kind);
        const bots = Array.from({ length: n }, (_, i) => slot * n + i);
        try {
          const { result, late } = await runOnce({ fake, control, kind, bots, plan, measureMs,
            trafficMs, settleMs, cpuLoad, log });
          runs.push({ ...result, repeat: rep });
          for (const v of late) samples[kind].push(v);
        } catch (err) {
          log(`  ${kind} N=${n} FAILED: ${err.message.split("\n")[0]}`);
          failures.push({ contender: kind, n, repeat: rep, error: err.message.slice(0, 2000) });
        }
      }
    }
  } finally {
    control.close();
    await fake.stop();
  }
  return { plan, measureMs, runs, samples, failures };
}
