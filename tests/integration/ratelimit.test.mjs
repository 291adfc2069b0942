// REST inside Discord's limits: requests wait for a learned bucket instead
// of earning 429s, a global 429 pauses only that bot, safe requests are
// retried after retry_after, and invalid requests are counted engine-wide.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { startFake } from "../fake-discord/client.mjs";
import { configFor, startEngine } from "./engine.mjs";

describe("REST rate limits", () => {
  let fake, engine;

  before(async () => {
    fake = await startFake({ bots: 3, restLimit: 5, restWindow: 2000 });
    engine = startEngine(configFor(fake));
  });

  after(async () => {
    engine?.stop();
    await fake?.stop();
  });

  const get = (i, path) => fetch(`${engine.origin}/api/v10${path}`, {
    headers: { authorization: `Bot ${fake.info.bots[i].token}` },
  });

  test("a learned bucket is never exceeded: requests wait instead", async () => {
    const { channel_id } = await fake.dm(0, "hi");
    await fake.resetRecord();
    const started = Date.now();
    const answers = await Promise.all(
      Array.from({ length: 16 }, () => get(0, `/channels/${channel_id}`)));
    const took = Date.now() - started;
    assert.deepEqual(answers.map((r) => r.status), Array(16).fill(200));
    const rec = await fake.record();
    assert.equal(rec.rate_limited.length, 0, JSON.stringify(rec.rate_limited));
    // 16 requests at 5 per 2 s need at least three resets.
    assert.ok(took >= 5000, `took ${took} ms`);
    console.log(`16 requests, 5 per 2 s bucket: ${took} ms, 0 429s`);
  });

  test("a global 429 pauses that bot, retries safe requests, spares the others", async () => {
    await fake.rateLimit({ route: "GET /users/@me", count: 1, retry_after: 2,
                           global: true, bot: 1 });
    const started = Date.now();
    const [res, other] = await Promise.all([
      get(1, "/users/@me"),
      (async () => {
        await new Promise((r) => setTimeout(r, 200));
        const t = Date.now();
        const r = await get(2, "/users/@me");
        return { status: r.status, ms: Date.now() - t };
      })(),
    ]);
    assert.equal(res.status, 200, "the GET was retried after retry_after");
    assert.ok(Date.now() - started >= 1900);
    assert.equal(other.status, 200);
    assert.ok(other.ms < 1000, `bot 2 waited ${other.ms} ms`);
    assert.ok(engine.status().rest.invalid_10min >= 1);
    assert.match(engine.logs().map((l) => l.msg).join("\n"), /rest rate limited .*global/);
  });

  test("a message without a nonce is not retried; with enforce_nonce it is, once", async () => {
    const { channel_id } = await fake.dm(2, "hello");
    const post = (body) => fetch(`${engine.origin}/api/v10/channels/${channel_id}/messages`, {
      method: "POST",
      headers: { authorization: `Bot ${fake.info.bots[2].token}`,
                 "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    await fake.rateLimit({ route: "POST /channels/:id/messages", count: 1,
                           retry_after: 1, bot: 2 });
    const plain = await post({ content: "no nonce" });
    assert.equal(plain.status, 429);
    assert.equal(typeof (await plain.json()).retry_after, "number");

    await new Promise((r) => setTimeout(r, 1100));
    await fake.rateLimit({ route: "POST /channels/:id/messages", count: 1,
                           retry_after: 1, bot: 2 });
    const safe = await post({ content: "with nonce", nonce: "hl-test-1", enforce_nonce: true });
    assert.equal(safe.status, 200);
    const rec = await fake.record();
    assert.equal(rec.messages.filter((m) => m.content === "with nonce").length, 1);
    assert.equal(rec.messages.filter((m) => m.content === "no nonce").length, 0);
  });

  test("invalid requests are counted across bots", async () => {
    const before = engine.status().rest.invalid_10min;
    for (const token of ["bad-1", "bad-2", "bad-3"]) {
      const res = await fetch(`${engine.origin}/api/v10/users/@me`, {
        headers: { authorization: `Bot ${token}` },
      });
      assert.equal(res.status, 401);
    }
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(engine.status().rest.invalid_10min, before + 3);
  });
});
