// Sessions that survive their host: a host process killed with SIGKILL
// or stopped, then started again on the same state directory, RESUMEs
// upstream instead of IDENTIFYing, and the new host gets a READY and the
// messages sent while it was down. A RESUME Discord refuses falls back
// to an ordinary start, and no token is written to the state directory.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync }
  from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { startFake } from "../fake-discord/client.mjs";
import { GatewayClient, configFor, sleep, startEngine, waitFor } from "./engine.mjs";

const HOST = join(dirname(fileURLToPath(import.meta.url)), "gateway-host.mjs");

function startHost(config, token) {
  const child = spawn(process.execPath, [HOST, JSON.stringify(config), token],
    { stdio: ["ignore", "pipe", "inherit"] });
  const host = { child, frames: [], logs: [], exited: null };
  let rest = "";
  child.stdout.on("data", (chunk) => {
    const lines = (rest + chunk).split("\n");
    rest = lines.pop();
    for (const line of lines) {
      if (line.startsWith("frame ")) host.frames.push(JSON.parse(line.slice(6)));
      if (line.startsWith("log ")) host.logs.push(JSON.parse(line.slice(4)));
    }
  });
  host.done = new Promise((resolve) => child.on("exit", (code, signal) => {
    host.exited = { code, signal };
    resolve();
  }));
  host.dispatches = (t) => host.frames.filter((f) => f.op === 0 && f.t === t);
  host.kill = async (signal) => {
    if (host.exited === null) child.kill(signal);
    await host.done;
  };
  return host;
}

const contents = (host) => host.dispatches("MESSAGE_CREATE").map((f) => f.d.content);

async function withRun(fakeOpts, body) {
  const fake = await startFake({ bots: 1, heartbeatInterval: 2000, ...fakeOpts });
  const dir = mkdtempSync(join(tmpdir(), "hl-session-"));
  const config = configFor(fake, { state_dir: join(dir, "state") });
  const hosts = [];
  const start = () => {
    const host = startHost(config, fake.info.bots[0].token);
    hosts.push(host);
    return host;
  };
  try {
    await body({ fake, start, stateDir: config.state_dir });
  } finally {
    for (const host of hosts) await host.kill("SIGKILL");
    await fake.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

// The first host: READY, a message seen, and time for a checkpoint.
async function firstRun(fake, start) {
  const host = start();
  await waitFor("READY", () => host.dispatches("READY")[0]);
  await fake.dm(0, "before the restart");
  await waitFor("the first message", () => contents(host).includes("before the restart"));
  await sleep(1500);
  return host;
}

// One bot whose host lives in this process, for engines handing over to
// the next one: stop() ends the running engine, start() begins the next
// on the same port and state directory.
async function withHandover(body) {
  const fake = await startFake({ bots: 1, heartbeatInterval: 2000 });
  const dir = mkdtempSync(join(tmpdir(), "hl-session-"));
  const config = configFor(fake, { state_dir: join(dir, "state") });
  let engine = startEngine(config);
  const port = Number(new URL(engine.origin).port);
  const client = new GatewayClient(engine.origin.replace("http:", "ws:"),
    fake.info.bots[0].token).identify();
  const start = () => (engine = startEngine({ ...config, listen_port: port }));
  try {
    await body({ fake, client, stop: () => engine.stop(), start });
  } finally {
    await client.close();
    engine.stop();
    await fake.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("sessions across a restart", () => {
  for (const signal of ["SIGKILL", "SIGTERM"]) {
    test(`a host stopped by ${signal} comes back by RESUME with what was missed`, async () => {
      await withRun({}, async ({ fake, start, stateDir }) => {
        const first = await firstRun(fake, start);
        await first.kill(signal);
        await fake.dm(0, "while the host was down");

        const second = start();
        await waitFor("the missed message", () =>
          contents(second).includes("while the host was down"), 15000);
        const kinds = second.frames.filter((f) => f.op === 0).map((f) => f.t);
        assert.equal(kinds[0], "READY", "the new host starts with READY");
        assert.equal(second.dispatches("READY")[0].s, 1);
        assert.equal(second.dispatches("READY")[0].d.user.id, fake.info.bots[0].user_id);
        assert.ok(!second.frames.some((f) => f.op === 9), "no invalid session");

        const rec = await fake.record();
        assert.equal(rec.identifies.length, 1, "one IDENTIFY in all");
        assert.equal(rec.resumes.filter((r) => r.ok).length, 1);
        assert.ok(second.logs.some((l) => /session restored from checkpoint/.test(l.msg)));

        const token = fake.info.bots[0].token;
        assert.equal(statSync(stateDir).mode & 0o777, 0o700);
        const files = readdirSync(stateDir);
        assert.ok(files.some((f) => f.startsWith("session-")), files.join(","));
        for (const f of files) {
          assert.equal(statSync(join(stateDir, f)).mode & 0o777, 0o600, f);
          assert.ok(!readFileSync(join(stateDir, f)).includes(token), `token in ${f}`);
        }
      });
    });
  }

  test("while events flow only the session's mark is rewritten, and a restart resumes from it", async () => {
    await withRun({}, async ({ fake, start, stateDir }) => {
      const first = start();
      await waitFor("READY", () => first.dispatches("READY")[0]);
      const channels = Array.from({ length: 2000 }, (_, i) => ({ id: `${7000 + i}`, name: `channel ${i}` }));
      await fake.dispatch(0, "GUILD_CREATE", { id: "4242", name: "big guild", channels });
      const files = () => readdirSync(stateDir);
      const snapshot = () => files().find((f) => f.endsWith(".json"));
      await waitFor("the guild in the snapshot", () => snapshot() &&
        readFileSync(join(stateDir, snapshot()), "utf8").includes("big guild"), 15000);
      const before = statSync(join(stateDir, snapshot()));

      for (let i = 1; i <= 5; i++) {
        await fake.dm(0, `flowing ${i}`);
        await sleep(500);
      }
      await waitFor("the messages", () => contents(first).length === 5);
      await sleep(1500);
      const mark = files().find((f) => f.endsWith(".mark"));
      assert.ok(mark, `a mark beside the snapshot: ${files()}`);
      const after = statSync(join(stateDir, snapshot()));
      assert.equal(after.mtimeMs, before.mtimeMs, "the snapshot was not rewritten");
      assert.ok(statSync(join(stateDir, mark)).mtimeMs > before.mtimeMs);
      assert.ok(statSync(join(stateDir, mark)).size < 512);

      // A change to the guild goes in the mark; a new guild has the
      // snapshot saved whole. Then the host dies at once.
      await fake.dispatch(0, "CHANNEL_CREATE", { id: "9999", guild_id: "4242", name: "made later" });
      await sleep(1500);
      assert.equal(statSync(join(stateDir, snapshot())).mtimeMs, before.mtimeMs);
      assert.match(readFileSync(join(stateDir, mark), "utf8"), /made later/);
      await fake.dispatch(0, "GUILD_CREATE", { id: "5555", name: "new guild", channels: [] });
      await fake.dm(0, "after the new guild");
      await waitFor("the last message", () => contents(first).includes("after the new guild"));
      await sleep(1500);

      await first.kill("SIGKILL");
      await fake.dm(0, "while the host was down");
      const second = start();
      await waitFor("the missed message", () => contents(second).includes("while the host was down"), 15000);
      await sleep(500);
      assert.deepEqual(contents(second), ["while the host was down"],
        "resumed from the mark: nothing the first host had is sent again");
      const guilds = Object.fromEntries(second.dispatches("GUILD_CREATE").map((f) => [f.d.id, f.d]));
      assert.equal(guilds["4242"]?.channels.length, 2001);
      assert.equal(guilds["4242"].channels.at(-1).name, "made later");
      assert.equal(guilds["5555"]?.name, "new guild");
      const rec = await fake.record();
      assert.equal(rec.identifies.length, 1);
      assert.equal(rec.resumes.filter((r) => r.ok).length, 1);
    });
  });

  test("a RESUME Discord refuses falls back to an ordinary IDENTIFY", async () => {
    await withRun({ resumeWindow: 300 }, async ({ fake, start }) => {
      const first = await firstRun(fake, start);
      await first.kill("SIGKILL");
      await sleep(1000); // past the fake's resume window

      const second = start();
      await waitFor("READY", () => second.dispatches("READY")[0], 15000)
        .catch((err) => assert.fail(`${err.message}\n${second.logs.map((l) => l.msg).join("\n")}`));
      await fake.dm(0, "after the new start");
      await waitFor("a message", () => contents(second).includes("after the new start"));
      assert.equal(second.dispatches("READY").length, 1);
      assert.ok(!second.frames.some((f) => f.op === 9), "the host saw an ordinary start");
      const rec = await fake.record();
      assert.equal(rec.resumes.filter((r) => !r.ok).length, 1);
      assert.equal(rec.identifies.length, 2);
    });
  });

  test("a host that IDENTIFYs again on a live session costs nothing upstream", async () => {
    // What an account restart by OpenClaw's health monitor looks like.
    const fake = await startFake({ bots: 1, heartbeatInterval: 2000 });
    const engine = startEngine(configFor(fake));
    const ws = engine.origin.replace("http:", "ws:");
    const token = fake.info.bots[0].token;
    const first = new GatewayClient(ws, token).identify();
    let second;
    try {
      await waitFor("READY", () => first.dispatches("READY")[0]);
      await fake.dispatch(0, "GUILD_CREATE", { id: "4242", name: "guild", channels: [] });
      await waitFor("the guild", () => first.dispatches("GUILD_CREATE")[0]);
      // The new connection comes before the old one is gone.
      second = new GatewayClient(ws, token).identify();
      await waitFor("a fresh READY", () => second.dispatches("READY")[0]);
      await waitFor("the old connection closed", () => first.closed !== null);
      assert.equal(second.dispatches("GUILD_CREATE")[0]?.d.id, "4242");
      assert.notEqual(second.sessionId, first.sessionId);
      await fake.dm(0, "after the account restart");
      await waitFor("the message", () => second.dispatches("MESSAGE_CREATE")
        .some((f) => f.d.content === "after the account restart"));
      const rec = await fake.record();
      assert.equal(rec.identifies.length, 1);
      assert.equal(rec.drops.length, 0);
    } finally {
      await second?.close();
      engine.stop();
      await fake.stop();
    }
  });

  test("a host that joins later sees each guild as it is now, not as it began", async () => {
    const fake = await startFake({ bots: 1, heartbeatInterval: 2000 });
    const engine = startEngine(configFor(fake));
    const ws = engine.origin.replace("http:", "ws:");
    const token = fake.info.bots[0].token;
    const first = new GatewayClient(ws, token).identify();
    let second;
    try {
      await waitFor("READY", () => first.dispatches("READY")[0]);
      await fake.dispatch(0, "GUILD_CREATE", {
        id: "4242", name: "guild", member_count: 1,
        channels: [{ id: "4300", name: "general" }, { id: "4301", name: "old" }],
        roles: [{ id: "4400", name: "everyone" }],
        members: [{ user: { id: "4500" }, nick: "first" }],
      });
      await fake.dispatchMany(0, [
        { t: "CHANNEL_CREATE", d: { id: "4302", guild_id: "4242", name: "new" } },
        { t: "CHANNEL_UPDATE", d: { id: "4300", guild_id: "4242", name: "renamed" } },
        { t: "CHANNEL_DELETE", d: { id: "4301", guild_id: "4242" } },
        { t: "GUILD_ROLE_CREATE", d: { guild_id: "4242", role: { id: "4401", name: "mods" } } },
        { t: "GUILD_MEMBER_ADD", d: { guild_id: "4242", user: { id: "4501" }, nick: "second" } },
        { t: "GUILD_UPDATE", d: { id: "4242", name: "guild, renamed" } },
      ]);
      await waitFor("the guild events", () => first.dispatches("GUILD_UPDATE")[0]);

      second = new GatewayClient(ws, token).identify();
      const guild = (await waitFor("GUILD_CREATE", () => second.dispatches("GUILD_CREATE")[0])).d;
      assert.equal(guild.name, "guild, renamed");
      assert.deepEqual(guild.channels, [{ id: "4300", name: "renamed" }, { id: "4302", name: "new" }]);
      assert.deepEqual(guild.roles.map((r) => r.name), ["everyone", "mods"]);
      assert.deepEqual(guild.members.map((m) => m.nick), ["first", "second"]);
      assert.equal(guild.member_count, 2);
      assert.equal((await fake.record()).identifies.length, 1);
    } finally {
      await second?.close();
      await first.close().catch(() => {});
      engine.stop();
      await fake.stop();
    }
  });

  test("what came while a host was away reaches its next IDENTIFY", async () => {
    const fake = await startFake({ bots: 1, heartbeatInterval: 2000 });
    const engine = startEngine(configFor(fake));
    const ws = engine.origin.replace("http:", "ws:");
    const token = fake.info.bots[0].token;
    const first = new GatewayClient(ws, token).identify();
    let second;
    try {
      await waitFor("READY", () => first.dispatches("READY")[0]);
      await fake.dm(0, "seen by the first host");
      await waitFor("the first message", () => first.dispatches("MESSAGE_CREATE")[0]);
      first.send({ op: 1, d: first.seq }); // what it has seen
      await sleep(200);
      await first.close();
      await fake.dm(0, "sent while no host was there");
      await sleep(300);

      second = new GatewayClient(ws, token).identify();
      await waitFor("the message sent meanwhile", () => second.dispatches("MESSAGE_CREATE")
        .some((f) => f.d.content === "sent while no host was there"));
      const kinds = second.dispatches().map((f) => f.t);
      assert.equal(kinds[0], "READY");
      assert.ok(!second.dispatches("MESSAGE_CREATE").some((f) => f.d.content === "seen by the first host"),
        "what the host confirmed is not sent again");
      assert.equal((await fake.record()).identifies.length, 1);
    } finally {
      await second?.close();
      engine.stop();
      await fake.stop();
    }
  });

  test("a damaged checkpoint is removed and said, and the engine starts", () => {
    const dir = mkdtempSync(join(tmpdir(), "hl-session-"));
    const stateDir = join(dir, "state");
    try {
      mkdirSync(stateDir, { mode: 0o700 });
      const name = `session-${"ab".repeat(32)}-0-1.json`;
      writeFileSync(join(stateDir, name), '{"v":1,"key":"trunc', { mode: 0o600 });
      const engine = startEngine({ state_dir: stateDir });
      try {
        const logs = engine.logs().map((l) => l.msg).join("\n");
        assert.match(logs, new RegExp(`session checkpoint unreadable file=${name}; removed`));
        assert.ok(!readdirSync(stateDir).includes(name));
      } finally {
        engine.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("what a stopping engine had not delivered is replayed by the next one", async () => {
    // A new build taking over: dispatches still queued for the host when
    // the old engine stopped reach it from the new one, in order.
    await withHandover(async ({ fake, client, stop, start }) => {
      await waitFor("READY", () => client.dispatches("READY")[0]);
      for (const n of [1, 2, 3]) await fake.dm(0, `queued ${n}`);
      await waitFor("three messages", () => client.dispatches("MESSAGE_CREATE").length === 3);
      const sent = client.dispatches("MESSAGE_CREATE");
      stop();
      await waitFor("the host's connection closed", () => client.closed !== null);

      // The host behaves as if the last two had still been in the old
      // engine's queue: it has seen up to the first only.
      client.seq = sent[0].s;
      const engine = start();
      client.resume();
      await waitFor("RESUMED", () => client.dispatches("RESUMED")[0]);
      assert.ok(!client.frames.some((f) => f.op === 9), "no invalid session");
      assert.deepEqual(client.dispatches("MESSAGE_CREATE").map((f) => [f.s, f.d.content]),
        sent.slice(1).map((f) => [f.s, f.d.content]));
      assert.ok(engine.logs().some((l) => /downstream resumed .* replayed=2/.test(l.msg)));
      assert.equal((await fake.record()).identifies.length, 1);
    });
  });

  test("a host that outlives its engine RESUMEs into the next one", async () => {
    // A new build of the library taking over inside the same process.
    await withHandover(async ({ fake, client, stop, start }) => {
      await waitFor("READY", () => client.dispatches("READY")[0]);
      await fake.dm(0, "before the handover");
      await waitFor("the first message", () => client.dispatches("MESSAGE_CREATE")[0]);
      stop();
      await waitFor("the host's connection closed", () => client.closed !== null);
      await fake.dm(0, "during the handover");

      start();
      const seq = client.seq;
      client.resume();
      await waitFor("RESUMED", () => client.dispatches("RESUMED")[0]);
      await waitFor("the message sent meanwhile", () => client.dispatches("MESSAGE_CREATE")
        .some((f) => f.d.content === "during the handover"));
      assert.ok(!client.frames.some((f) => f.op === 9), "no invalid session");
      assert.ok(client.dispatches().filter((f) => f.t !== "RESUMED").every((f) => f.s > seq),
        "nothing the host had");
      const rec = await fake.record();
      assert.equal(rec.identifies.length, 1);
      assert.equal(rec.resumes.filter((r) => r.ok).length, 1);
    });
  });
});
