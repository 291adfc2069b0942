// Typing keepalive: the engine answers the host's typing calls itself and
// keeps the indicator alive upstream on its own timer, through host stalls,
// until the reply, the hold period or a 429 says otherwise.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { startFake } from "../fake-discord/client.mjs";
import { GatewayClient, busyWait, configFor, sleep, startEngine, waitFor }
  from "./engine.mjs";

describe("typing keepalive", () => {
  let fake;

  before(async () => {
    fake = await startFake({ bots: 4, heartbeatInterval: 5000 });
  });

  after(async () => {
    await fake?.stop();
  });

  // An engine, a READY bot i, and a DM channel with a human.
  const setup = async (i, extra) => {
    const engine = startEngine(configFor(fake, extra));
    const client = new GatewayClient(engine.origin.replace("http:", "ws:"),
                                     fake.info.bots[i].token).identify();
    await waitFor("READY", () => client.dispatches("READY")[0]);
    const { channel_id } = await fake.dm(i, "think about it");
    const rest = (path, init = {}) => fetch(`${engine.origin}/api/v10${path}`, {
      ...init,
      headers: { authorization: `Bot ${fake.info.bots[i].token}`,
                 "content-type": "application/json" },
    });
    const typingTimes = async () => (await fake.record()).typing
      .filter((t) => t.bot === i && t.channel === channel_id).map((t) => t.t);
    const done = async () => {
      await client.close();
      engine.stop();
    };
    return { engine, channel: channel_id, rest, typingTimes, done };
  };

  test("the indicator survives a 60 s host stall and stops at the reply", async () => {
    const s = await setup(0);
    const res = await s.rest(`/channels/${s.channel}/typing`, { method: "POST" });
    assert.equal(res.status, 204);
    busyWait(60000);
    const replyAt = Date.now();
    const reply = await s.rest(`/channels/${s.channel}/messages`, {
      method: "POST", body: JSON.stringify({ content: "done thinking" }),
    });
    assert.equal(reply.status, 200);
    await sleep(10000);

    const times = await s.typingTimes();
    const during = times.filter((t) => t <= replyAt);
    const gaps = during.slice(1).map((t, k) => t - during[k]);
    console.log(`typing through the stall: ${during.length} calls, gaps ` +
                `${Math.min(...gaps)}-${Math.max(...gaps)} ms`);
    assert.ok(during.length >= 7, `only ${during.length} typing calls in 60 s`);
    for (const gap of gaps) assert.ok(gap >= 8000 && gap <= 10000, `gap ${gap} ms`);
    assert.equal(times.filter((t) => t > replyAt).length, 0);
    await s.done();
  });

  test("a host that stops asking stops typing after the hold period", async () => {
    const s = await setup(1, { typing_interval_ms: 1000, typing_hold_ms: 3000 });
    await s.rest(`/channels/${s.channel}/typing`, { method: "POST" });
    await sleep(7000);
    const times = await s.typingTimes();
    const span = times[times.length - 1] - times[0];
    assert.ok(times.length >= 3 && times.length <= 5, `${times.length} calls`);
    assert.ok(span <= 4000, `typed for ${span} ms after a 3 s hold`);
    await s.done();
  });

  test("100 host calls in 10 s cost at most 2 upstream", async () => {
    const s = await setup(2);
    for (let k = 0; k < 100; k++) {
      const res = await s.rest(`/channels/${s.channel}/typing`, { method: "POST" });
      assert.equal(res.status, 204);
      await sleep(100);
    }
    const times = await s.typingTimes();
    assert.ok(times.length >= 1 && times.length <= 2, `${times.length} upstream calls`);
    await s.done();
  });

  test("a 429 on typing is honoured", async () => {
    const s = await setup(3, { typing_interval_ms: 1000 });
    await fake.rateLimit({ route: "POST /channels/:id/typing", count: 1,
                           retry_after: 4, bot: 3 });
    await s.rest(`/channels/${s.channel}/typing`, { method: "POST" });
    const askedAt = Date.now();
    for (let k = 0; k < 8; k++) {
      await sleep(1000);
      await s.rest(`/channels/${s.channel}/typing`, { method: "POST" });
    }
    const rec = await fake.record();
    const limited = rec.rate_limited.filter((r) => r.bot === 3);
    assert.equal(limited.length, 1, JSON.stringify(rec.rate_limited));
    const times = await s.typingTimes();
    assert.ok(times.length >= 2, `${times.length} successful typing calls`);
    // The first call earned the 429; the next waits out retry_after.
    assert.ok(times.every((t) => t - askedAt >= 3900),
              `typing within retry_after: ${times.map((t) => t - askedAt)}`);
    assert.match(s.engine.logs().map((l) => l.msg).join("\n"), /typing rate limited/);
    await s.done();
  });
});
