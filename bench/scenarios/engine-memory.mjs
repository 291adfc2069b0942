// heartline's own memory per bot: the engine alone in its host process
// (no clients there; they live in this process), resident memory before
// and after N bots are connected and idle. Run with the default replay
// buffer (2000 dispatches per bot, whose slot table is allocated up
// front) and with the smallest one (16), so that what the replay buffers
// take can be told apart from the rest; and with the smallest one and
// classic key exchange only (tls_groups X25519:P-256), since the
// post-quantum hybrid share that OpenSSL 3.5 offers by default stays in
// memory for the life of each connection.

import { connectAll } from "../lib/gateway-client.mjs";
import { origins, startFake } from "../lib/fake.mjs";
import { Host, sleep } from "../lib/proc.mjs";
import { median } from "../lib/stats.mjs";

async function settledRss(host) {
  const samples = [];
  for (let i = 0; i < 5; i++) {
    samples.push(host.rss());
    await sleep(100);
  }
  return median(samples);
}

// `variants`: the engine configurations to measure, each
// { replay_buffer, tls_groups? }.
export async function engineMemoryScenario({ n, variants, settleMs = 2000, log }) {
  const fake = await startFake({ bots: n * variants.length });
  const runs = [];
  try {
    for (const [slot, variant] of variants.entries()) {
      const { replay_buffer: replay, tls_groups: groups = null } = variant;
      const tokens = fake.info.bots.slice(slot * n, (slot + 1) * n).map((b) => b.token);
      const host = new Host("engine", { fake: origins(fake), engines: [variant] }, { label: "engine" });
      let clients = [];
      try {
        const { origins: [origin] } = await host.next((m) => m.loaded, 30000, "the engine");
        await sleep(300);
        const base = await settledRss(host);
        clients = await connectAll(origin.replace("http:", "ws:"), tokens);
        await sleep(settleMs);
        const idle = await settledRss(host);
        const run = { n, replay_buffer: replay, tls_groups: groups, rss_base_kib: base, rss_idle_kib: idle,
          idle_kib_per_bot: (idle - base) / n };
        runs.push(run);
        log(`  engine memory N=${n} replay_buffer=${replay}${groups ? ` tls_groups=${groups}` : ""}: ` +
          `${run.idle_kib_per_bot.toFixed(1)} KiB/bot`);
      } finally {
        await Promise.all(clients.map((c) => c.close()));
        await host.stop();
      }
    }
  } finally {
    await fake.stop();
  }
  return runs;
}
