// The reply journal: a reply the engine has taken reaches Discord once,
// through 5xx answers, a host killed with SIGKILL at any moment, and a
// disk that is full; the state directory holds no token.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync }
  from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { startFake } from "../fake-discord/client.mjs";
import { configFor, sleep, startEngine, waitFor } from "./engine.mjs";

const HOST = join(dirname(fileURLToPath(import.meta.url)), "crash-host.mjs");
const MESSAGES = "POST /channels/:channel/messages";
const CRASHES = 50;

// Runs crash-host.mjs, collecting what it says; `lines` grows as it runs.
function startHost(config, token, channel, first, { count, prlimit } = {}) {
  const args = [HOST, JSON.stringify(config), token, channel, String(first)];
  if (count !== undefined) args.push(String(count));
  const cmd = prlimit ? "prlimit" : process.execPath;
  const argv = prlimit ? [`--fsize=${prlimit}`, process.execPath, ...args] : args;
  const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "inherit"] });
  const host = { child, lines: [], exited: null };
  let rest = "";
  child.stdout.on("data", (chunk) => {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop();
    host.lines.push(...parts);
  });
  host.done = new Promise((resolve) => child.on("exit", (code, signal) => {
    host.exited = { code, signal };
    resolve(host.exited);
  }));
  return host;
}

const numbers = (host, word) => host.lines
  .filter((l) => l.startsWith(`${word} `)).map((l) => Number(l.split(" ")[1]));

function repliesByNumber(record) {
  const counts = new Map();
  for (const m of record.messages) {
    const k = /^reply (\d+)$/.exec(m.content ?? "");
    if (m.method === "POST" && k) counts.set(Number(k[1]), (counts.get(Number(k[1])) ?? 0) + 1);
  }
  return counts;
}

// Every file under dir, for the permission and token checks.
function filesUnder(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]);
}

function assertNoToken(stateDir, token) {
  assert.equal(statSync(stateDir).mode & 0o777, 0o700);
  const files = filesUnder(stateDir);
  assert.ok(files.length > 0);
  for (const f of files) {
    assert.equal(statSync(f).mode & 0o777, 0o600, f);
    assert.ok(!readFileSync(f).includes(token), `token found in ${f}`);
  }
}

// A fake with one bot that has a DM channel, and an engine configuration
// with a fresh state directory.
async function oneBotWithState() {
  const fake = await startFake({ bots: 1 });
  const stateDir = join(mkdtempSync(join(tmpdir(), "hl-journal-")), "state");
  const { token } = fake.info.bots[0];
  const { channel_id } = await fake.dm(0, "hello");
  return { fake, stateDir, config: configFor(fake, { state_dir: stateDir }), channel_id,
    headers: { authorization: `Bot ${token}`, "content-type": "application/json" } };
}

describe("reply journal", () => {
  test("a reply whose answer is lost in a 5xx is sent again and kept once", async () => {
    const fake = await startFake({ bots: 1 });
    const stateDir = join(mkdtempSync(join(tmpdir(), "hl-journal-")), "state");
    const engine = startEngine(configFor(fake, { state_dir: stateDir }));
    try {
      const { token } = fake.info.bots[0];
      const { channel_id } = await fake.dm(0, "hello");
      await fake.fault({ route: MESSAGES, count: 2, status: 500, after: true });
      const res = await fetch(`${engine.origin}/api/v10/channels/${channel_id}/messages`, {
        method: "POST",
        headers: { authorization: `Bot ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ content: "reply 1" }),
      });
      assert.equal(res.status, 200);
      const rec = await fake.record();
      assert.equal(repliesByNumber(rec).get(1), 1);
      // The first try made the message; the two after it found it.
      assert.equal(rec.nonce_dedup.length, 2);
      const tries = rec.requests.filter((r) => r.route === MESSAGES);
      assert.equal(tries.length, 3);
      assertNoToken(stateDir, token);
      assert.match(engine.logs().map((l) => l.msg).join("\n"), /reply not delivered status=500/);
    } finally {
      engine.stop();
      await fake.stop();
      rmSync(dirname(stateDir), { recursive: true, force: true });
    }
  });

  test(`${CRASHES} SIGKILLs of the host while replies go out: every reply once`, async () => {
    const fake = await startFake({ bots: 1 });
    const stateDir = join(mkdtempSync(join(tmpdir(), "hl-journal-")), "state");
    const config = configFor(fake, { state_dir: stateDir });
    const { token } = fake.info.bots[0];
    const { channel_id } = await fake.dm(0, "hello");
    // Discord takes a while over each message, so replies are in flight
    // when the host dies.
    await fake.fault({ route: MESSAGES, count: 1e9, status: null, delay_ms: 150 });
    const sent = new Set();
    const acked = new Set();
    let next = 0;
    try {
      for (let i = 0; i < CRASHES; i++) {
        const host = startHost(config, token, channel_id, next);
        await waitFor("the host's engine", () => host.lines.some((l) => l.startsWith("origin")) || host.exited, 20000);
        assert.equal(host.exited, null, `host ${i} exited early: ${host.lines.join("\n")}`);
        await sleep(100 + Math.random() * 1400);
        host.child.kill("SIGKILL");
        await host.done;
        for (const n of numbers(host, "sent")) sent.add(n);
        for (const n of numbers(host, "acked")) acked.add(n);
        next = Math.max(next, ...numbers(host, "sent").map((n) => n + 1));
      }
      // One last start that sends nothing new: the journal's leftovers go.
      const host = startHost(config, token, channel_id, -1);
      let counts;
      await waitFor("the leftovers delivered", async () => {
        counts = repliesByNumber(await fake.record());
        return host.lines.some((l) => l.startsWith("shown")) &&
          [...acked].every((n) => counts.has(n));
      }, 60000);
      await sleep(3000); // anything still coming would show up now
      counts = repliesByNumber(await fake.record());
      host.child.kill("SIGKILL");
      await host.done;

      const twice = [...counts].filter(([, c]) => c > 1);
      const strangers = [...counts.keys()].filter((n) => !sent.has(n));
      const lostAcked = [...acked].filter((n) => !counts.has(n));
      const rescued = [...counts.keys()].filter((n) => !acked.has(n));
      console.log(`crash loop: ${CRASHES} kills, ${sent.size} replies sent, ` +
        `${acked.size} answered before a kill, ${counts.size} delivered, ` +
        `${rescued.length} delivered only thanks to the journal, ` +
        `${sent.size - counts.size} lost with the host before the journal had them`);
      assert.deepEqual(twice, [], "no reply twice");
      assert.deepEqual(strangers, []);
      assert.deepEqual(lostAcked, [], "every answered reply delivered");
      assert.ok(rescued.length >= 10, `only ${rescued.length} replies rescued`);
      assertNoToken(stateDir, token);
    } finally {
      await fake.stop();
      rmSync(dirname(stateDir), { recursive: true, force: true });
    }
  });

  test("a full disk: the error is logged, every reply still goes out once", async () => {
    const fake = await startFake({ bots: 1 });
    const stateDir = join(mkdtempSync(join(tmpdir(), "hl-journal-")), "state");
    const config = configFor(fake, { state_dir: stateDir });
    const { token } = fake.info.bots[0];
    const { channel_id } = await fake.dm(0, "hello");
    // Files of this process may not grow past 2 KiB: a few entries fit.
    const host = startHost(config, token, channel_id, 0, { count: 20, prlimit: 2048 });
    try {
      await waitFor("20 replies", () => host.lines.includes("done") || host.exited, 30000)
        .catch((err) => assert.fail(`${err.message}:\n${host.lines.slice(-30).join("\n")}`));
      assert.equal(host.exited, null, host.lines.join("\n"));
      await sleep(300); // the last log records
      const statuses = host.lines.filter((l) => l.startsWith("acked ")).map((l) => l.split(" ")[2]);
      assert.equal(statuses.length, 20);
      assert.ok(statuses.every((s) => s === "200"), statuses.join(","));
      const counts = repliesByNumber(await fake.record());
      assert.equal(counts.size, 20);
      assert.ok([...counts.values()].every((c) => c === 1));
      const logs = host.lines.filter((l) => l.startsWith("log ")).map((l) => JSON.parse(l.slice(4)));
      assert.ok(logs.some((l) => /journal write failed error="File too large"/.test(l.msg)),
        logs.map((l) => l.msg).join("\n"));
      assert.ok(statSync(join(stateDir, "journal")).size <= 2048);
    } finally {
      host.child.kill("SIGKILL");
      await host.done;
      await fake.stop();
      rmSync(dirname(stateDir), { recursive: true, force: true });
    }
  });

  test("a damaged journal keeps its good entries, says what it dropped, and sends them", async () => {
    const { fake, stateDir, config, channel_id, headers } = await oneBotWithState();
    try {
      // Discord sits on these replies, so the journal still has all three
      // when the engine goes.
      await fake.fault({ route: MESSAGES, count: 3, status: null, delay_ms: 30000 });
      let engine = startEngine(config);
      for (const n of [1, 2, 3]) {
        fetch(`${engine.origin}/api/v10/channels/${channel_id}/messages`, {
          method: "POST", headers, body: JSON.stringify({ content: `reply ${n}` }),
        }).catch(() => {});
      }
      await waitFor("three entries on disk", () =>
        readFileSync(join(stateDir, "journal")).toString("latin1").split("HLJ1").length - 1 >= 3);
      engine.stop();

      // A flipped bit in the first entry, and a tail cut mid-record.
      const file = join(stateDir, "journal");
      const bytes = readFileSync(file);
      const at = [];
      for (let i = bytes.indexOf("HLJ1"); i >= 0; i = bytes.indexOf("HLJ1", i + 1)) at.push(i);
      const [first, , last] = at.slice(-3);
      bytes[first + 24] ^= 0x10;
      writeFileSync(file, bytes.subarray(0, last + 10));
      await fake.clearFaults();

      engine = startEngine(config);
      try {
        const msgs = () => engine.logs().map((l) => l.msg).join("\n");
        assert.match(msgs(), /journal damaged .*stretches=2 bytes_dropped=\d+ entries_kept=1/);
        await fetch(`${engine.origin}/api/v10/users/@me`, { headers });
        // The three went out at once, so which one the middle entry
        // holds is not known; Discord is still sitting on the first
        // engine's attempts, so only the resent one shows.
        await waitFor("the kept reply resent", async () =>
          repliesByNumber(await fake.record()).size === 1, 10000);
        assert.deepEqual([...repliesByNumber(await fake.record()).values()], [1]);
        assert.match(msgs(), /journal resending bot=\w+ replies=1/);
      } finally {
        engine.stop();
      }
    } finally {
      await fake.stop();
      rmSync(dirname(stateDir), { recursive: true, force: true });
    }
  });

  test("a failed edit waiting to be tried again is dropped once a newer one lands", async () => {
    const { fake, stateDir, config, channel_id, headers } = await oneBotWithState();
    const PATCH = "PATCH /channels/:channel/messages/:message";
    const edits = async () => (await fake.record()).messages
      .filter((m) => m.method === "PATCH").map((m) => m.content);
    const engine = startEngine(config);
    try {
      const base = `${engine.origin}/api/v10/channels/${channel_id}/messages`;
      const created = await (await fetch(base, {
        method: "POST", headers, body: JSON.stringify({ content: "edit 0" }),
      })).json();
      const patch = (text) => fetch(`${base}/${created.id}`,
        { method: "PATCH", headers, body: JSON.stringify({ content: text }) });

      // "edit 1" fails once and waits a second to be tried again; "edit 2"
      // gets through meanwhile. Sending "edit 1" then would undo it.
      await fake.fault({ route: PATCH, count: 1, status: 500 });
      const first = patch("edit 1");
      await waitFor("edit 1 refused", async () =>
        (await fake.record()).requests.some((r) => r.route === PATCH && r.status === 500));
      assert.equal((await patch("edit 2")).status, 200);
      const answer = await first;
      assert.equal(answer.status, 500);
      assert.match((await answer.json()).message, /newer edit/);
      await sleep(1500);
      assert.deepEqual(await edits(), ["edit 2"]);
      assert.ok(engine.logs().some((l) => /edit not sent again/.test(l.msg)));
    } finally {
      engine.stop();
      await fake.stop();
      rmSync(dirname(stateDir), { recursive: true, force: true });
    }
  });

  test("after a restart only the newest pending edit of a message is sent", async () => {
    const { fake, stateDir, config, channel_id, headers } = await oneBotWithState();
    const journalHas = (text) => readFileSync(join(stateDir, "journal")).includes(text);
    const edits = async () => (await fake.record()).messages
      .filter((m) => m.method === "PATCH").map((m) => m.content);
    try {
      let engine = startEngine(config);
      const base = `${engine.origin}/api/v10/channels/${channel_id}/messages`;
      const created = await (await fetch(base, {
        method: "POST", headers, body: JSON.stringify({ content: "edit 0" }),
      })).json();
      // Discord sits on the edits of this streamed reply, so all three
      // are still pending when the engine goes; each is journaled before
      // the next is made, so the journal has them in order.
      await fake.fault({ route: "PATCH /channels/:channel/messages/:message", count: 3,
        status: null, delay_ms: 30000 });
      for (const n of [1, 2, 3]) {
        fetch(`${base}/${created.id}`, {
          method: "PATCH", headers, body: JSON.stringify({ content: `edit ${n}` }),
        }).catch(() => {});
        await waitFor(`edit ${n} on disk`, () => journalHas(`"edit ${n}"`));
      }
      engine.stop();
      await fake.clearFaults();

      engine = startEngine(config);
      try {
        await fetch(`${engine.origin}/api/v10/users/@me`, { headers });
        await waitFor("the newest edit resent", async () => (await edits()).length > 0, 10000);
        await sleep(500);
        assert.deepEqual(await edits(), ["edit 3"]);
        assert.ok(engine.logs().some((l) =>
          /journal resending bot=\w+ replies=1 .*older_edits_dropped=2/.test(l.msg)));
      } finally {
        engine.stop();
      }
      // The two older edits are done for good: a third start sends nothing.
      engine = startEngine(config);
      try {
        await fetch(`${engine.origin}/api/v10/users/@me`, { headers });
        await sleep(500);
        assert.deepEqual(await edits(), ["edit 3"]);
        assert.ok(!engine.logs().some((l) => /journal resending/.test(l.msg)));
      } finally {
        engine.stop();
      }
    } finally {
      await fake.stop();
      rmSync(dirname(stateDir), { recursive: true, force: true });
    }
  });

  test("a state directory in use by another engine is refused by name", () => {
    const dir = mkdtempSync(join(tmpdir(), "hl-journal-"));
    const stateDir = join(dir, "state");
    try {
      const first = startEngine({ state_dir: stateDir });
      assert.throws(() => startEngine({ state_dir: stateDir }),
        /state_dir: state dir .*state: in use by another engine/);
      first.stop();
      startEngine({ state_dir: stateDir }).stop(); // free again
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a state directory that cannot be made is a start error naming it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hl-journal-"));
    try {
      // A regular file stands where a directory should go.
      const file = join(dir, "plain-file");
      writeFileSync(file, "x");
      assert.throws(() => startEngine({ state_dir: join(file, "state") }),
        /state_dir: .*plain-file/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
