// Dispatch forwarding: how many events a second heartline passes from
// Discord to a downstream client, and how much later than a client
// connected straight to Discord it delivers each one.
//
// One bot with 2K shards: K sessions straight to the fake (wss, the same
// transport heartline uses upstream) and K through an engine in a host
// process of its own, whose main thread is idle, so the process's CPU
// time is the engine's. Both sides' clients live in this process and run
// the same code. Every event the fake dispatches goes to all 2K sessions
// in one pass, so one control request yields 2K events.
//
//   latency     paced events; per event, receive time through heartline
//               minus receive time of the direct client (same clock). The
//               fake writes to its sessions one after another, in the
//               order they connected, and a write costs it ~0.1 ms; so
//               two pairs are timed, one connected direct first and one
//               through heartline first, and each event's figure is the
//               mean of the two differences, in which that order cancels
//   throughput  control requests as fast as the fake takes them; events a
//               second received on each side, and the engine's CPU time
//               per forwarded event

import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { connectAll } from "../lib/gateway-client.mjs";
import { Control, messageEvent, origins, startFake } from "../lib/fake.mjs";
import { Host, sleep } from "../lib/proc.mjs";
import { summarize } from "../lib/stats.mjs";

// Connects the sessions in pairs; pairs alternate which side comes first
// (direct, via, via, direct, ...), which is the fake's order of writes.
async function connectSides(fake, engineOrigin, k) {
  const token = fake.info.bots[0].token;
  const ca = readFileSync(fake.info.ca_file);
  const wss = fake.info.https_origin.replace("https:", "wss:");
  const direct = [];
  const via = [];
  for (let i = 0; i < k; i++) {
    const openDirect = async () =>
      direct.push(...await connectAll(wss, [token], { ca, shard: [i, 2 * k] }));
    const openVia = async () =>
      via.push(...await connectAll(engineOrigin.replace("http:", "ws:"), [token],
        { shard: [k + i, 2 * k] }));
    if (i % 2 === 0) {
      await openDirect();
      await openVia();
    } else {
      await openVia();
      await openDirect();
    }
  }
  return { direct, via };
}

async function latencyPhase(control, sides, ms, gapMs) {
  const pairs = Math.min(2, sides.via.length);
  const at = new Map(); // tag -> receive times, [direct0, via0, direct1, via1]
  const watch = (client, slot) => {
    client.countOnly = false;
    client.onDispatch = (frame, when) => {
      const tag = frame.d?.bench_tag;
      if (tag === undefined) return;
      if (!at.has(tag)) at.set(tag, []);
      at.get(tag)[slot] = when;
    };
  };
  for (const c of [...sides.direct, ...sides.via]) c.countOnly = true;
  for (let p = 0; p < pairs; p++) {
    watch(sides.direct[p], 2 * p);
    watch(sides.via[p], 2 * p + 1);
  }

  let tag = 0;
  const end = Date.now() + ms;
  while (Date.now() < end) {
    await control.dispatch(0, "MESSAGE_CREATE", messageEvent(++tag));
    await sleep(gapMs);
  }
  await sleep(500);
  const added = [];
  for (const times of at.values()) {
    let sum = 0;
    let whole = true;
    for (let p = 0; p < pairs; p++) {
      if (times[2 * p] === undefined || times[2 * p + 1] === undefined) whole = false;
      else sum += times[2 * p + 1] - times[2 * p];
    }
    if (whole) added.push(sum / pairs);
  }
  for (let p = 0; p < pairs; p++) {
    for (const c of [sides.direct[p], sides.via[p]]) {
      c.onDispatch = null;
      c.countOnly = true;
    }
  }
  return { sent: tag, matched: added.length, lost: tag - added.length, added };
}

async function throughputPhase(control, sides, host, ms) {
  const count = (list) => list.reduce((sum, c) => sum + c.messages, 0);
  const last = (list) => Math.max(...list.map((c) => c.lastAt));
  const before = { direct: count(sides.direct), via: count(sides.via) };
  const cpu0 = host.cpu();
  const start = performance.now();
  const requests = await control.until(Date.now() + ms, (i) =>
    control.dispatch(0, "MESSAGE_CREATE", messageEvent(i)));
  // Let both sides drain.
  for (let still = 0; still < 3;) {
    const seen = count(sides.direct) + count(sides.via);
    await sleep(200);
    still = count(sides.direct) + count(sides.via) === seen ? still + 1 : 0;
  }
  const cpuMs = host.cpu() - cpu0;
  const got = { direct: count(sides.direct) - before.direct, via: count(sides.via) - before.via };
  const k = sides.via.length;
  const rate = (side) => got[side] / ((last(sides[side]) - start) / 1000);
  return {
    requests,
    events_per_side: requests * k,
    direct_events: got.direct, via_events: got.via,
    direct_per_s: rate("direct"), via_per_s: rate("via"),
    engine_cpu_ms: cpuMs,
    engine_events_per_cpu_s: cpuMs > 0 ? got.via / (cpuMs / 1000) : null,
  };
}

export async function forwardScenario({ shardsPerSide, repeats, latencyMs, gapMs, blastMs, log }) {
  const k = shardsPerSide;
  log(`forward: ${k} sessions per side, ${repeats} repeats`);
  const fake = await startFake({ bots: 1, shards: 2 * k, maxConcurrency: 2 * k });
  const control = new Control(fake, { parallel: 32 });
  const host = new Host("engine", { fake: origins(fake), engines: [{}] }, { label: "engine" });
  let sides = null;
  try {
    const { origins: [engineOrigin] } = await host.next((m) => m.loaded, 30000, "the engine");
    sides = await connectSides(fake, engineOrigin, k);
    const runs = [];
    let added = [];
    for (let rep = 0; rep < repeats; rep++) {
      const lat = await latencyPhase(control, sides, latencyMs, gapMs);
      const put = await throughputPhase(control, sides, host, blastMs);
      const run = { repeat: rep, latency_added_ms: summarize(lat.added), events_lost: lat.lost, ...put,
        load_1m: loadavg()[0] };
      added = added.concat(lat.added);
      runs.push(run);
      log(`  forward rep ${rep}: added p50 ${run.latency_added_ms.p50?.toFixed(3)} ` +
        `p99 ${run.latency_added_ms.p99?.toFixed(3)} ms (${lat.matched} events, ${lat.lost} lost); ` +
        `${put.direct_per_s.toFixed(0)} ev/s direct, ${put.via_per_s.toFixed(0)} ev/s via heartline, ` +
        `engine ${put.engine_events_per_cpu_s?.toFixed(0)} ev per CPU-s`);
    }
    return { shards_per_side: k, runs, added };
  } finally {
    if (sides) await Promise.all([...sides.direct, ...sides.via].map((c) => c.close()));
    await host.stop();
    control.close();
    await fake.stop();
  }
}
