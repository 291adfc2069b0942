// The reconnect coordinator: a herd of dropped sessions comes back spread
// out and by RESUME, IDENTIFYs keep Discord's per-bucket spacing, the
// daily budget's reserve is never spent, and a fatal bot stays alone.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { startFake } from "../fake-discord/client.mjs";
import { GatewayClient, configFor, sleep, startEngine, waitFor }
  from "./engine.mjs";

const wsOf = (engine) => engine.origin.replace("http:", "ws:");

describe("reconnect coordinator", () => {
  test("15 bots dropped at once come back spread out, by RESUME", async () => {
    const fake = await startFake({ bots: 15, heartbeatInterval: 5000 });
    const engine = startEngine(configFor(fake));
    const clients = fake.info.bots.map((b) =>
      new GatewayClient(wsOf(engine), b.token).identify());
    try {
      await waitFor("15 READY", () => clients.every((c) => c.dispatches("READY")[0]),
                    30000);
      const droppedAt = Date.now();
      await fake.dropAll();
      await waitFor("15 resumes", async () =>
        (await fake.record()).resumes.filter((r) => r.ok).length === 15, 30000);

      const rec = await fake.record();
      const back = rec.connects.filter((c) => c.t > droppedAt).map((c) => c.t - droppedAt);
      const spread = Math.max(...back) - Math.min(...back);
      console.log(`reconnects after the drop: first ${Math.min(...back)} ms, ` +
                  `last ${Math.max(...back)} ms, spread ${spread} ms`);
      assert.equal(back.length, 15);
      // Until a herd is seen, a drop reconnects at once: at most the
      // first two of the fifteen can go out within the first second.
      assert.ok(back.filter((t) => t < 1000).length <= 2, `early: ${back.sort((a, b) => a - b)}`);
      assert.ok(spread >= 4000, `reconnects spread over only ${spread} ms`);
      assert.ok(Math.max(...back) <= 16000);
      assert.equal(rec.identifies.length, 15, "no IDENTIFY after the drop");
      assert.equal(rec.identify_rate_limited.length, 0);
      for (const c of clients) {
        assert.equal(c.closed, null);
        assert.equal(c.frames.filter((f) => f.op === 9).length, 0);
      }

      // One bot closed with 4004: it stops, the other 14 carry on.
      const dead = fake.info.bots[3].user_id;
      await fake.close(3, 4004);
      await waitFor("4004 downstream", () => clients[3].closed === 4004);
      await sleep(3000);
      const bots = engine.status().bots;
      assert.equal(bots.find((b) => b.id === dead).state, "fatal");
      assert.equal(bots.filter((b) => b.state === "ready").length, 14);
      const after = await fake.record();
      assert.equal(after.drops.filter((d) => d.t > droppedAt + 20000 &&
                                             d.user_id !== dead).length, 0);
    } finally {
      for (const c of clients) if (c.closed === null) await c.close();
      engine.stop();
      await fake.stop();
    }
  });

  test("4 shards with max_concurrency 2 identify two per 5 s, in bucket order", async () => {
    const fake = await startFake({ bots: 1, shards: 4, maxConcurrency: 2,
                                   heartbeatInterval: 5000 });
    const engine = startEngine(configFor(fake));
    const clients = [0, 1, 2, 3].map((i) => {
      const c = new GatewayClient(wsOf(engine), fake.info.bots[0].token);
      c.shard = [i, 4];
      return c.identify();
    });
    try {
      await waitFor("4 READY", () => clients.every((c) => c.dispatches("READY")[0]),
                    30000);
      const ids = (await fake.record()).identifies.sort((a, b) => a.t - b.t);
      assert.equal(ids.length, 4);
      const t0 = ids[0].t;
      console.log("IDENTIFY times:", ids.map((i) => `shard ${i.shard[0]} +${i.t - t0} ms`));
      assert.deepEqual(ids.slice(0, 2).map((i) => i.shard[0]).sort(), [0, 1]);
      assert.deepEqual(ids.slice(2).map((i) => i.shard[0]).sort(), [2, 3]);
      for (const bucket of [0, 1]) {
        const [a, b] = ids.filter((i) => i.shard[0] % 2 === bucket);
        assert.ok(b.t - a.t >= 4900, `bucket ${bucket}: ${b.t - a.t} ms apart`);
      }
      assert.equal((await fake.record()).identify_rate_limited.length, 0);
    } finally {
      for (const c of clients) if (c.closed === null) await c.close();
      engine.stop();
      await fake.stop();
    }
  });

  test("with the daily budget at the reserve, no IDENTIFY is sent", async () => {
    const fake = await startFake({ bots: 1, sessionStartRemaining: 5 });
    const engine = startEngine(configFor(fake, { identify_reserve: 5 }));
    const client = new GatewayClient(wsOf(engine), fake.info.bots[0].token).identify();
    try {
      await waitFor("blocked", () => engine.status().bots[0]?.state === "blocked");
      await sleep(1000);
      assert.equal((await fake.record()).identifies.length, 0);
      const bot = engine.status().bots[0];
      assert.equal(bot.identify_budget.remaining, 5);
      assert.ok(bot.identify_budget.reset_in_ms > 0);
      assert.match(engine.logs().map((l) => l.msg).join("\n"),
                   /identify budget exhausted .*remaining=5 reserve=5 reset_in_s=\d+/);
    } finally {
      await client.close();
      engine.stop();
      await fake.stop();
    }
  });
});
