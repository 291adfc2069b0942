// REST forwarding: GET /api/v10/users/@me straight to the fake (https,
// keep-alive) and through heartline (loopback http, keep-alive; heartline
// keeps its own connections to the fake). Added latency: sequential
// requests, the two sides alternating in batches, spread over many bots
// so that no bot nears heartline's 50 requests a second; throughput:
// many requests in flight, the sides in turn.

import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { origins, startFake } from "../lib/fake.mjs";
import { Host } from "../lib/proc.mjs";
import { alternate, blast, RestClient } from "../lib/rest-client.mjs";
import { median, summarize } from "../lib/stats.mjs";

export async function restScenario({ bots, requests, blastMs, parallel, repeats, log }) {
  log(`rest: ${requests} sequential requests per side, ${parallel} in flight for ${blastMs} ms, ${repeats} repeats`);
  const fake = await startFake({ bots });
  const host = new Host("engine", { fake: origins(fake), engines: [{}] }, { label: "engine" });
  const clients = {};
  try {
    const { origins: [engineOrigin] } = await host.next((m) => m.loaded, 30000, "the engine");
    clients.direct = new RestClient(`${fake.info.https_origin}/api/v10`,
      { ca: readFileSync(fake.info.ca_file), sockets: parallel });
    clients.via = new RestClient(`${engineOrigin}/api/v10`, { sockets: parallel });
    const tokens = fake.info.bots.map((b) => b.token);
    const send = (client, i) => client.request("GET", "/users/@me", tokens[i % tokens.length]);

    // Warm both sides' connections.
    await alternate(clients, 50, 10, send);
    const runs = [];
    const all = { direct: [], via: [] };
    for (let rep = 0; rep < repeats; rep++) {
      const seq = await alternate(clients, requests, 50, send);
      const put = {};
      for (const side of rep % 2 ? ["via", "direct"] : ["direct", "via"]) {
        put[side] = await blast(clients[side], blastMs, parallel, send);
      }
      const direct = summarize(seq.ms.direct);
      const via = summarize(seq.ms.via);
      all.direct.push(...seq.ms.direct);
      all.via.push(...seq.ms.via);
      const run = {
        repeat: rep, direct_ms: direct, via_ms: via,
        added_p50_ms: via.p50 - direct.p50, added_p99_ms: via.p99 - direct.p99,
        errors: seq.errors.direct + seq.errors.via + put.direct.failed + put.via.failed,
        direct_per_s: put.direct.per_s, via_per_s: put.via.per_s, load_1m: loadavg()[0],
      };
      runs.push(run);
      log(`  rest rep ${rep}: p50 ${direct.p50.toFixed(3)} direct, ${via.p50.toFixed(3)} via ` +
        `(+${run.added_p50_ms.toFixed(3)} ms), p99 +${run.added_p99_ms.toFixed(3)} ms; ` +
        `${put.direct.per_s.toFixed(0)} req/s direct, ${put.via.per_s.toFixed(0)} req/s via, ` +
        `${run.errors} errors`);
    }
    return {
      runs,
      added_p50_ms: median(runs.map((r) => r.added_p50_ms)),
      all,
    };
  } finally {
    for (const c of Object.values(clients)) c.close();
    await host.stop();
    await fake.stop();
  }
}
