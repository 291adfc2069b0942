// Self-test of fake-discord, driven from outside with a plain `ws` client
// and fetch/https: the gateway handshake and heartbeat rules, IDENTIFY
// limits, RESUME replay, nonce de-duplication, 429 injection, multipart
// uploads and CDN fetches over TLS with the test CA.
//
//   . scripts/env.sh; $NODE24 --test tests/fake-discord/

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import https from "node:https";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import { startFake } from "./client.mjs";

const INTERVAL = 400;
const GRACE = 300;
const DIRECT_MESSAGES = 1 << 12;
const PIXEL_PNG = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlE" +
  "QVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==", "base64");

let fake;
let ca;

before(async () => {
  fake = await startFake({
    bots: 4, heartbeatInterval: INTERVAL, heartbeatGrace: GRACE,
    identifyInterval: 2000, resumeWindow: 5000,
  });
  ca = readFileSync(fake.info.ca_file);
});

after(() => fake.stop());

// A gateway client that queues what it receives and can heartbeat itself.
class Client {
  constructor(url, options) {
    this.ws = new WebSocket(url, options);
    this.inbox = [];
    this.waiters = [];
    this.closed = new Promise((resolve) => {
      this.ws.on("close", (code) => {
        clearInterval(this.beat);
        resolve(code);
      });
    });
    this.ws.on("error", () => {});
    this.ws.on("message", (data) => {
      this.inbox.push(JSON.parse(data));
      this.waiters.forEach((wake) => wake());
    });
  }

  static async open(url = `${fake.info.http_origin.replace("http", "ws")}/?v=10&encoding=json`,
    options = {}) {
    const client = new Client(url, options);
    const hello = await client.next((p) => p.op === 10);
    client.interval = hello.d.heartbeat_interval;
    return client;
  }

  // Takes the first received payload matching `match`, waiting for it.
  async next(match, timeoutMs = 3000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const at = this.inbox.findIndex(match);
      if (at >= 0) return this.inbox.splice(at, 1)[0];
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("no matching gateway payload");
      await new Promise((wake) => {
        const timer = setTimeout(wake, left);
        this.waiters.push(() => { clearTimeout(timer); wake(); });
      });
    }
  }

  send(payload) {
    this.ws.send(JSON.stringify(payload));
  }

  heartbeatEvery(ms) {
    this.beat = setInterval(() => this.send({ op: 1, d: null }), ms);
  }

  async identify(token) {
    this.heartbeatEvery(INTERVAL / 2);
    this.send({ op: 2, d: { token, intents: DIRECT_MESSAGES,
      properties: { os: "linux", browser: "test", device: "test" } } });
    return this.next((p) => p.t === "READY" || p.op === 9);
  }

  close(code) {
    this.ws.close(code);
    return this.closed;
  }
}

function api(path, { token, method = "GET", body, headers = {} } = {}) {
  const json = body && !(body instanceof FormData);
  return fetch(`${fake.info.http_origin}/api/v10${path}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bot ${token}` } : {}),
      ...(json ? { "content-type": "application/json" } : {}),
      ...headers,
    },
    body: json ? JSON.stringify(body) : body,
  });
}

function httpsGet(url) {
  return new Promise((resolve, reject) => {
    https.get(url, { ca }, (res) => {
      const chunks = [];
      res.on("data", (chunk) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
    }).on("error", reject);
  });
}

// Attachment urls name Discord's CDN; the same path is on the fake.
function onFake(cdnUrl) {
  const url = new URL(cdnUrl);
  return `${fake.info.https_origin}${url.pathname}${url.search}`;
}

const token = (i) => fake.info.bots[i].token;

// Clears the record once the connections of earlier tests are gone: the
// fake notes a client's close a moment after the client sees it.
async function freshRecord() {
  for (let waited = 0; (await fake.state()).connections > 0; waited += 20) {
    if (waited > 3000) throw new Error("connections of an earlier test are still open");
    await sleep(20);
  }
  await fake.resetRecord();
}

// The record once `ready` holds for it; the fake notes a connection it cut
// a moment after the client sees the cut.
async function recordWhen(ready) {
  for (let waited = 0; ; waited += 20) {
    const record = await fake.record();
    if (ready(record) || waited > 3000) return record;
    await sleep(20);
  }
}

test("gateway/bot names the gateway of the port it was asked on", async () => {
  const plain = await (await api("/gateway/bot", { token: token(0) })).json();
  assert.equal(plain.url, `ws://127.0.0.1:${fake.info.http_port}`);
  assert.equal(plain.session_start_limit.max_concurrency, 1);

  const secure = await httpsGet(`${fake.info.https_origin}/api/v10/gateway`);
  assert.equal(JSON.parse(secure.body).url, `wss://localhost:${fake.info.https_port}`);
});

test("HELLO carries the interval and a heartbeat is ACKed", async () => {
  const client = await Client.open();
  assert.equal(client.interval, INTERVAL);
  client.send({ op: 1, d: null });
  assert.equal((await client.next((p) => p.op === 11)).op, 11);
  await client.close(4000);
});

test("a connection that stops heartbeating is cut without a close frame", async () => {
  await freshRecord();
  const client = await Client.open();
  const started = Date.now();
  assert.equal(await client.closed, 1006);
  assert.ok(Date.now() - started >= INTERVAL + GRACE - 50);

  const { drops } = await recordWhen((r) => r.drops.length > 0);
  assert.equal(drops.length, 1);
  assert.equal(drops[0].reason, "heartbeat_timeout");
});

test("IDENTIFY gets READY; another inside the interval gets op 9 false", async () => {
  await freshRecord();
  const first = await Client.open();
  const ready = await first.identify(token(1));
  assert.equal(ready.s, 1);
  assert.equal(ready.d.user.id, fake.info.bots[1].user_id);
  assert.equal(ready.d.application.id, fake.info.bots[1].application_id);
  assert.equal(ready.d.resume_gateway_url, `ws://127.0.0.1:${fake.info.http_port}`);

  const second = await Client.open();
  const refused = await second.identify(token(1));
  assert.deepEqual([refused.op, refused.d], [9, false]);

  const record = await fake.record();
  assert.equal(record.identifies.length, 1);
  assert.equal(record.identify_rate_limited.length, 1);
  await Promise.all([first.close(1000), second.close(1000)]);
});

test("an unknown token on IDENTIFY is closed with 4004", async () => {
  const client = await Client.open();
  client.send({ op: 2, d: { token: "bogus", intents: 0, properties: {} } });
  assert.equal(await client.closed, 4004);
});

test("RESUME replays what was missed, in order, then RESUMED", async () => {
  await freshRecord();
  const first = await Client.open();
  const ready = await first.identify(token(2));
  await first.close(4000);

  await fake.dm(2, "one");
  await fake.dm(2, "two");

  const again = await Client.open();
  again.heartbeatEvery(INTERVAL / 2);
  again.send({ op: 6, d: { token: token(2), session_id: ready.d.session_id, seq: 1 } });
  const replayed = [await again.next((p) => p.op === 0), await again.next((p) => p.op === 0)];
  assert.deepEqual(replayed.map((p) => [p.s, p.t, p.d.content]),
    [[2, "MESSAGE_CREATE", "one"], [3, "MESSAGE_CREATE", "two"]]);
  assert.equal((await again.next((p) => p.op === 0)).t, "RESUMED");

  const stale = await Client.open();
  stale.send({ op: 6, d: { token: token(2), session_id: "nope", seq: 1 } });
  assert.deepEqual((await stale.next((p) => p.op === 9)).d, false);

  const { resumes } = await fake.record();
  assert.deepEqual(resumes.map((r) => [r.ok, r.replayed]), [[true, 2], [false, 0]]);
  await Promise.all([again.close(4000), stale.close(1000)]);
});

test("zombie mode withholds ACKs; op 1 and op 7 are sent on demand", async () => {
  const client = await Client.open();
  await client.identify(token(0));
  await client.next((p) => p.op === 11);

  await fake.zombie(0, true);
  client.inbox.length = 0;
  await sleep(INTERVAL);
  assert.equal(client.inbox.some((p) => p.op === 11), false);
  await fake.zombie(0, false);

  await fake.op(0, 1);
  await client.next((p) => p.op === 1);
  await fake.op(0, 7);
  await client.next((p) => p.op === 7);
  await client.close(4000);
});

test("the same nonce with enforce_nonce creates one message", async () => {
  await freshRecord();
  const { channel_id: channel } = await fake.dm(0, "hello");
  const body = { content: "reply", nonce: "n-1", enforce_nonce: true };
  const a = await (await api(`/channels/${channel}/messages`,
    { token: token(0), method: "POST", body })).json();
  const b = await (await api(`/channels/${channel}/messages`,
    { token: token(0), method: "POST", body })).json();

  assert.equal(a.id, b.id);
  const record = await fake.record();
  assert.equal(record.messages.length, 1);
  assert.equal(record.nonce_dedup.length, 1);
});

test("an injected 429 is answered like Discord and blocks the bucket", async () => {
  const { channel_id: channel } = await fake.dm(0, "hi");
  await fake.rateLimit({ route: "POST /channels/:id/messages", count: 1, retry_after: 0.3 });
  const send = () => api(`/channels/${channel}/messages`,
    { token: token(0), method: "POST", body: { content: "x" } });

  const limited = await send();
  assert.equal(limited.status, 429);
  assert.deepEqual(await limited.json(),
    { message: "You are being rate limited.", retry_after: 0.3, global: false });
  assert.equal(limited.headers.get("retry-after"), "1");
  assert.equal(limited.headers.get("x-ratelimit-scope"), "user");
  assert.equal(limited.headers.get("x-ratelimit-remaining"), "0");

  assert.equal((await send()).status, 429);
  await sleep(350);
  const ok = await send();
  assert.equal(ok.status, 200);
  assert.ok(ok.headers.get("x-ratelimit-bucket"));
});

test("a multipart message stores its file on the CDN, fetched over https", async () => {
  await freshRecord();
  const { channel_id: channel } = await fake.dm(0, "send me a picture");
  const form = new FormData();
  form.append("payload_json", JSON.stringify({
    content: "here", attachments: [{ id: 0, filename: "dot.png" }],
  }));
  form.append("files[0]", new Blob([PIXEL_PNG], { type: "image/png" }), "dot.png");

  const res = await api(`/channels/${channel}/messages`,
    { token: token(0), method: "POST", body: form });
  const message = await res.json();
  const [file] = message.attachments;
  assert.equal(res.status, 200);
  assert.equal(new URL(file.url).host, "cdn.discordapp.com");
  assert.equal(new URL(file.proxy_url).host, "media.discordapp.net");
  assert.deepEqual([file.filename, file.size, file.width, file.height],
    ["dot.png", PIXEL_PNG.length, 1, 1]);

  const fetched = await httpsGet(onFake(file.url));
  assert.equal(fetched.status, 200);
  assert.deepEqual(fetched.body, PIXEL_PNG);
  const record = await fake.record();
  assert.equal(record.messages[0].encoding, "multipart");
  assert.equal(record.cdn.length, 1);
});

test("a DM with an attachment arrives over wss with a CDN link", async () => {
  const client = await Client.open(
    `wss://localhost:${fake.info.https_port}/?v=10&encoding=json`, { ca });
  const ready = await client.identify(token(3));
  assert.equal(ready.d.resume_gateway_url, `wss://localhost:${fake.info.https_port}`);

  await fake.dm(3, "look", [{ filename: "note.txt", content_type: "text/plain",
    data_base64: Buffer.from("hello file").toString("base64") }]);
  const created = await client.next((p) => p.t === "MESSAGE_CREATE");
  assert.equal(created.d.author.bot, undefined);
  assert.equal(created.d.content, "look");

  const fetched = await httpsGet(onFake(created.d.attachments[0].proxy_url));
  assert.equal(fetched.body.toString(), "hello file");
  await client.close(4000);
});

test("unknown routes and tokens are answered and recorded", async () => {
  await freshRecord();
  const missing = await api("/no/such/route", { token: token(0) });
  assert.equal(missing.status, 404);
  assert.deepEqual(await missing.json(), { message: "404: Not Found", code: 0 });

  const denied = await api("/users/@me", { token: "bogus" });
  assert.equal(denied.status, 401);
  assert.deepEqual(await denied.json(), { message: "401: Unauthorized", code: 0 });

  const { requests } = await fake.record();
  assert.deepEqual(requests.map((r) => [r.path, r.status, r.route]),
    [["/no/such/route", 404, null], ["/users/@me", 401, "GET /users/@me"]]);
});
