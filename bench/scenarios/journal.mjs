// The reply journal: message creates (POST /api/v10/channels/ID/messages)
// through two engines in one host process, one with a state directory
// (every reply written and fsynced before it goes upstream) and one
// without. Added latency: sequential creates, the engines alternating in
// batches, spread over many bots and their DM channels; throughput: many
// creates in flight, the engines in turn. The state directory is a fresh
// temporary directory on the machine's disk.

import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { origins, startFake } from "../lib/fake.mjs";
import { Host } from "../lib/proc.mjs";
import { alternate, blast, RestClient } from "../lib/rest-client.mjs";
import { median, summarize } from "../lib/stats.mjs";

// One DM channel per bot, opened straight on the fake.
async function dmChannels(fake) {
  const direct = new RestClient(`${fake.info.https_origin}/api/v10`,
    { ca: readFileSync(fake.info.ca_file) });
  try {
    const ids = [];
    for (const bot of fake.info.bots) {
      const answer = await direct.request("POST", "/users/@me/channels", bot.token,
        { recipient_id: fake.info.human.user_id });
      if (answer.status !== 200) throw new Error(`open DM: ${answer.status} ${answer.body}`);
      ids.push(JSON.parse(answer.body).id);
    }
    return ids;
  } finally {
    direct.close();
  }
}

export async function journalScenario({ bots, requests, blastMs, parallel, repeats, log }) {
  log(`journal: ${requests} sequential creates per engine, ${parallel} in flight for ${blastMs} ms, ${repeats} repeats`);
  const stateDir = mkdtempSync(join(tmpdir(), "heartline-bench-journal-"));
  const fake = await startFake({ bots });
  const host = new Host("engine", { fake: origins(fake), engines: [{}, { state_dir: stateDir }] },
    { label: "engines" });
  const clients = {};
  try {
    const { origins: [plain, journaled] } = await host.next((m) => m.loaded, 30000, "the engines");
    clients.plain = new RestClient(`${plain}/api/v10`, { sockets: parallel });
    clients.journal = new RestClient(`${journaled}/api/v10`, { sockets: parallel });
    const channels = await dmChannels(fake);
    const tokens = fake.info.bots.map((b) => b.token);
    const send = (client, i) => client.request("POST", `/channels/${channels[i % bots]}/messages`,
      tokens[i % bots], { content: `bench reply ${i} ${"x".repeat(200)}` });

    await alternate(clients, 20, 10, send);
    await fake.resetRecord();
    const runs = [];
    let answered = 0;
    for (let rep = 0; rep < repeats; rep++) {
      const seq = await alternate(clients, requests, 25, send);
      const put = {};
      for (const side of rep % 2 ? ["journal", "plain"] : ["plain", "journal"]) {
        put[side] = await blast(clients[side], blastMs, parallel, send);
      }
      answered += 2 * requests + put.plain.ok + put.journal.ok;
      const plainMs = summarize(seq.ms.plain);
      const journalMs = summarize(seq.ms.journal);
      const run = {
        repeat: rep, plain_ms: plainMs, journal_ms: journalMs,
        added_p50_ms: journalMs.p50 - plainMs.p50, added_p99_ms: journalMs.p99 - plainMs.p99,
        errors: seq.errors.plain + seq.errors.journal + put.plain.failed + put.journal.failed,
        plain_per_s: put.plain.per_s, journal_per_s: put.journal.per_s, load_1m: loadavg()[0],
      };
      runs.push(run);
      log(`  journal rep ${rep}: p50 ${plainMs.p50.toFixed(3)} without, ${journalMs.p50.toFixed(3)} with ` +
        `(+${run.added_p50_ms.toFixed(3)} ms), p99 +${run.added_p99_ms.toFixed(3)} ms; ` +
        `${put.plain.per_s.toFixed(0)} replies/s without, ${put.journal.per_s.toFixed(0)} durable replies/s, ` +
        `${run.errors} errors`);
    }
    const record = await fake.record();
    return {
      runs,
      added_p50_ms: median(runs.map((r) => r.added_p50_ms)),
      messages_at_fake: record.messages.length,
      replies_answered: answered,
      nonce_dedups: record.nonce_dedup.length,
      state_files: readdirSync(stateDir).length,
    };
  } finally {
    for (const c of Object.values(clients)) c.close();
    await host.stop();
    await fake.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}
