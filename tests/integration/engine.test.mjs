// The engine against the fake Discord: READY and dispatches through the
// local endpoint, REST and CDN forwarding, and a host that stalls or goes
// away without the upstream session noticing.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import tls from "node:tls";

import { startFake } from "../fake-discord/client.mjs";
import { certificateFor, ensureCertificates } from "../fake-discord/tls.mjs";
import { GatewayClient, busyWait, configFor, sleep, startEngine, waitFor }
  from "./engine.mjs";

const HEARTBEAT_MS = 1000;

describe("engine with a fake Discord", () => {
  let fake, engine;

  before(async () => {
    fake = await startFake({ bots: 3, heartbeatInterval: HEARTBEAT_MS,
                             heartbeatGrace: 300, identifyInterval: 1000 });
    engine = startEngine(configFor(fake, { identify_interval_ms: 1000 }));
  });

  after(async () => {
    engine?.stop();
    await fake?.stop();
  });

  const token = (i) => fake.info.bots[i].token;
  const wsOrigin = () => engine.origin.replace("http:", "ws:");

  test("gateway lookup answers with the local origin", async () => {
    const res = await fetch(`${engine.origin}/api/v10/gateway/bot`, {
      headers: { authorization: `Bot ${token(0)}` },
    });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.url, wsOrigin());
    assert.equal(body.shards, 1);
    assert.equal(typeof body.session_start_limit.remaining, "number");
    assert.ok(res.headers.get("x-ratelimit-bucket"));
  });

  test("IDENTIFY gets READY that resumes locally, then dispatches", async () => {
    const client = new GatewayClient(wsOrigin(), token(0)).identify();
    const ready = await waitFor("READY", () => client.dispatches("READY")[0]);
    assert.equal(ready.d.resume_gateway_url, wsOrigin());
    assert.equal(ready.d.user.id, fake.info.bots[0].user_id);
    assert.equal(ready.s, 1);

    const { message_id } = await fake.dm(0, "hello there");
    const msg = await waitFor("MESSAGE_CREATE", () =>
      client.dispatches("MESSAGE_CREATE").find((f) => f.d.id === message_id));
    assert.equal(msg.d.content, "hello there");
    assert.ok(msg.s > ready.s);
    await client.close();
  });

  test("the status snapshot is served on the local endpoint, without tokens", async () => {
    const client = new GatewayClient(wsOrigin(), token(0)).identify();
    await waitFor("READY", () => client.dispatches("READY")[0]);
    let text;
    const bot = await waitFor("the bot in the status", async () => {
      const res = await fetch(`${engine.origin}/_heartline/status`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type"), /application\/json/);
      text = await res.text();
      const status = JSON.parse(text);
      assert.equal(status.origin, engine.origin);
      return status.bots.find((b) => b.id === fake.info.bots[0].user_id &&
                                     b.state === "ready");
    });
    assert.equal(typeof bot.heartbeat_rtt_ms, "number");
    for (const b of fake.info.bots) assert.ok(!text.includes(b.token));
    await client.close();
  });

  test("REST is forwarded with Discord's status, headers and body", async () => {
    const client = new GatewayClient(wsOrigin(), token(1)).identify();
    await waitFor("READY", () => client.dispatches("READY")[0]);
    const { channel_id } = await fake.dm(1, "ping");
    const res = await fetch(`${engine.origin}/api/v10/channels/${channel_id}/messages`, {
      method: "POST",
      headers: { authorization: `Bot ${token(1)}`, "content-type": "application/json" },
      body: JSON.stringify({ content: "pong", nonce: "n-1", enforce_nonce: true }),
    });
    assert.equal(res.status, 200);
    const sent = await res.json();
    assert.equal(sent.content, "pong");
    assert.ok(res.headers.get("x-ratelimit-remaining"));
    const rec = await fake.record();
    assert.ok(rec.messages.some((m) => m.id === sent.id && m.nonce === "n-1"));

    const bad = await fetch(`${engine.origin}/api/v10/channels/${channel_id}/messages`, {
      method: "POST",
      headers: { authorization: "Bot not-a-token", "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(bad.status, 401);
    assert.equal((await bad.json()).code, 0);
    await client.close();
  });

  test("an attachment's CDN link is served by the local endpoint", async () => {
    const client = new GatewayClient(wsOrigin(), token(2)).identify();
    await waitFor("READY", () => client.dispatches("READY")[0]);
    const png = Buffer.from("89504e470d0a1a0a0000000d49484452", "hex");
    const { message_id } = await fake.dm(2, "look", [
      { filename: "cat.png", content_type: "image/png", data_base64: png.toString("base64") },
    ]);
    const msg = await waitFor("MESSAGE_CREATE", () =>
      client.dispatches("MESSAGE_CREATE").find((f) => f.d.id === message_id));
    const url = msg.d.attachments[0].url;
    assert.ok(url.startsWith(`${engine.origin}/api/v10/_heartline/cdn/attachments/`), url);
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), png);
    const proxied = await fetch(msg.d.attachments[0].proxy_url);
    assert.equal(proxied.status, 200);
    await client.close();
  });

  test("a dispatch many times the receive buffer arrives whole", async () => {
    const client = new GatewayClient(wsOrigin(), token(1)).identify();
    await waitFor("READY", () => client.dispatches("READY")[0]);
    const content = `${"0123456789".repeat(30000)}end`; // 300 kB
    await fake.dispatch(1, "MESSAGE_CREATE",
      { id: "900001", channel_id: "900002", content, author: { id: "900003" } });
    const msg = await waitFor("the big MESSAGE_CREATE", () =>
      client.dispatches("MESSAGE_CREATE").find((f) => f.d.id === "900001"));
    assert.equal(msg.d.content, content);
    await client.close();
  });

  test("a host blocked for three heartbeats loses nothing upstream", async () => {
    const client = new GatewayClient(wsOrigin(), token(0)).identify();
    await waitFor("READY", () => client.dispatches("READY")[0]);
    await fake.resetRecord();

    // DMs arrive while this thread is blocked: spawnSync blocks it for as
    // long as the child takes to send them.
    const sender = `
      const origin = ${JSON.stringify(fake.info.http_origin)};
      for (let i = 0; i < 6; i++) {
        await fetch(origin + "/_fake/bots/0/dm", { method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ content: "during stall " + i }) });
        await new Promise((r) => setTimeout(r, ${HEARTBEAT_MS / 2}));
      }`;
    const started = Date.now();
    spawnSync(process.execPath, ["--input-type=module", "-e", sender]);
    busyWait(3 * HEARTBEAT_MS - (Date.now() - started));
    assert.ok(Date.now() - started >= 3 * HEARTBEAT_MS);

    const texts = () => client.dispatches("MESSAGE_CREATE").map((f) => f.d.content)
      .filter((c) => c.startsWith("during stall"));
    await waitFor("six DMs", () => texts().length === 6);
    assert.deepEqual(texts(), [0, 1, 2, 3, 4, 5].map((i) => `during stall ${i}`));
    const seqs = client.frames.filter((f) => f.s != null).map((f) => f.s);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));

    const rec = await fake.record();
    const bot0 = fake.info.bots[0].user_id;
    assert.equal(rec.drops.filter((d) => d.user_id === bot0).length, 0);
    assert.equal(client.closed, null);
    await client.close();
  });

  test("a host that goes away RESUMEs and gets every dispatch in order", async () => {
    const client = new GatewayClient(wsOrigin(), token(1)).identify();
    await waitFor("READY", () => client.dispatches("READY")[0]);
    await client.close();
    for (let i = 0; i < 5; i++) await fake.dm(1, `while away ${i}`);
    await sleep(300);

    client.resume();
    await waitFor("RESUMED", () => client.dispatches("RESUMED")[0]);
    const texts = client.dispatches("MESSAGE_CREATE").map((f) => f.d.content);
    assert.deepEqual(texts, [0, 1, 2, 3, 4].map((i) => `while away ${i}`));
    await client.close();
  });

  test("frames replayed at once arrive whole and in order, whatever their size", async () => {
    // Replayed frames are queued together and sent joined where they fit;
    // the largest do not fit the join buffer and go out on their own.
    const sizes = [1, 125, 126, 4000, 65000, 65536, 70000, 2];
    const client = new GatewayClient(wsOrigin(), token(2)).identify();
    await waitFor("READY", () => client.dispatches("READY")[0]);
    await client.close();
    for (const [i, n] of sizes.entries()) {
      await fake.dispatch(2, "MESSAGE_CREATE", { id: `91000${i}`, channel_id: "910100",
        content: String(i % 10).repeat(n), author: { id: "910200" } });
    }
    await sleep(300);

    client.resume();
    await waitFor("RESUMED", () => client.dispatches("RESUMED")[0]);
    await waitFor("every frame", () => client.dispatches("MESSAGE_CREATE").length === sizes.length);
    const got = client.dispatches("MESSAGE_CREATE").map((f) => f.d.content);
    assert.deepEqual(got.map((c) => c.length), sizes);
    assert.deepEqual(got, sizes.map((n, i) => String(i % 10).repeat(n)));
    await client.close();
  });

  test("a RESUME with a wrong token or unknown session is refused", async () => {
    const client = new GatewayClient(wsOrigin(), token(2)).identify();
    await waitFor("READY", () => client.dispatches("READY")[0]);
    await client.close();
    const wrong = new GatewayClient(wsOrigin(), token(1));
    wrong.sessionId = client.sessionId;
    wrong.seq = client.seq;
    wrong.resume();
    await waitFor("op 9", () => wrong.frames.find((f) => f.op === 9));
    assert.equal(wrong.frames.find((f) => f.op === 9).d, false);
    await wrong.close();
    const logs = engine.logs().map((l) => l.msg).join("\n");
    assert.match(logs, /resume refused .*reason=token_mismatch/);
    assert.ok(!logs.includes(token(1)) && !logs.includes(token(2)));
  });
});

describe("engine edges", () => {
  let fake;

  before(async () => {
    fake = await startFake({ bots: 1, heartbeatInterval: 1000 });
  });

  after(async () => {
    await fake?.stop();
  });

  test("TLS is verified: without the test CA, Discord is unreachable", async () => {
    const { ca_file: _unused, ...config } = configFor(fake);
    const engine = startEngine(config);
    try {
      const res = await fetch(`${engine.origin}/api/v10/users/@me`, {
        headers: { authorization: `Bot ${fake.info.bots[0].token}` },
      });
      assert.equal(res.status, 502);
      assert.match((await res.json()).message, /unreachable/);
      const logs = engine.logs().map((l) => l.msg).join("\n");
      assert.match(logs, /rest GET \/api\/v10\/users\/@me failed .*certificate/i);
    } finally {
      engine.stop();
    }
  });

  // An engine whose gateway is a TLS server with the { key, cert } that
  // makeCert(dir) returns: the handshake fails on the engine's side, the
  // log says why in words, and the host gets no READY.
  async function refusedGateway(makeCert, reason) {
    const dir = mkdtempSync(join(tmpdir(), "hl-refused-"));
    const { key, cert } = makeCert(dir);
    let handshakes = 0;
    const failures = [];
    const impostor = tls.createServer({ key, cert }, (socket) => {
      handshakes++;
      socket.destroy();
    });
    impostor.on("tlsClientError", (err) => failures.push(err.message));
    await new Promise((resolve) => impostor.listen(0, "127.0.0.1", resolve));
    const gateway = `wss://127.0.0.1:${impostor.address().port}`;
    const engine = startEngine({ ...configFor(fake), gateway_url: gateway });
    const client = new GatewayClient(engine.origin.replace("http:", "ws:"),
      fake.info.bots[0].token).identify();
    try {
      const logs = () => engine.logs().map((l) => l.msg).join("\n");
      await waitFor("the refused handshake in the log", () =>
        /upstream connection failed/.test(logs()));
      assert.match(logs(), reason);
      await waitFor("the server to see the handshake fail", () => failures.length >= 1);
      assert.equal(handshakes, 0);
      assert.equal(client.dispatches("READY").length, 0);
    } finally {
      await client.close();
      engine.stop();
      impostor.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }

  test("the gateway's TLS is verified: another CA's certificate is refused", () =>
    refusedGateway(ensureCertificates, /unable to get local issuer/));

  test("the gateway's TLS is verified: a certificate for another name is refused", () =>
    refusedGateway((dir) => certificateFor(dirname(fake.info.ca_file), dir,
      "DNS:elsewhere.example"), /mismatch/));

  test("tls_groups limits the key exchange; a group TLS lacks is refused", async () => {
    const engine = startEngine({ ...configFor(fake), tls_groups: "X25519" });
    try {
      const res = await fetch(`${engine.origin}/api/v10/users/@me`, {
        headers: { authorization: `Bot ${fake.info.bots[0].token}` },
      });
      assert.equal(res.status, 200);
    } finally {
      engine.stop();
    }
    assert.throws(() => startEngine({ ...configFor(fake), tls_groups: "X25519:nonesuch" }),
      /^Error: config: tls_groups: "X25519:nonesuch" names a group/);
  });

  test("a multipart upload is forwarded byte for byte", async () => {
    const engine = startEngine(configFor(fake));
    try {
      const { channel_id } = await fake.dm(0, "send me a file");
      const form = new FormData();
      form.append("payload_json", JSON.stringify({ content: "here it is" }));
      const bytes = Buffer.from([0, 1, 2, 250, 251, 252, 13, 10, 0]);
      form.append("files[0]", new Blob([bytes], { type: "application/octet-stream" }),
                  "data.bin");
      const res = await fetch(`${engine.origin}/api/v10/channels/${channel_id}/messages`, {
        method: "POST",
        headers: { authorization: `Bot ${fake.info.bots[0].token}` },
        body: form,
      });
      assert.equal(res.status, 200);
      const sent = await res.json();
      assert.equal(sent.content, "here it is");
      assert.equal(sent.attachments[0].filename, "data.bin");
      assert.equal(sent.attachments[0].size, bytes.length);
      const file = await fetch(sent.attachments[0].url.replace(
        "https://cdn.discordapp.com", fake.info.http_origin));
      assert.deepEqual(Buffer.from(await file.arrayBuffer()), bytes);
    } finally {
      engine.stop();
    }
  });

  test("a streamed (chunked) body arrives whole, on a kept-alive connection", async () => {
    const engine = startEngine(configFor(fake));
    try {
      const { channel_id } = await fake.dm(0, "stream me");
      const url = `${engine.origin}/api/v10/channels/${channel_id}/messages`;
      const headers = { authorization: `Bot ${fake.info.bots[0].token}`,
                        "content-type": "application/json" };
      for (let i = 0; i < 3; i++) {
        const text = JSON.stringify({ content: `part ${i} `.repeat(100) });
        const body = new ReadableStream({
          start(c) {
            const bytes = new TextEncoder().encode(text);
            for (let at = 0; at < bytes.length; at += 97) c.enqueue(bytes.slice(at, at + 97));
            c.close();
          },
        });
        const res = await fetch(url, { method: "POST", headers, body, duplex: "half" });
        assert.equal(res.status, 200);
        assert.equal((await res.json()).content, `part ${i} `.repeat(100));
      }
    } finally {
      engine.stop();
    }
  });

  test("unknown paths and methods get clear errors", async () => {
    const engine = startEngine(configFor(fake));
    try {
      const res = await fetch(`${engine.origin}/not-discord`);
      assert.equal(res.status, 404);
      assert.equal((await res.json()).message, "404: Not Found");
    } finally {
      engine.stop();
    }
  });
});
