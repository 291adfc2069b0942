// A newer build of the library taking over a running engine in the same
// process (hl_detach, then hl_attach of the other copy): the upstream
// sessions go on over the same connections, with their heartbeats, so
// Discord sees no drop, no IDENTIFY and no RESUME; the host's gateway
// connections RESUME into the new engine and get what came meanwhile; a
// reply in flight is answered first. A handover the new build refuses is
// left for the old build, which takes its sessions back.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";

import { startFake } from "../fake-discord/client.mjs";
import { GatewayClient, LIBRARY, closeHandover, configFor, sleep, startEngine, waitFor }
  from "./engine.mjs";

const HEARTBEAT_MS = 1000;

// A host that sends a chunked POST in two parts, a second apart.
const SLOW_CLIENT = `
const [port, channel, token] = process.argv.slice(1);
const body = JSON.stringify({ content: "sent slowly" });
const s = require("node:net").connect(Number(port), "127.0.0.1", () => {
  s.write("POST /api/v10/channels/" + channel + "/messages HTTP/1.1\\r\\n" +
    "Host: 127.0.0.1\\r\\nAuthorization: Bot " + token + "\\r\\n" +
    "Content-Type: application/json\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n" +
    body.slice(0, 5).length.toString(16) + "\\r\\n" + body.slice(0, 5) + "\\r\\n");
  console.log("first chunk sent");
  setTimeout(() => s.write(body.slice(5).length.toString(16) + "\\r\\n" + body.slice(5) +
    "\\r\\n0\\r\\n\\r\\n"), 1000);
});
let answer = "";
s.on("data", (d) => (answer += d));
s.on("close", () => console.log("status " + answer.split(" ")[1] + "\\n" + answer.split("\\r\\n\\r\\n")[0]));
`;
const MESSAGES = "POST /channels/:channel/messages";

// Two bots on an engine of this build, and a second copy of the library
// at another path, as a new build would be installed.
async function withEngine(body) {
  const fake = await startFake({ bots: 2, heartbeatInterval: HEARTBEAT_MS });
  const dir = mkdtempSync(join(tmpdir(), "hl-handover-"));
  mkdirSync(join(dir, "next"));
  const next = join(dir, "next", "libheartline.so");
  copyFileSync(LIBRARY, next);
  const config = configFor(fake, { state_dir: join(dir, "state") });
  const engines = [startEngine(config)];
  const ws = engines[0].origin.replace("http:", "ws:");
  const clients = fake.info.bots.map((b) => new GatewayClient(ws, b.token).identify());
  try {
    for (const c of clients) await waitFor("READY", () => c.dispatches("READY")[0]);
    await body({ fake, config, next, clients, engines });
  } finally {
    for (const c of clients) await c.close().catch(() => {});
    engines.at(-1).stop();
    await fake.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const contents = (client) => client.dispatches("MESSAGE_CREATE").map((f) => f.d.content);

function post(engine, token, channel, content) {
  return fetch(`${engine.origin}/api/v10/channels/${channel}/messages`, {
    method: "POST",
    headers: { authorization: `Bot ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ content }),
  });
}

describe("a new build taking over a running engine", () => {
  test("the upstream sessions go on without a reconnect", async () => {
    await withEngine(async ({ fake, config, next, clients, engines }) => {
      const { channel_id } = await fake.dm(0, "before the handover");
      await waitFor("the first message", () => contents(clients[0]).includes("before the handover"));
      const seqs = clients.map((c) => c.seq);

      // A reply on its way when the new build comes is answered first.
      await fake.fault({ route: MESSAGES, count: 1, status: null, delay_ms: 600 });
      const reply = post(engines[0], fake.info.bots[0].token, channel_id, "reply in flight");
      await sleep(150);

      const handover = engines[0].detach();
      await fake.dm(1, "between the two engines");
      engines.push(startEngine(config, { library: next, handover }));
      assert.equal(engines[1].origin, engines[0].origin, "the same port");
      assert.equal((await reply).status, 200, "the reply in flight was answered");

      // The host's connections were cut; they RESUME into the new engine.
      for (const c of clients) await waitFor("the host cut", () => c.closed !== null);
      for (const c of clients) c.resume();
      for (const c of clients) await waitFor("RESUMED", () => c.dispatches("RESUMED")[0]);
      await waitFor("the message sent between", () => contents(clients[1]).includes("between the two engines"));
      for (const [i, c] of clients.entries()) {
        assert.ok(!c.frames.some((f) => f.op === 9), "no invalid session");
        assert.ok(c.dispatches().filter((f) => f.t !== "RESUMED").every((f) => f.s > seqs[i]),
          "nothing the host had is sent again");
      }
      await fake.dm(0, "after the handover");
      await waitFor("a message after", () => contents(clients[0]).includes("after the handover"));
      const res = await post(engines[1], fake.info.bots[0].token, channel_id, "reply after");
      assert.equal(res.status, 200);

      // Heartbeats go on from the new build: the fake cuts a session
      // that misses one, so a few intervals show it.
      await sleep(3 * HEARTBEAT_MS);
      const rec = await fake.record();
      assert.equal(rec.connects.length, 2, "no new connection upstream");
      assert.equal(rec.drops.length, 0, "no session dropped");
      assert.equal(rec.identifies.length, 2, "no IDENTIFY but the first two");
      assert.equal(rec.resumes.length, 0, "no RESUME upstream");
      assert.deepEqual(rec.messages.filter((m) => m.method === "POST").map((m) => m.content),
        ["reply in flight", "reply after"]);

      const status = engines[1].status();
      assert.deepEqual(status.bots.map((b) => b.state), ["ready", "ready"]);
      const logs = engines[1].logs().map((l) => l.msg);
      assert.ok(logs.some((m) => /engine handing over sessions=2 live=2/.test(m)),
        "the old engine's last records reach the new one's log");
      assert.ok(logs.some((m) => /engine took over sessions=2 live=2/.test(m)));
      for (const b of fake.info.bots) assert.ok(!logs.some((m) => m.includes(b.token)));
    });
  });

  test("a request whose body is still arriving when the new build comes is answered", async () => {
    await withEngine(async ({ fake, config, next, engines }) => {
      const { channel_id } = await fake.dm(0, "hello");
      const { port } = new URL(engines[0].origin);
      // Its own process: this one's loop is held while the engine detaches.
      const client = spawn(process.execPath, ["-e", SLOW_CLIENT, port, channel_id,
        fake.info.bots[0].token], { stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      client.stdout.on("data", (chunk) => (out += chunk));
      const exited = new Promise((r) => client.on("exit", r));
      await waitFor("the first chunk sent", () => out.includes("first chunk sent"));

      const handover = engines[0].detach();
      engines.push(startEngine(config, { library: next, handover }));
      await exited;
      assert.match(out, /status 200/);
      assert.match(out, /connection: close/i, "the old engine's last answer on it");
      const rec = await fake.record();
      assert.deepEqual(rec.messages.filter((m) => m.method === "POST").map((m) => m.content),
        ["sent slowly"]);
    });
  });

  test("handovers back and forth while events flow: every event once, in order", async () => {
    await withEngine(async ({ fake, config, next, clients, engines }) => {
      const libraries = [LIBRARY, next];
      const seen = clients.map(() => []);
      const keep = () => clients.forEach((c, i) => {
        seen[i].push(...c.dispatches("MESSAGE_CREATE").map((f) => f.d.content));
        c.frames = [];
      });
      let n = 0;
      let flowing = true;
      // Bursts of frames written together, so that some wait inside TLS
      // or half received when the engine lets go.
      const flow = (async () => {
        while (flowing) {
          const burst = [];
          for (let i = 0; i < 8; i++, n++)
            burst.push({ t: "MESSAGE_CREATE", d: { id: `95${n}`, channel_id: "950000",
              content: `event ${n} ${"x".repeat(n % 7 === 0 ? 9000 : 40)}`, author: { id: "950001" } } });
          await Promise.all(clients.map((_, i) => fake.dispatchMany(i, burst)));
          await sleep(20);
        }
      })();

      for (let round = 1; round <= 6; round++) {
        await sleep(300);
        const handover = engines.at(-1).detach();
        engines.push(startEngine(config, { library: libraries[round % 2], handover }));
        for (const c of clients) await waitFor("the host cut", () => c.closed !== null);
        keep();
        for (const c of clients) c.resume();
        for (const c of clients) await waitFor("RESUMED", () => c.dispatches("RESUMED")[0]);
      }
      flowing = false;
      await flow;
      console.log(`handovers: 6, events per bot: ${n}`);
      const expected = Array.from({ length: n }, (_, k) => k);
      for (const [i, c] of clients.entries()) {
        await waitFor(`every event of bot ${i}`, () =>
          seen[i].length + c.dispatches("MESSAGE_CREATE").length >= n, 10000).catch(() => {});
        keep();
        assert.deepEqual(seen[i].map((t) => Number(t.split(" ")[1])), expected,
          `bot ${i}: every event once, in order`);
      }
      const rec = await fake.record();
      assert.equal(rec.connects.length, 2, "no new connection upstream");
      assert.equal(rec.drops.length, 0);
      assert.equal(rec.resumes.length, 0);
    });
  });

  test("a handover nobody takes is saved: a later engine RESUMEs it, nothing twice", async () => {
    await withEngine(async ({ fake, config, clients, engines }) => {
      for (const n of [1, 2, 3]) await fake.dm(0, `before ${n}`);
      await waitFor("three messages", () => contents(clients[0]).length === 3);
      clients[0].send({ op: 1, d: clients[0].seq }); // the host confirms them
      await sleep(300);
      closeHandover(engines[0].detach());
      const port = Number(new URL(engines[0].origin).port);
      engines.push(startEngine({ ...config, listen_port: port }));
      await waitFor("the host cut", () => clients[0].closed !== null);
      clients[0].resume();
      await waitFor("RESUMED", () => clients[0].dispatches("RESUMED")[0]);
      await sleep(500);
      assert.ok(!clients[0].frames.some((f) => f.op === 9), "no invalid session");
      assert.deepEqual(contents(clients[0]), [], "nothing the host had is sent again");
      await fake.dm(0, "after");
      await waitFor("a message after", () => contents(clients[0]).includes("after"));
      const rec = await fake.record();
      assert.equal(rec.identifies.length, 2, "no IDENTIFY but the first two");
    });
  });

  test("a handover the new build refuses goes back to the build that made it", async () => {
    await withEngine(async ({ fake, config, next, clients, engines }) => {
      const handover = engines[0].detach();
      assert.throws(() => startEngine({ ...config, api_base: "https://127.0.0.1:1/api/v10" },
        { library: next, handover }), /config: api_base differs from the running engine's/);
      engines.push(startEngine(config, { library: LIBRARY, handover }));

      for (const c of clients) await waitFor("the host cut", () => c.closed !== null);
      for (const c of clients) c.resume();
      for (const c of clients) await waitFor("RESUMED", () => c.dispatches("RESUMED")[0]);
      await fake.dm(1, "after taking it back");
      await waitFor("a message", () => contents(clients[1]).includes("after taking it back"));
      const rec = await fake.record();
      assert.equal(rec.drops.length, 0);
      assert.equal(rec.resumes.length + rec.identifies.length, 2, "only the first two IDENTIFYs");
    });
  });
});
