// Upstream failures the host must not see, and the ones it must: zombie
// connections, op 7, op 9 both ways, fatal close codes, an engine
// started and stopped many times, and frames that arrive together.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { startFake } from "../fake-discord/client.mjs";
import { GatewayClient, configFor, sleep, startEngine, waitFor }
  from "./engine.mjs";

const HEARTBEAT_MS = 800;

describe("upstream session by the book", () => {
  let fake, engine;
  const clients = [];

  before(async () => {
    fake = await startFake({ bots: 5, heartbeatInterval: HEARTBEAT_MS,
                             heartbeatGrace: 400, identifyInterval: 1000 });
    engine = startEngine(configFor(fake, { identify_interval_ms: 1000 }));
  });

  after(async () => {
    for (const c of clients) if (c.closed === null) await c.close();
    engine?.stop();
    await fake?.stop();
  });

  const ready = async (i) => {
    const c = new GatewayClient(engine.origin.replace("http:", "ws:"),
                                fake.info.bots[i].token).identify();
    clients.push(c);
    await waitFor("READY", () => c.dispatches("READY")[0]);
    return c;
  };
  const mine = (list, i) => list.filter((e) => e.bot === i);
  const dmArrives = async (c, i, text) => {
    await fake.dm(i, text);
    await waitFor(`DM "${text}"`, () =>
      c.dispatches("MESSAGE_CREATE").some((f) => f.d.content === text));
  };

  test("a zombie connection is closed and resumed, unseen by the host", async () => {
    const c = await ready(0);
    await fake.zombie(0, true);
    await waitFor("a drop", async () => mine((await fake.record()).drops, 0).length > 0);
    await fake.zombie(0, false);
    await waitFor("a resume", async () =>
      mine((await fake.record()).resumes, 0).some((r) => r.ok));
    const drop = mine((await fake.record()).drops, 0)[0];
    assert.notEqual(drop.code, 1000);
    assert.notEqual(drop.code, 1001);
    await dmArrives(c, 0, "after zombie");
    assert.equal(c.closed, null);
    assert.equal(c.frames.filter((f) => f.op === 9).length, 0);
    assert.equal(mine((await fake.record()).identifies, 0).length, 1);
    assert.match(engine.logs().map((l) => l.msg).join("\n"), /zombie/);
  });

  test("op 7 reconnects and resumes", async () => {
    const c = await ready(1);
    await fake.op(1, 7);
    await waitFor("a resume", async () =>
      mine((await fake.record()).resumes, 1).some((r) => r.ok));
    await dmArrives(c, 1, "after op 7");
    assert.equal(c.closed, null);
    assert.equal(mine((await fake.record()).identifies, 1).length, 1);
  });

  test("op 9 d:true resumes", async () => {
    const c = await ready(2);
    await fake.op(2, 9, true);
    await waitFor("a resume", async () =>
      mine((await fake.record()).resumes, 2).some((r) => r.ok), 15000);
    await dmArrives(c, 2, "after op 9 true");
    assert.equal(c.frames.filter((f) => f.op === 9).length, 0);
  });

  test("op 9 d:false starts a new session and tells the host", async () => {
    const c = await ready(3);
    await fake.op(3, 9, false);
    await waitFor("op 9 downstream", () => c.frames.find((f) => f.op === 9));
    assert.equal(c.frames.find((f) => f.op === 9).d, false);
    await waitFor("a second IDENTIFY", async () =>
      mine((await fake.record()).identifies, 3).length === 2, 15000);
    // The host identifies again, as Discord clients do after op 9.
    const again = await ready(3);
    assert.notEqual(again.sessionId, c.sessionId);
    await dmArrives(again, 3, "after op 9 false");
    assert.equal(mine((await fake.record()).identifies, 3).length, 2);
  });

  test("4004 is fatal: the code reaches the host and nothing retries", async () => {
    const c = await ready(4);
    await fake.close(4, 4004);
    await waitFor("downstream close", () => c.closed !== null);
    assert.equal(c.closed, 4004);
    const connects = mine((await fake.record()).connects, 4).length;
    await sleep(3 * HEARTBEAT_MS);
    assert.equal(mine((await fake.record()).connects, 4).length, connects);
    const bot = engine.status().bots.find((b) => b.id === fake.info.bots[4].user_id);
    assert.equal(bot.state, "fatal");
    assert.equal(bot.fatal_code, 4004);
    // A host that tries again is turned away with the same code.
    const retry = new GatewayClient(engine.origin.replace("http:", "ws:"),
                                    fake.info.bots[4].token).identify();
    await waitFor("close", () => retry.closed !== null);
    assert.equal(retry.closed, 4004);
    assert.match(engine.logs().map((l) => l.msg).join("\n"), /fatal code .*code=4004/);
  });
});

describe("engine lifecycle", () => {
  test("100 start/stop cycles with a live bot leak nothing", async () => {
    // Each cycle is a new process-like engine that IDENTIFYs afresh.
    const fake = await startFake({ bots: 1, heartbeatInterval: 1000,
                                   identifyInterval: 1 });
    try {
      const cycle = async () => {
        const engine = startEngine(configFor(fake));
        const c = new GatewayClient(engine.origin.replace("http:", "ws:"),
                                    fake.info.bots[0].token).identify();
        await waitFor("READY", () => c.dispatches("READY")[0]);
        engine.stop();
        await waitFor("close", () => c.closed !== null);
      };
      for (let i = 0; i < 10; i++) await cycle();
      const rssBefore = process.memoryUsage().rss;
      for (let i = 0; i < 90; i++) await cycle();
      const growthMiB = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
      assert.ok(growthMiB < 16, `RSS grew ${growthMiB.toFixed(1)} MiB over 90 cycles`);
      // The engine never closes upstream with 1000/1001 when it stops.
      const rec = await fake.record();
      assert.ok(rec.drops.length >= 100);
      assert.ok(rec.drops.every((d) => d.code !== 1000 && d.code !== 1001),
                JSON.stringify(rec.drops.slice(0, 3)));
    } finally {
      await fake.stop();
    }
  });
});

describe("upstream frames that arrive together", () => {
  // Frames Discord writes one after another can reach the engine's socket
  // as several TLS records at once, and the engine reads what the socket
  // holds in one go. Every frame must go on to the host then, not when
  // some later frame wakes the connection; a long heartbeat keeps such
  // later frames (the ACKs) away.
  const SLOW_HEARTBEAT_MS = 30000;
  let fake, engine, client;

  before(async () => {
    fake = await startFake({ bots: 1, heartbeatInterval: SLOW_HEARTBEAT_MS,
                             heartbeatGrace: 5000, identifyInterval: 1000 });
    engine = startEngine(configFor(fake, { identify_interval_ms: 1000 }));
  });

  after(async () => {
    if (client?.closed === null) await client.close();
    engine?.stop();
    await fake?.stop();
  });

  // Whether a burst's records share one read is up to timing; many
  // bursts make sure some do. Held-back frames would still trickle out,
  // one each time some timer wakes the engine (every 500 ms at least), so
  // a burst is longer than what that would pass on within the wait.
  const BURSTS = 30;
  const FRAMES = 8;

  test("frames written together reach the host together", async () => {
    client = new GatewayClient(engine.origin.replace("http:", "ws:"),
                               fake.info.bots[0].token).identify();
    await waitFor("READY", () => client.dispatches("READY")[0]);
    const got = () => client.dispatches("MESSAGE_CREATE").map((f) => f.d.content);
    for (let burst = 0; burst < BURSTS; burst++) {
      const texts = Array.from({ length: FRAMES }, (_, i) => `burst ${burst} frame ${i}`);
      await fake.dispatchMany(0, texts.map((content, i) => ({ t: "MESSAGE_CREATE",
        d: { id: `93${burst}${i}`, channel_id: "930000", content, author: { id: "930001" } } })));
      // Well inside the heartbeat, so no ACK wakes the connection.
      await waitFor(`burst ${burst}`, () => texts.every((t) => got().includes(t)), 2000);
    }
    assert.equal(got().length, FRAMES * BURSTS);
  });
});
