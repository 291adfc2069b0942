// A running engine takes a new configuration without reconnecting: new
// timings apply to what it does next, the upstream connection stays, and
// a change it cannot take, or a bad value, is refused by name while the
// engine runs on as it was.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { startFake } from "../fake-discord/client.mjs";
import { GatewayClient, configFor, sleep, startEngine, waitFor } from "./engine.mjs";

describe("reconfiguring a running engine", () => {
  test("new typing timings apply live; the port and bad values are refused", async () => {
    const fake = await startFake({ bots: 1 });
    const base = configFor(fake);
    const engine = startEngine(base);
    const client = new GatewayClient(engine.origin.replace("http:", "ws:"),
      fake.info.bots[0].token).identify();
    try {
      await waitFor("READY", () => client.dispatches("READY")[0]);
      const { channel_id } = await fake.dm(0, "hi");

      assert.deepEqual(engine.reconfigure({ ...base, typing_interval_ms: 1000 }),
        { rc: 0, error: "" });
      await sleep(100);
      const typing = () => fetch(`${engine.origin}/api/v10/channels/${channel_id}/typing`, {
        method: "POST", headers: { authorization: `Bot ${fake.info.bots[0].token}` },
      });
      assert.equal((await typing()).status, 204);
      // With the old 9 s period this would be one call.
      await waitFor("typing refreshed at the new period",
        async () => (await fake.record()).typing.length >= 3, 5000);

      // The port it listens on, named, is no change.
      const port = Number(new URL(engine.origin).port);
      assert.equal(engine.reconfigure({ ...base, listen_port: port, typing_interval_ms: 1000 }).rc, 0);
      const moved = engine.reconfigure({ ...base, listen_port: 1 });
      assert.equal(moved.rc, 1);
      assert.match(moved.error, /listen_port cannot change/);
      const bad = engine.reconfigure({ ...base, typing_hold_ms: "soon" });
      assert.equal(bad.rc, -1);
      assert.match(bad.error, /typing_hold_ms/);

      // Still serving, on the same upstream connection.
      const res = await fetch(`${engine.origin}/api/v10/users/@me`, {
        headers: { authorization: `Bot ${fake.info.bots[0].token}` },
      });
      assert.equal(res.status, 200);
      const rec = await fake.record();
      assert.equal(rec.connects.length, 1);
      assert.equal(rec.drops.length, 0);
      assert.ok(engine.logs().some((l) => /configuration applied/.test(l.msg)));
    } finally {
      await client.close();
      engine.stop();
      await fake.stop();
    }
  });
});
