// Reconnect storm: N connected sessions dropped at once by the fake
// (POST /_fake/drop-all, no close frame, every session resumable), as a
// network blip does. Measured at the fake: when each bot's session is
// back (its first RESUMED or READY after the drop), the IDENTIFYs and
// RESUMEs it took, and the host's CPU time from the drop until all are
// back.
//
// heartline runs as an engine alone in its host process, its N
// downstream clients in this process (they see nothing of the storm when
// it goes right: the engine resumes upstream and the downstream sessions
// stay up). The other contenders run in a host process of their own.

import { loadavg } from "node:os";
import { connectAll } from "../lib/gateway-client.mjs";
import { origins, startFake } from "../lib/fake.mjs";
import { Host, sleep } from "../lib/proc.mjs";
import { percentile } from "../lib/stats.mjs";

async function connectContender(fake, kind, tokens, engine) {
  if (kind !== "heartline") {
    const host = new Host(kind, { fake: origins(fake), tokens }, { label: kind });
    await host.next((m) => m.loaded, 60000, "the contender to load");
    host.send({ cmd: "connect" });
    const done = await host.next((m) => m.connected !== undefined || m.error,
      30000 + tokens.length * 200, "READY");
    if (done.error || done.connected < tokens.length) {
      throw new Error(`${kind}: ${done.error ?? `${done.connected} of ${tokens.length} READY`}`);
    }
    return { host, clients: [] };
  }
  const host = new Host("engine", { fake: origins(fake), engines: [engine] }, { label: "engine" });
  const { origins: [origin] } = await host.next((m) => m.loaded, 30000, "the engine");
  const clients = await connectAll(origin.replace("http:", "ws:"), tokens);
  return { host, clients };
}

// Per bot, the time its session came back after `droppedAt`.
function backTimes(record, bots, droppedAt) {
  const back = new Map();
  const note = (bot, t) => {
    if (bots.has(bot) && t > droppedAt && !back.has(bot)) back.set(bot, t - droppedAt);
  };
  for (const r of record.resumes) if (r.ok) note(r.bot, r.t);
  for (const r of record.identifies) note(r.bot, r.t);
  return back;
}

async function runOnce({ fake, name, kind, botIndexes, engine, timeoutMs, settleMs, log }) {
  const tokens = botIndexes.map((i) => fake.info.bots[i].token);
  const bots = new Set(botIndexes);
  const { host, clients } = await connectContender(fake, kind, tokens, engine);
  try {
    await sleep(settleMs);
    await fake.resetRecord();
    const cpu0 = host.cpu();
    const droppedAt = Date.now();
    await fake.dropAll();
    let back = new Map();
    let cpuMs = null;
    while (Date.now() - droppedAt < timeoutMs) {
      await sleep(250);
      back = backTimes(await fake.record(), bots, droppedAt);
      if (back.size === bots.size) {
        cpuMs = host.cpu() - cpu0;
        break;
      }
    }
    const allBackMs = back.size === bots.size ? Math.max(...back.values()) : null;
    await sleep(settleMs);
    const record = await fake.record();
    const mine = (list) => list.filter((r) => bots.has(r.bot) && r.t > droppedAt);
    const opened = mine(record.connects).map((c) => c.t - droppedAt);
    const result = {
      contender: name, n: bots.size,
      back: back.size,
      all_back_ms: allBackMs,
      first_back_ms: back.size ? Math.min(...back.values()) : null,
      p50_back_ms: percentile([...back.values()], 50),
      last_connect_ms: opened.length ? Math.max(...opened) : null,
      identifies: mine(record.identifies).length,
      resumes_ok: mine(record.resumes).filter((r) => r.ok).length,
      resumes_failed: mine(record.resumes).filter((r) => !r.ok).length,
      identify_rate_limited: mine(record.identify_rate_limited).length,
      cpu_ms: cpuMs,
      downstream_closed: clients.filter((c) => c.closed !== null).length,
      downstream_invalid_sessions: clients.reduce((s, c) => s + c.invalidSessions, 0),
      load_1m: loadavg()[0],
    };
    log(`  storm ${name} N=${result.n}: ${result.back}/${result.n} back, all after ${allBackMs} ms ` +
      `(first ${result.first_back_ms}, p50 ${result.p50_back_ms}); ${result.identifies} IDENTIFY, ` +
      `${result.resumes_ok} RESUME ok, ${result.resumes_failed} failed; CPU ${cpuMs} ms`);
    return result;
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await host.stop();
  }
}

// contenders: [{ name, kind, engine }] (engine: heartline's extra config).
export async function stormScenario({ n, contenders, repeats, timeoutMs, settleMs = 2000, log }) {
  log(`storm: N=${n}, ${contenders.map((c) => c.name).join(", ")}, ${repeats} repeats`);
  const fake = await startFake({ bots: n * contenders.length });
  const runs = [];
  const failures = [];
  try {
    for (let rep = 0; rep < repeats; rep++) {
      for (const c of contenders.map((_, i) => contenders[(i + rep) % contenders.length])) {
        const slot = contenders.indexOf(c);
        const botIndexes = Array.from({ length: n }, (_, i) => slot * n + i);
        try {
          runs.push({ ...await runOnce({ fake, name: c.name, kind: c.kind, engine: c.engine ?? {},
            botIndexes, timeoutMs, settleMs, log }), repeat: rep });
        } catch (err) {
          log(`  storm ${c.name} N=${n} FAILED: ${err.message.split("\n")[0]}`);
          failures.push({ contender: c.name, n, repeat: rep, error: err.message.slice(0, 2000) });
        }
      }
    }
  } finally {
    await fake.stop();
  }
  return { runs, failures };
}
